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
    claim_requests_filter,
    device_root,
    down_topic,
    parse_device_topic,
    shared_subscription,
    up_topic,
)
from sync.protocol.turns import Ack, TurnRecord, TurnsBatch, to_ranges

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
    "claim_requests_filter",
    "device_root",
    "down_topic",
    "parse_command_args",
    "parse_device_topic",
    "peek_command",
    "shared_subscription",
    "to_ranges",
    "up_topic",
]
