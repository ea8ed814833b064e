"""The one contract between bear and cloud: topics and typed, versioned messages.

One small module per protocol area (``topics``, ``turns``, ``status``); everything is
re-exported here so both ends ``from sync.protocol import ...``.
"""

from sync.protocol.base import Message
from sync.protocol.claim import ClaimAnswer, ClaimBody, ClaimRequest, PairingGrant, Release
from sync.protocol.commands import (
    COMMAND_NAMES,
    COMMANDS,
    Command,
    CommandResult,
    ConfigDesired,
    ConfigReported,
    ContentBundle,
    parse_command_args,
    peek_command,
)
from sync.protocol.health import AlertMessage, HealthSample
from sync.protocol.receipts import Receipt, receipt_id
from sync.protocol.status import Status
from sync.protocol.topics import (
    TOPIC_ROOT,
    DeviceTopic,
    Route,
    device_root,
    down_topic,
    parse_device_topic,
    shared_subscription,
    up_topic,
)
from sync.protocol.turns import Ack, TurnRecord, TurnsBatch, to_ranges


def routed_messages() -> list[type[Message]]:
    """Every message class with a topic of its own (a ``ROUTE``), parents before children."""
    found: list[type[Message]] = []
    pending: list[type[Message]] = [Message]
    while pending:
        cls = pending.pop(0)
        for sub in cls.__subclasses__():
            if sub not in found and sub not in pending:
                pending.append(sub)
        if _declares_route(cls) and cls not in found:
            found.append(cls)
    return found


def _declares_route(cls: type[Message]) -> bool:
    """A protocol class that declares its own ROUTE (a subclass made elsewhere, by a test or a
    library, inherits its parent's route and is not a second message on that topic)."""
    return (cls.ROUTE is not None and "ROUTE" in cls.__dict__
            and cls.__module__.startswith("sync.protocol."))


__all__ = [
    "COMMAND_NAMES",
    "COMMANDS",
    "ClaimAnswer",
    "ClaimBody",
    "ClaimRequest",
    "Command",
    "CommandResult",
    "ConfigDesired",
    "ConfigReported",
    "ContentBundle",
    "PairingGrant",
    "Receipt",
    "Route",
    "receipt_id",
    "Release",
    "TOPIC_ROOT",
    "Ack",
    "AlertMessage",
    "HealthSample",
    "DeviceTopic",
    "Message",
    "Status",
    "TurnRecord",
    "TurnsBatch",
    "device_root",
    "down_topic",
    "parse_command_args",
    "parse_device_topic",
    "peek_command",
    "routed_messages",
    "shared_subscription",
    "to_ranges",
    "up_topic",
]
