"""The encrypted SQLite conversation store, consent, and the sync outbox."""

from agent.store.consent import DEFAULT_SCOPES, Consent, Scope, parse_scopes
from agent.store.store import ConversationStore, StoredTurn, TurnToKeep

__all__ = [
    "DEFAULT_SCOPES",
    "Consent",
    "ConversationStore",
    "Scope",
    "StoredTurn",
    "TurnToKeep",
    "parse_scopes",
]
