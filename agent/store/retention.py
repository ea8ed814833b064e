"""Retention: conversations older than ``store.retention_days`` are crypto-shredded.

Age counts from a conversation's last turn. The sweep runs when the store opens and then
at most every :data:`SWEEP_EVERY` seconds as conversations start, so it needs no network
and no scheduler. Conversations whose turns still wait for the cloud are shredded too,
unless ``store.keep_unsynced_past_retention`` says to keep them; either way an alert says
what happened.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

DAY = 86400.0
"""Seconds in a day."""
SWEEP_EVERY = 3600.0
"""Seconds between two retention sweeps of a running bear."""


@dataclass(frozen=True)
class Expired:
    """A conversation past retention."""

    conversation_id: str
    """Its id."""
    last_at: float
    """Unix time of its last turn (or its start), seconds."""
    unsynced: int
    """Turns of it still waiting in the outbox."""


@dataclass
class RetentionReport:
    """What one sweep did."""

    shredded: list[str] = field(default_factory=list)
    """Conversations crypto-shredded."""
    kept_unsynced: list[str] = field(default_factory=list)
    """Conversations past retention kept because their turns wait for the cloud."""
    shredded_unsynced_turns: int = 0
    """Turns deleted that had never reached the cloud."""


def expired(conn: sqlite3.Connection, cutoff: float) -> list[Expired]:
    """Conversations whose last activity is before ``cutoff`` (Unix time, seconds)."""
    rows = conn.execute(
        "SELECT c.id, COALESCE(MAX(t.created_at), c.started_at) AS last_at, "
        "       COUNT(o.seq) "
        "FROM conversations c "
        "LEFT JOIN turns t ON t.conversation_id = c.id "
        "LEFT JOIN outbox o ON o.seq = t.seq "
        "GROUP BY c.id HAVING last_at < ? ORDER BY last_at",
        (cutoff,),
    ).fetchall()
    return [Expired(row[0], row[1], row[2]) for row in rows]
