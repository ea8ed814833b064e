"""Topic names: ``teddy/v1/<device_id>/up/...`` (bear -> cloud) and ``.../down/...``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from config.errors import ProtocolError
from config.settings import DEVICE_ID_PATTERN

TOPIC_ROOT = "teddy/v1"
"""Root of every Teddy topic; the ``v1`` is the topic layout's version."""

Direction = Literal["up", "down"]


def device_root(device_id: str) -> str:
    """``teddy/v1/<device_id>``, refusing ids that are not one safe topic level."""
    if not DEVICE_ID_PATTERN.match(device_id):
        raise ProtocolError(
            f"device id {device_id!r} is not 3-64 lowercase letters, digits or dashes"
        )
    return f"{TOPIC_ROOT}/{device_id}"


def up_topic(device_id: str, name: str) -> str:
    """A bear -> cloud topic, e.g. ``up_topic(d, "turns")``."""
    return f"{device_root(device_id)}/up/{name}"


def down_topic(device_id: str, name: str) -> str:
    """A cloud -> bear topic, e.g. ``down_topic(d, "ack")``."""
    return f"{device_root(device_id)}/down/{name}"


def shared_subscription(group: str, name: str) -> str:
    """The shared subscription every ingest process of ``group`` joins for ``up/<name>``."""
    return f"$share/{group}/{TOPIC_ROOT}/+/up/{name}"


@dataclass(frozen=True)
class Route:
    """Where a message class travels and how: declared once, as ``ROUTE``, on each message.

    ``MqttLink.publish(message, device_id)`` takes topic, QoS and retain flag from here;
    ingest's shared subscriptions and the docs' topic table are derived from the same.
    """

    direction: Direction
    """``"up"`` (bear -> cloud) or ``"down"`` (cloud -> bear)."""
    name: str
    """The last topic level, e.g. ``"turns"``."""
    qos: Literal[0, 1, 2] = 1
    """QoS it is published and subscribed with."""
    retain: bool = False
    """Whether the broker keeps the last one for new subscribers."""
    ingested: bool = False
    """Whether ingest takes it into PostgreSQL (through its shared subscription)."""

    def topic(self, device_id: str) -> str:
        """The topic of this route under ``device_id``'s root."""
        return f"{device_root(device_id)}/{self.direction}/{self.name}"

    def every_device(self) -> str:
        """The filter matching this route under every bear's root."""
        return f"{TOPIC_ROOT}/+/{self.direction}/{self.name}"

    def shared(self, group: str) -> str:
        """The shared subscription of ingest ``group`` for this route."""
        return f"$share/{group}/{self.every_device()}"


@dataclass(frozen=True)
class DeviceTopic:
    """A parsed device topic."""

    device_id: str
    """Whose root the topic is under."""
    direction: Direction
    """``"up"`` (bear -> cloud) or ``"down"``."""
    name: str
    """The message kind, e.g. ``"turns"``."""


def parse_device_topic(topic: str) -> DeviceTopic:
    """Split a device topic into its parts; raises :class:`ProtocolError` if it is not one."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != TOPIC_ROOT or parts[3] not in ("up", "down"):
        raise ProtocolError(f"topic {topic!r} is not {TOPIC_ROOT}/<device_id>/(up|down)/<name>")
    if not DEVICE_ID_PATTERN.match(parts[2]):
        raise ProtocolError(f"topic {topic!r} names an invalid device id {parts[2]!r}")
    return DeviceTopic(device_id=parts[2], direction=cast(Direction, parts[3]), name=parts[4])
