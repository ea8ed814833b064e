"""Factory reset (paw held 15 s): crypto-shred keys, credentials and data.

Keys go first: the store's key-encryption key (and a staged rotation key), and the key
sealing the fleet credentials. From that instant nothing left on the card can be
decrypted, even if the reset is interrupted; then the database, its WAL, the sealed
credentials, the command log and any installed content pack are overwritten and removed.
The device id stays (it names the hardware, and holds nothing about the family).

The reset then records its time and epoch (:data:`RESET_FILE`, kept across resets): the
command log of ids already run is gone with the rest, so the bear refuses every fleet command
issued before its last reset (``agent/commands.py``) — a signed command up to 7 days old can
never run again on a reset bear. A damaged record counts as a reset at the file's own time.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.credentials import KEY_NAME, SEALED_NAME, shred_file
from config.settings import Settings

logger = logging.getLogger(__name__)

RESET_FILE = "reset-epoch.json"
"""In the data dir: ``{"reset_at": <Unix time>, "epoch": <resets so far>}``; never shredded."""


@dataclass
class ResetReport:
    """What a factory reset destroyed."""

    keys: list[str] = field(default_factory=list)
    """Key files shredded."""
    files: list[str] = field(default_factory=list)
    """Data files shredded."""


def key_files(settings: Settings) -> list[Path]:
    """Every key file of this bear."""
    store_key = settings.store.key_path
    return [store_key, store_key.with_name(store_key.name + ".next"),
            Path(settings.store.data_dir) / KEY_NAME]


def data_files(settings: Settings) -> list[Path]:
    """Every file holding (encrypted) family data or credentials."""
    from agent.commands import SEEN_FILE
    from agent.play import STATE_FILE as PLAY_FILE

    data_dir = Path(settings.store.data_dir)
    db = settings.store.db_path
    return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"),
            db.with_name(db.name + ".keylock"), data_dir / SEALED_NAME, data_dir / SEEN_FILE,
            data_dir / PLAY_FILE]


def factory_reset(settings: Settings) -> ResetReport:
    """Shred keys, then data; the caller must have closed the store first."""
    report = ResetReport()
    for path in key_files(settings):
        if shred_file(path):
            report.keys.append(path.name)
    for path in data_files(settings):
        if shred_file(path):
            report.files.append(path.name)
    content = Path(settings.store.data_dir) / "content"
    if content.exists():
        shutil.rmtree(content)
        report.files.append("content/")
    record_reset(settings)
    if settings.store.key_provider:
        logger.warning("store.key_provider %s keeps its own key: clear it with the provider's "
                       "tools to finish the reset", settings.store.key_provider)
    logger.warning("factory reset: %d keys and %d files shredded", len(report.keys),
                   len(report.files))
    return report


def record_reset(settings: Settings, now: float | None = None) -> tuple[float, int]:
    """Record a reset now (atomically, fsynced): its time and the next epoch."""
    path = Path(settings.store.data_dir) / RESET_FILE
    previous = last_reset(settings)
    reset_at = time.time() if now is None else now
    epoch = (previous[1] if previous else 0) + 1
    entry = {"reset_at": reset_at, "epoch": epoch}
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    draft = path.with_name(path.name + ".new")
    with draft.open("w") as handle:
        handle.write(json.dumps(entry))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(draft, path)
    return reset_at, epoch


def last_reset(settings: Settings) -> tuple[float, int] | None:
    """``(reset time, epoch)`` of the last factory reset, None if never reset. A damaged
    record counts as a reset at the file's modification time (refuse rather than forget)."""
    path = Path(settings.store.data_dir) / RESET_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        entry = json.loads(text)
        reset_at, epoch = float(entry["reset_at"]), int(entry["epoch"])
        if not math.isfinite(reset_at) or reset_at < 0 or epoch < 1:
            raise ValueError("out of range")
        return reset_at, epoch
    except (ValueError, TypeError, KeyError, AttributeError):
        logger.error("%s is damaged; taking its modification time as the last reset", path)
        return path.stat().st_mtime, 0
