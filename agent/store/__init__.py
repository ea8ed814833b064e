"""The encrypted SQLite conversation store, consent, retention, and the sync outbox."""

from agent.store.consent import DEFAULT_SCOPES, Consent, Scope, parse_scopes
from agent.store.deletion import DeletionReport
from agent.store.errors import (
    KeyRotationError,
    StoreCorruptError,
    StoreFullError,
    StoreReadOnlyError,
    WrongKeyError,
)
from agent.store.retention import RetentionReport
from agent.store.store import ConversationInfo, ConversationStore, StoredTurn, TurnToKeep

__all__ = [
    "DEFAULT_SCOPES",
    "Consent",
    "ConversationInfo",
    "ConversationStore",
    "DeletionReport",
    "KeyRotationError",
    "RetentionReport",
    "Scope",
    "StoreCorruptError",
    "StoreFullError",
    "StoreReadOnlyError",
    "StoredTurn",
    "TurnToKeep",
    "WrongKeyError",
    "parse_scopes",
]
