"""The store's schema, versioned with ``PRAGMA user_version`` and migrated forward."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from agent.store import crypto
from config.errors import StoreError

KeySource = Callable[[sqlite3.Connection], bytes]
"""The key-encryption key this store's rows are sealed with (read inside the migration)."""


def seal_clear_consents(conn: sqlite3.Connection, kek: bytes) -> int:
    """Seal each consent's parent (name or e-mail) still kept in the clear; returns how many.

    The sealed value is bound to the row (:func:`crypto.consent_aad`); ``parent`` is blanked.
    """
    rows = conn.execute("SELECT id, parent FROM consents WHERE parent_sealed IS NULL").fetchall()
    for consent_id, parent in rows:
        conn.execute("UPDATE consents SET parent = '', parent_sealed = ? WHERE id = ?",
                     (crypto.seal(kek, parent.encode(), crypto.consent_aad(consent_id)),
                      consent_id))
    return len(rows)


Migration = str | Callable[[sqlite3.Connection, bytes], object]
"""One schema step: an SQL script, or a function of the connection and the store's key."""
MIGRATIONS: tuple[Migration, ...] = (
    # 1: conversations with wrapped data keys, encrypted turns, the outbox, consent.
    """
    CREATE TABLE conversations (
        id          TEXT PRIMARY KEY,
        started_at  REAL NOT NULL,
        wrapped_key BLOB NOT NULL
    );
    CREATE TABLE turns (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        role            TEXT NOT NULL CHECK (role IN ('child', 'bear')),
        created_at      REAL NOT NULL,
        text_sealed     BLOB NOT NULL,
        verdict         TEXT NOT NULL,
        synced_at       REAL
    );
    CREATE INDEX turns_conversation ON turns(conversation_id);
    CREATE TABLE outbox (
        seq      INTEGER PRIMARY KEY REFERENCES turns(seq) ON DELETE CASCADE,
        batch_id TEXT,
        sent_at  REAL
    );
    CREATE TABLE consents (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        parent     TEXT NOT NULL,
        scopes     TEXT NOT NULL,
        granted_at REAL NOT NULL,
        revoked_at REAL,
        source     TEXT NOT NULL
    );
    """,
    # 2: the fingerprint of the key-encryption key in use (for safe rotation), and an
    #    opaque child profile id per conversation (never a name) for per-child deletion.
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    ALTER TABLE conversations ADD COLUMN child_id TEXT;
    CREATE INDEX conversations_child ON conversations(child_id);
    """,
    # 3: claiming and re-reading a sync batch looks rows up by batch id.
    """
    CREATE INDEX outbox_batch ON outbox(batch_id);
    """,
    # 4: consents keep the parent's name or e-mail sealed, like transcripts ...
    """
    ALTER TABLE consents ADD COLUMN parent_sealed BLOB;
    """,
    # 5: ... and the rows written before are sealed under the store's key (a keyed step:
    #    it runs once the key-encryption key is loaded and matches the store).
    seal_clear_consents,
)
"""Forward migrations; entry N (0-based) takes the schema from version N to N+1. A string is
SQL; a callable is a keyed step ``(conn, kek)`` that needs the store's key."""

SCHEMA_VERSION = len(MIGRATIONS)
"""The version this code writes and expects."""


def migrate(conn: sqlite3.Connection, kek: KeySource | None = None) -> int:
    """Bring the schema up to :data:`SCHEMA_VERSION`; returns the version found before.

    Without ``kek`` it stops before the first keyed step (the store's key is not loaded
    yet); the store calls it again with its key once it has checked the key matches.
    """
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise StoreError(
            f"store schema version {found} is newer than this software ({SCHEMA_VERSION}) — "
            "update teddy before opening this store"
        )
    for version in range(found, SCHEMA_VERSION):
        step = MIGRATIONS[version]
        if callable(step) and kek is None:
            break
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] == version:  # not done by
                _run(conn, step, kek)                                          # another process
                conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return found


def _run(conn: sqlite3.Connection, step: Migration, kek: KeySource | None) -> None:
    if isinstance(step, str):
        for statement in _statements(step):
            conn.execute(statement)
        return
    assert kek is not None, "migrate() stops before a keyed step when it has no key"
    step(conn, kek(conn))


def _statements(script: str) -> list[str]:
    return [part.strip() for part in script.split(";") if part.strip()]


def seed_sequence(conn: sqlite3.Connection, now: float) -> None:
    """Start a new store's turn numbers above any earlier store's on this device.

    The cloud keys turns on ``(device_id, seq, created_at)`` and a factory reset keeps the
    device id: a new store counting from 1 again would reuse turn numbers (its turns would
    sit beside the old ones under the same seq, or be dropped as duplicates if a time
    coincided). So a new store counts from the current time in milliseconds (``now`` in Unix
    seconds); AUTOINCREMENT keeps it increasing from there.
    """
    conn.execute(
        "INSERT INTO sqlite_sequence (name, seq) SELECT 'turns', ? WHERE NOT EXISTS"
        " (SELECT 1 FROM sqlite_sequence WHERE name = 'turns')",
        (int(now * 1000),),
    )
