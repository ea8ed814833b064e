"""What ingest receives, validated before any database work: one :class:`Parsed` per message.

Validation happens in Python, outside the transaction, so one bad payload costs nothing but
its dead letter; what reaches :mod:`sync.cloud.writer` is already typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config.errors import ProtocolError
from sync.protocol import (
    AlertMessage,
    CommandResult,
    ConfigReported,
    HealthSample,
    Status,
    TurnsBatch,
    parse_device_topic,
)

KINDS = {
    "turns": TurnsBatch,
    "status": Status,
    "health": HealthSample,
    "alerts": AlertMessage,
    "cmd-result": CommandResult,
    "config": ConfigReported,
}
"""``up/<name>`` topics ingest takes, and the model each payload must match."""


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


def parse(message: Received) -> Parsed:
    """Validate a message's topic and payload; never raises."""
    device_id = None
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
        return Parsed(message, topic.name, device_id, body)
    except ProtocolError as exc:
        return Parsed(message, "invalid", device_id, reason=str(exc))
