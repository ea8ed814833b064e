"""Turning SQLite's failures into one-line store errors, and telling a person about them.

A full disk, a read-only filesystem and a damaged file each get their own error class
(see :mod:`agent.store.errors`) and an alert; SQLite has already rolled the transaction
back, so no turn is ever half-written.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import time
from pathlib import Path

from agent.alerts import AlertSink, Severity
from agent.store.errors import StoreCorruptError, StoreFullError, StoreReadOnlyError
from config.errors import StoreError

logger = logging.getLogger(__name__)

SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
SQLITE_NOTADB = 26

ALERT_EVERY = 60.0
"""Seconds between two alerts of the same kind from one store (a full disk fails often)."""


class FailureReporter:
    """Maps sqlite3 errors to store errors and raises (rate-limited) alerts for them."""

    def __init__(self, path: Path, alerts: AlertSink | None) -> None:
        self.path = path
        """The database file, named in every message."""
        self.alerts = alerts
        """Where alerts go; None: only logged."""
        self._last_alert: dict[str, float] = {}

    def translate(self, exc: sqlite3.Error) -> StoreError:
        """The store error for ``exc`` (also alerting when a person must act)."""
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        text = str(exc)
        if code == SQLITE_FULL or "disk is full" in text:
            return self._alerting(StoreFullError(
                f"the disk under store {self.path} is full, nothing was kept — free space on "
                f"the filesystem of {self.path.parent} and retry"
            ), "store.disk_full", Severity.CRITICAL)
        if code == SQLITE_READONLY or "readonly" in text or (
                code in (SQLITE_CANTOPEN, SQLITE_IOERR) and on_read_only_filesystem(self.path)):
            return self._alerting(StoreReadOnlyError(
                f"store {self.path} is read-only ({text}) — remount {self.path.parent} "
                "read-write or fix the file's owner and mode"
            ), "store.read_only", Severity.CRITICAL)
        damaged = "malformed" in text or "not a database" in text
        if code in (SQLITE_CORRUPT, SQLITE_NOTADB) or damaged:
            return self._alerting(StoreCorruptError(
                f"store {self.path} is damaged ({text}) — run teddy store verify; to start "
                "afresh move the file aside (its conversations are lost)"
            ), "store.corrupt", Severity.CRITICAL)
        if code == SQLITE_IOERR:
            return self._alerting(StoreError(
                f"store {self.path}: disk I/O error ({text}) — check the SD card and run "
                "teddy store verify"
            ), "store.io_error", Severity.HIGH)
        if code in (SQLITE_BUSY, SQLITE_LOCKED) or "locked" in text:
            return StoreError(f"store {self.path} is busy: another process held it too long "
                              f"({text}) — retry; if it persists, stop the other teddy process")
        return StoreError(f"store {self.path}: {text} — run teddy store verify")

    def _alerting(self, error: StoreError, kind: str, severity: Severity) -> StoreError:
        logger.error("%s", error)
        now = time.monotonic()
        due = now - self._last_alert.get(kind, -ALERT_EVERY) >= ALERT_EVERY
        if self.alerts is not None and due:
            self._last_alert[kind] = now
            self.alerts.raise_alert(kind, severity, str(error), path=str(self.path))
        return error


def on_read_only_filesystem(path: Path) -> bool:
    """Whether the directory holding ``path`` refuses writes (a read-only mount, including
    the emergency read-only remount the kernel makes after an SD-card error)."""
    directory = path.parent
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        return False
    probe = directory / f".teddy-write-probe-{os.getpid()}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError as exc:
        return exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
    probe.unlink(missing_ok=True)
    return False
