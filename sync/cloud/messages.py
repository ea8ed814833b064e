"""What ingest receives, validated before any database work: one :class:`Parsed` per message.

Validation happens in Python, outside the transaction, so one bad payload costs nothing but
its dead letter; what reaches :mod:`sync.cloud.writer` is already typed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from config.errors import ProtocolError
from sync.protocol import Message, parse_device_topic, routed_messages

KINDS: dict[str, type[Message]] = {
    cls.route().name: cls for cls in routed_messages()
    if cls.route().direction == "up" and cls.route().ingested
}
"""``up/<name>`` topics ingest takes, and the model each payload must match: every message
class whose ``ROUTE`` is marked ``ingested``."""


@dataclass(frozen=True)
class Received:
    """An MQTT message waiting to be committed."""

    topic: str
    """Topic it arrived on."""
    payload: bytes
    """Raw payload."""
    mid: int
    """MQTT message id (for the manual PUBACK)."""
    qos: int
    """QoS it was delivered with."""
    received_at: float = 0.0
    """``time.monotonic()`` when it arrived, seconds."""


@dataclass(frozen=True)
class Parsed:
    """A received message after validation: a typed body, or the reason it is invalid."""

    message: Received
    """The message as received."""
    kind: str
    """``turns``, ``status``, ``health``, ``alerts``, or ``invalid``."""
    device_id: str | None = None
    """The bear whose root the topic is under (None if the topic itself is bad)."""
    body: Any = None
    """The validated message (None for a cleared retained status or an invalid one)."""
    reason: str | None = None
    """Why it is invalid (kind ``invalid``)."""

    @property
    def bear(self) -> str:
        """The device id of a valid message (only a message on a bad topic has none)."""
        if self.device_id is None:
            raise ProtocolError(f"topic {self.message.topic!r} names no bear")
        return self.device_id


@dataclass(frozen=True)
class TimeWindow:
    """The times ingest believes: a bear's clock may run a little ahead, and a bear may
    send what it kept for at most its longest retention (plus a margin)."""

    earliest: float
    """Earliest Unix time accepted, seconds."""
    latest: float
    """Latest Unix time accepted, seconds."""

    @classmethod
    def around(cls, now: float, ahead_s: float, max_age_days: float) -> TimeWindow:
        """The window ``[now - max_age_days, now + ahead_s]``."""
        return cls(now - max_age_days * 86400.0, now + ahead_s)

    def check(self, what: str, value: float | None) -> None:
        """Raise :class:`ProtocolError` if ``value`` (a Unix time) is outside the window."""
        if value is None:
            return
        if value > self.latest:
            raise ProtocolError(f"{what} {value:.0f} is {value - time.time():.0f} s in the "
                                "future — check the bear's clock")
        if value < self.earliest:
            raise ProtocolError(f"{what} {value:.0f} is older than any bear keeps data — "
                                "check the bear's clock")


DEFAULT_WINDOW_AHEAD_S = 86400.0
"""Seconds a bear's clock may run ahead of ingest's (cloud.max_clock_ahead_s)."""
DEFAULT_WINDOW_AGE_DAYS = 3660.0
"""Oldest time accepted, days (cloud.max_message_age_days)."""


def _times(kind: str, body: Any) -> list[tuple[str, float | None]]:
    if kind == "turns":
        return [(f"turns seq {t.seq} created_at", t.created_at) for t in body.turns]
    if kind == "alerts":
        return [("raised_at", body.raised_at), ("cleared_at", body.cleared_at)]
    names = {"status": "boot_time", "health": "sampled_at", "cmd-result": "finished_at",
             "config": "reported_at"}
    name = names.get(kind)
    return [(name, getattr(body, name))] if name else []


def parse(message: Received, window: TimeWindow | None = None) -> Parsed:
    """Validate a message's topic, payload and times; never raises (anything unexpected
    makes the message ``invalid`` with the exception's one line as the reason)."""
    try:
        return _parse(message, window)
    except Exception as exc:  # noqa: BLE001 - one message can never stop ingest
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        return Parsed(message, "invalid", _device_of(message.topic),
                      reason=f"unexpected {type(exc).__name__} while parsing: {first}")


def _device_of(topic: str) -> str | None:
    try:
        return parse_device_topic(topic).device_id
    except ProtocolError:
        return None


def _parse(message: Received, window: TimeWindow | None) -> Parsed:
    device_id = None
    if window is None:
        window = TimeWindow.around(time.time(), DEFAULT_WINDOW_AHEAD_S, DEFAULT_WINDOW_AGE_DAYS)
    try:
        topic = parse_device_topic(message.topic)
        device_id = topic.device_id
        model = KINDS.get(topic.name) if topic.direction == "up" else None
        if model is None:
            raise ProtocolError(f"no handler for topic kind {topic.direction}/{topic.name}")
        if topic.name == "status" and not message.payload:
            return Parsed(message, "status", device_id)  # a retained status being cleared
        body = model.from_payload(message.payload)
        named = getattr(body, "device_id", device_id)
        if named != device_id:
            raise ProtocolError(f"{topic.name} message names device {named!r} but arrived "
                                f"on {device_id!r}'s topic")
        for what, value in _times(topic.name, body):
            window.check(f"{topic.name} {what}", value)
        return Parsed(message, topic.name, device_id, body)
    except ProtocolError as exc:
        return Parsed(message, "invalid", device_id, reason=str(exc))
