"""Backups and point-in-time recovery of the cloud's PostgreSQL, with pgBackRest.

A thin, checked wrapper: every operation is one ``pgbackrest`` command with the
``[backup]`` settings (stanza, config file); pgBackRest does the work (full/differential
backups, continuous WAL archiving through ``archive_command``, retention, restore to a
time). ``take`` also records the run in ``backup_runs`` so the fleet gauges can export the
last good backup's time (``teddy_backup_last_success_timestamp_seconds``) without calling
pgBackRest on every scrape.

pgBackRest must run as the cluster's owner: as root, commands run through ``runuser -u
<backup.user>``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from config.backup import BackupSettings
from config.errors import CloudError
from config.settings import CloudSettings

logger = logging.getLogger(__name__)

KINDS = ("full", "diff", "incr")
"""Backup types pgBackRest takes."""


class BackupError(CloudError):
    """A backup operation failed; the message has pgBackRest's reason and what to do."""


@dataclass(frozen=True)
class BackupInfo:
    """One backup in the repository."""

    label: str
    """pgBackRest's label, e.g. ``20261203-091500F``."""
    kind: str
    """``full``, ``diff`` or ``incr``."""
    started: datetime
    """When it started (UTC)."""
    stopped: datetime
    """When it finished: the earliest time a restore from it can reach."""
    size: int
    """Database size it covers, bytes."""
    repo_size: int
    """Bytes it takes in the repository (compressed, deduplicated)."""


class Backups:
    """pgBackRest for one stanza. A context manager (nothing to close; for symmetry)."""

    def __init__(self, settings: BackupSettings, cloud: CloudSettings | None = None) -> None:
        self._settings = settings
        self._cloud = cloud

    def __enter__(self) -> Backups:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing held open. Idempotent."""

    def _command(self, *args: str) -> list[str]:
        prefix: list[str] = []
        user = self._settings.user
        if user and os.geteuid() == 0:
            prefix = ["runuser", "-u", user, "--"]
        return [*prefix, self._settings.binary, f"--config={self._settings.config_file}",
                f"--stanza={self._settings.stanza}", *args]

    def _run(self, *args: str) -> str:
        command = self._command(*args)
        logger.info("running %s", " ".join(command))
        try:
            done = subprocess.run(command, capture_output=True, text=True,
                                  timeout=self._settings.timeout_s, check=False)
        except FileNotFoundError:
            raise BackupError(f"{self._settings.binary} is not installed — apt-get install "
                              "pgbackrest (or set backup.binary)") from None
        except subprocess.TimeoutExpired:
            raise BackupError(f"pgbackrest {args[0]} ran past backup.timeout_s "
                              f"({self._settings.timeout_s:g} s)") from None
        if done.returncode != 0:
            lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
            reason = next((line for line in lines if "ERROR" in line), lines[-1] if lines else "")
            raise BackupError(f"pgbackrest {args[0]} failed: {reason.strip()} — see "
                              f"{self._settings.config_file} and pgBackRest's log")
        return done.stdout

    def init(self) -> None:
        """Create the stanza (once, after ``archive_command`` is set); idempotent."""
        self._run("stanza-create")

    def check(self) -> None:
        """Check the stanza: the repository is reachable and WAL archiving works (it forces
        a WAL switch and waits for the segment to be archived)."""
        self._run("check")

    def take(self, kind: str = "full") -> BackupInfo:
        """Take a backup and record it in ``backup_runs``; returns the new backup."""
        if kind not in KINDS:
            raise BackupError(f"backup type {kind!r} — use one of {', '.join(KINDS)}")
        started = datetime.now(UTC)
        try:
            self._run("backup", f"--type={kind}")
        except BackupError as exc:
            self._record(kind, None, started, ok=False, error=str(exc))
            raise
        newest = self.list()[-1]
        self._record(kind, newest.label, started, ok=True, error=None)
        return newest

    def list(self) -> list[BackupInfo]:
        """Backups in the repository, oldest first."""
        data = json.loads(self._run("info", "--output=json") or "[]")
        found = []
        for stanza in data:
            for item in stanza.get("backup", []):
                found.append(BackupInfo(
                    label=item["label"], kind=item["type"],
                    started=datetime.fromtimestamp(item["timestamp"]["start"], UTC),
                    stopped=datetime.fromtimestamp(item["timestamp"]["stop"], UTC),
                    size=int(item["info"]["size"]),
                    repo_size=int(item["info"]["repository"]["delta"])))
        return found

    def restore(self, to: datetime | None = None, delta: bool = False) -> None:
        """Restore the cluster (PostgreSQL must be stopped) from the newest backup before
        ``to`` and replay archived WAL up to ``to`` (None: as far as the archive goes); the
        server promotes itself when it reaches the target on its next start."""
        args = ["restore"]
        if to is not None:
            if to.tzinfo is None:
                raise BackupError("restore --to needs a time zone, e.g. "
                                  "2026-01-31T09:30:00+00:00")
            target = to.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
            args += ["--type=time", f"--target={target}", "--target-action=promote"]
        if delta:
            args.append("--delta")
        self._run(*args)

    def _record(self, kind: str, label: str | None, started: datetime, ok: bool,
                error: str | None) -> None:
        if self._cloud is None:
            return
        from sync.cloud import db

        try:
            with db.connect(self._cloud) as conn:
                conn.execute("INSERT INTO backup_runs (kind, label, started_at, ok, error) "
                             "VALUES (%s, %s, %s, %s, %s)", (kind, label, started, ok, error))
        except CloudError as exc:
            logger.warning("backup %s not recorded in backup_runs: %s", label or kind, exc)
        except Exception as exc:  # noqa: BLE001 - recording must never fail a good backup
            logger.warning("backup %s not recorded in backup_runs (%s)", label or kind,
                           type(exc).__name__)


def info_as_dicts(backups: list[BackupInfo]) -> list[dict[str, Any]]:
    """Backups as JSON-ready dicts, for ``teddy-cloud backup list --json``."""
    return [{"label": b.label, "kind": b.kind, "started": b.started.isoformat(),
             "stopped": b.stopped.isoformat(), "size": b.size, "repo_size": b.repo_size}
            for b in backups]
