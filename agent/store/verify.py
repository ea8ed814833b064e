"""``teddy store verify``: SQLite's integrity checks plus a decryption check of every row."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from agent.store import crypto, sealing
from agent.store.store import ConversationStore
from config.errors import StoreError

MAX_PROBLEMS = 50
"""Problems listed before the report stops counting them one by one."""


@dataclass
class VerifyReport:
    """What the checks found."""

    conversations: int = 0
    """Conversations whose data key unwrapped."""
    turns: int = 0
    """Turns that decrypted."""
    problems: list[str] = field(default_factory=list)
    """One line per problem (no transcript text)."""

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong."""
        return not self.problems


def verify(store: ConversationStore) -> VerifyReport:
    """Run integrity, foreign-key, outbox and decryption checks on an open store."""
    report = VerifyReport()
    conn = store._db  # noqa: SLF001 - verification reads the raw rows on purpose
    try:
        _sqlite_checks(conn, report)
        _decryption_checks(store, conn, report)
    except sqlite3.Error as exc:
        report.problems.append(f"SQLite error while checking: {exc}")
    return report


def _sqlite_checks(conn: sqlite3.Connection, report: VerifyReport) -> None:
    integrity = [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]
    if integrity != ["ok"]:
        report.problems.extend(f"integrity: {line}" for line in integrity[:MAX_PROBLEMS])
    for table, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check").fetchall():
        report.problems.append(f"foreign key: {table} row {rowid} names a missing {parent} row")
    orphans = conn.execute(
        "SELECT count(*) FROM outbox o LEFT JOIN turns t ON t.seq = o.seq WHERE t.seq IS NULL"
    ).fetchone()[0]
    if orphans:
        report.problems.append(f"outbox: {orphans} rows name turns that do not exist")


def _decryption_checks(store: ConversationStore, conn: sqlite3.Connection,
                       report: VerifyReport) -> None:
    _consent_checks(store, conn, report)
    for (conversation_id,) in conn.execute("SELECT id FROM conversations").fetchall():
        try:
            data_key = store._data_key(conversation_id)  # noqa: SLF001
        except StoreError as exc:
            report.problems.append(f"conversation {conversation_id}: {exc}")
            continue
        report.conversations += 1
        rows = conn.execute(
            "SELECT seq, role, text_sealed, verdict FROM turns WHERE conversation_id = ?",
            (conversation_id,),
        ).fetchall()
        for seq, role, sealed, verdict in rows:
            try:
                sealing.open_turn(data_key, conversation_id, seq, role, sealed, verdict)
                report.turns += 1
            except StoreError as exc:
                if len(report.problems) < MAX_PROBLEMS:
                    report.problems.append(str(exc))


def _consent_checks(store: ConversationStore, conn: sqlite3.Connection,
                    report: VerifyReport) -> None:
    """Every consent's sealed parent opens under the store's key, bound to its row."""
    rows = conn.execute("SELECT id, parent_sealed FROM consents "
                        "WHERE parent_sealed IS NOT NULL").fetchall()
    for consent_id, sealed in rows:
        try:
            crypto.unseal(store._kek(), sealed, crypto.consent_aad(consent_id),  # noqa: SLF001
                          what=f"consent {consent_id}")
        except StoreError as exc:
            if len(report.problems) < MAX_PROBLEMS:
                report.problems.append(str(exc))
