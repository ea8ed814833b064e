"""The one contract between bear and cloud: topics and typed, versioned messages.

One small module per protocol area (``topics``, ``turns``, ``status``); everything is
re-exported here so both ends ``from sync.protocol import ...``.
"""

from sync.protocol.base import Message
from sync.protocol.claim import ClaimAnswer, ClaimRequest, PairingGrant, claim_topic
from sync.protocol.commands import (
    COMMAND_NAMES,
    Command,
    CommandResult,
    ConfigDesired,
    ConfigReported,
    ContentBundle,
)
from sync.protocol.health import AlertMessage, HealthSample
from sync.protocol.receipts import Receipt, receipt_id
from sync.protocol.status import Status
from sync.protocol.topics import (
    TOPIC_ROOT,
    DeviceTopic,
    device_root,
    down_topic,
    parse_device_topic,
    shared_subscription,
    up_topic,
)
from sync.protocol.turns import Ack, TurnRecord, TurnsBatch, to_ranges

__all__ = [
    "COMMAND_NAMES",
    "ClaimAnswer",
    "ClaimRequest",
    "Command",
    "CommandResult",
    "ConfigDesired",
    "ConfigReported",
    "ContentBundle",
    "PairingGrant",
    "Receipt",
    "receipt_id",
    "claim_topic",
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
    "parse_device_topic",
    "shared_subscription",
    "to_ranges",
    "up_topic",
]
