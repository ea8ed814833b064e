"""The local alert journal: ``health.db`` in the data dir, kept while the bear is offline.

Operational data only — alert kinds, severities, one-line messages, numbers; never a
transcript (detail keys that could carry one are dropped). Rows wait here until the sync
link has published them on ``up/alerts``; cleared and published rows are pruned after
``health.journal_keep_days``. Also records process starts, so a crash loop shows.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from config.errors import TeddyError

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id              TEXT PRIMARY KEY,
    device_id       TEXT NOT NULL,
    rule            TEXT,
    kind            TEXT NOT NULL,
    severity        TEXT NOT NULL,
    message         TEXT NOT NULL,
    details         TEXT NOT NULL DEFAULT '{}',
    raised_at       REAL NOT NULL,
    cleared_at      REAL,
    one_shot        INTEGER NOT NULL DEFAULT 0,
    suppressed      INTEGER NOT NULL DEFAULT 0,
    raise_published INTEGER NOT NULL DEFAULT 0,
    clear_published INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS alerts_open ON alerts (rule, device_id) WHERE cleared_at IS NULL;
CREATE TABLE IF NOT EXISTS boots (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    pid         INTEGER NOT NULL,
    started_at  REAL NOT NULL,
    ended_at    REAL
);
CREATE TABLE IF NOT EXISTS last_sample (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    sampled_at  REAL NOT NULL,
    metrics     TEXT NOT NULL
);
"""

PRIVATE_DETAIL_KEYS = frozenset({"text", "transcript", "utterance", "reply", "words"})
"""Detail keys never journaled: they could carry what the child said."""


class JournalError(TeddyError, RuntimeError):
    """The health journal cannot be opened or written."""


@dataclass(frozen=True)
class JournalAlert:
    """One alert as journaled."""

    id: str
    """Stable id (also the ``alert_id`` on ``up/alerts``)."""
    device_id: str
    """The bear."""
    rule: str | None
    """Health rule that raised it; None for a one-shot alert from a part."""
    kind: str
    """Alert kind."""
    severity: str
    """Severity name."""
    message: str
    """One line, no transcript."""
    details: dict[str, Any]
    """Machine-readable facts."""
    raised_at: float
    """Unix time, seconds."""
    cleared_at: float | None
    """Unix time, seconds; None while open (one-shot alerts are never open)."""
    one_shot: bool
    """An event (escalation, disk full) rather than a condition that clears."""
    suppressed: int
    """Re-raises held back by the suppression window while this alert was the last one."""
    raise_published: bool
    """``up/alerts`` carried the raise."""
    clear_published: bool
    """``up/alerts`` carried the clear."""


def safe_details(details: dict[str, Any]) -> dict[str, Any]:
    """``details`` without keys that might carry a transcript."""
    return {k: v for k, v in details.items() if k.lower() not in PRIVATE_DETAIL_KEYS}


