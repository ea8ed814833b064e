"""Deletion that is real: crypto-shred the data keys, remove the rows, rewrite the file.

Deleting a conversation deletes its wrapped data key, so its ciphertext is useless from
then on. The rows go with ``secure_delete`` on (SQLite zeroes the freed space) and the WAL
is checkpointed and truncated, so neither the ciphertext nor the wrapped key stays in the
database file or the WAL. The store then rotates the key-encryption key (when the key
provider can), so a copy of the database made before the deletion (a backup, an SD-card
image) cannot unwrap the deleted key either: the key that wrapped it is gone.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

CHECKPOINT_TRIES = 20
"""Checkpoint attempts while another connection holds a read snapshot."""
CHECKPOINT_PAUSE = 0.05
"""Seconds between checkpoint attempts."""


@dataclass
class DeletionReport:
    """What a deletion removed."""

    conversations: int = 0
    """Conversations whose data keys were destroyed."""
    turns: int = 0
    """Turns removed with them."""
    unsynced: int = 0
    """Of those turns, how many had not reached the cloud yet."""
    checkpointed: bool = False
    """Whether the WAL was fully checkpointed and truncated afterwards."""
    key_rotated: bool = False
    """Whether the key-encryption key was replaced afterwards."""


ROTATION_DUE = "rotation_due"
"""``meta`` row set by a deletion and cleared by the key rotation that follows it, so a
rotation cut off by a crash or power loss is done at the next open."""


def shred(conn: sqlite3.Connection, conversation_ids: list[str]) -> DeletionReport:
    """Inside a transaction: delete these conversations, their keys, turns and outbox rows."""
    report = DeletionReport()
    if conversation_ids:
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, '1')", (ROTATION_DUE,))
    for conversation_id in conversation_ids:
        report.turns += conn.execute(
            "SELECT count(*) FROM turns WHERE conversation_id = ?", (conversation_id,)
        ).fetchone()[0]
        report.unsynced += conn.execute(
            "SELECT count(*) FROM outbox o JOIN turns t ON t.seq = o.seq "
            "WHERE t.conversation_id = ?", (conversation_id,)
        ).fetchone()[0]
        # the outbox and turns go by ON DELETE CASCADE, in this same transaction
        report.conversations += conn.execute(
            "DELETE FROM conversations WHERE id = ?", (conversation_id,)
        ).rowcount
    return report


@dataclass
class DroppedTurns:
    """What :func:`shred_turns` removed."""

    turns: int = 0
    """Turns removed (with their outbox rows)."""
    emptied: list[str] = field(default_factory=list)
    """Conversations left with no turn, deleted with their data keys."""


def shred_turns(conn: sqlite3.Connection, batch_ids: list[str]) -> DroppedTurns:
    """Inside a transaction: delete the turns of these outbox batches (``secure_delete``
    zeroes them), and every conversation they leave empty with its data key (crypto-shred:
    the key rotation that follows makes older copies useless too) — except the newest
    conversation, which may still be going on (its turns are gone all the same)."""
    marks = ",".join("?" * len(batch_ids))
    seqs = [r[0] for r in conn.execute(
        f"SELECT seq FROM outbox WHERE batch_id IN ({marks})", batch_ids)]
    dropped = DroppedTurns()
    if not seqs:
        return dropped
    conversations = sorted({r[0] for r in conn.execute(
        f"SELECT DISTINCT conversation_id FROM turns WHERE seq IN ({','.join('?' * len(seqs))})",
        seqs)})
    for start in range(0, len(seqs), 500):
        chunk = seqs[start:start + 500]
        dropped.turns += conn.execute(
            f"DELETE FROM turns WHERE seq IN ({','.join('?' * len(chunk))})", chunk).rowcount
    newest = conn.execute("SELECT id FROM conversations ORDER BY started_at DESC, rowid DESC"
                          " LIMIT 1").fetchone()
    empty = [c for c in conversations if (newest is None or c != newest[0]) and conn.execute(
        "SELECT 1 FROM turns WHERE conversation_id = ? LIMIT 1", (c,)).fetchone() is None]
    if empty:
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, '1')", (ROTATION_DUE,))
        for conversation_id in empty:
            conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
    dropped.emptied = empty
    return dropped


def checkpoint(conn: sqlite3.Connection) -> bool:
    """Copy the WAL into the database file and truncate it; False if readers kept it busy."""
    for _ in range(CHECKPOINT_TRIES):
        busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy:
            return True
        time.sleep(CHECKPOINT_PAUSE)
    logger.warning("WAL checkpoint stayed busy: old frames remain until the next checkpoint")
    return False


def rotation_due(conn: sqlite3.Connection) -> bool:
    """Whether a deletion still waits for its key rotation."""
    return conn.execute("SELECT 1 FROM meta WHERE key = ?", (ROTATION_DUE,)).fetchone() is not None