class HealthJournal:
    """The SQLite alert journal. A context manager; :meth:`close` is idempotent. Thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        """The ``health.db`` file."""
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=5)
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.executescript(SCHEMA)
            os.chmod(path, 0o600)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(
                f"health journal {path} cannot be opened ({exc}) — check that "
                f"{path.parent} is writable or set TEDDY_HEALTH__JOURNAL_NAME"
            ) from None

    def __enter__(self) -> HealthJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _run(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            if self._conn is None:
                raise JournalError(f"health journal {self.path} is closed — reopen it")
            try:
                return self._conn.execute(sql, params)
            except sqlite3.Error as exc:
                raise JournalError(f"health journal {self.path}: {exc}") from None

    # --- alerts ----------------------------------------------------------------------------

    def record_raise(self, device_id: str, rule: str | None, kind: str, severity: str,
                     message: str, details: dict[str, Any], at: float,
                     one_shot: bool = False) -> str:
        """Journal a raised alert; returns its id."""
        alert_id = uuid.uuid4().hex
        self._run(
            "INSERT INTO alerts (id, device_id, rule, kind, severity, message, details, "
            "raised_at, cleared_at, one_shot) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (alert_id, device_id, rule, kind, severity, message,
             json.dumps(safe_details(details), default=str), at,
             at if one_shot else None, int(one_shot)),
        )
        return alert_id

    def record_clear(self, device_id: str, rule: str, at: float) -> str | None:
        """Mark the open alert of ``rule`` cleared; returns its id (None if none was open)."""
        row = self._run(
            "SELECT id FROM alerts WHERE device_id = ? AND rule = ? AND cleared_at IS NULL "
            "ORDER BY raised_at DESC LIMIT 1", (device_id, rule)).fetchone()
        if row is None:
            return None
        self._run("UPDATE alerts SET cleared_at = ? WHERE id = ?", (at, row[0]))
        return row[0]

    def record_suppressed(self, device_id: str, rule: str) -> None:
        """Count a suppressed re-raise on the rule's latest alert."""
        self._run(
            "UPDATE alerts SET suppressed = suppressed + 1 WHERE id = (SELECT id FROM alerts "
            "WHERE device_id = ? AND rule = ? ORDER BY raised_at DESC LIMIT 1)",
            (device_id, rule))

    def open_alerts(self) -> list[JournalAlert]:
        """Rule alerts not yet cleared, oldest first."""
        return self._select("WHERE cleared_at IS NULL ORDER BY raised_at")

    def recent(self, since: float) -> list[JournalAlert]:
        """Every alert raised since Unix time ``since``, oldest first."""
        return self._select("WHERE raised_at >= ? ORDER BY raised_at", (since,))

    def unpublished(self, limit: int = 100) -> list[JournalAlert]:
        """Alerts whose raise or clear has not been published yet, oldest first."""
        return self._select(
            "WHERE raise_published = 0 OR (cleared_at IS NOT NULL AND one_shot = 0 "
            "AND clear_published = 0) ORDER BY raised_at LIMIT ?", (limit,))

    def mark_published(self, alert_id: str, state: str) -> None:
        """``up/alerts`` carried the ``raised`` or ``cleared`` state of this alert."""
        if state == "raised":
            self._run("UPDATE alerts SET raise_published = 1 WHERE id = ?", (alert_id,))
        else:
            self._run("UPDATE alerts SET raise_published = 1, clear_published = 1 "
                      "WHERE id = ?", (alert_id,))

    def prune(self, keep_days: int, now: float | None = None) -> int:
        """Drop published alerts that ended more than ``keep_days`` ago; returns how many."""
        horizon = (time.time() if now is None else now) - keep_days * 86400
        return self._run(
            "DELETE FROM alerts WHERE cleared_at IS NOT NULL AND cleared_at < ? "
            "AND raise_published = 1 AND (one_shot = 1 OR clear_published = 1)",
            (horizon,)).rowcount

    def _select(self, where: str, params: tuple = ()) -> list[JournalAlert]:
        rows = self._run(
            "SELECT id, device_id, rule, kind, severity, message, details, raised_at, cleared_at, "
            f"one_shot, suppressed, raise_published, clear_published FROM alerts {where}",
            params).fetchall()
        return [JournalAlert(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7], r[8],
                             bool(r[9]), r[10], bool(r[11]), bool(r[12])) for r in rows]

    # --- process starts and the last sample -------------------------------------------------

    def record_boot(self, at: float | None = None) -> int:
        """Journal that the bear's process started; returns the boot id."""
        at = time.time() if at is None else at
        cursor = self._run("INSERT INTO boots (pid, started_at) VALUES (?, ?)",
                           (os.getpid(), at))
        return cast(int, cursor.lastrowid)  # an INSERT always sets it

    def record_clean_exit(self, boot_id: int, at: float | None = None) -> None:
        """Journal that the process with ``boot_id`` stopped cleanly."""
        at = time.time() if at is None else at
        self._run("UPDATE boots SET ended_at = ? WHERE id = ?", (at, boot_id))

    def unclean_restarts(self, since: float, current_boot: int | None) -> int:
        """Starts since ``since`` whose process did not stop cleanly (the current one excluded)."""
        return self._run(
            "SELECT count(*) FROM boots WHERE started_at >= ? AND ended_at IS NULL AND id != ?",
            (since, -1 if current_boot is None else current_boot)).fetchone()[0]

    def save_sample(self, sampled_at: float, metrics: dict[str, float | None]) -> None:
        """Keep the latest sample (for ``teddy health`` from another process)."""
        self._run("INSERT OR REPLACE INTO last_sample (id, sampled_at, metrics) VALUES (1, ?, ?)",
                  (sampled_at, json.dumps(metrics)))

    def last_sample(self) -> tuple[float, dict[str, float | None]] | None:
        """``(sampled_at, metrics)`` of the latest saved sample, if any."""
        row = self._run("SELECT sampled_at, metrics FROM last_sample WHERE id = 1").fetchone()
        return None if row is None else (row[0], json.loads(row[1]))
