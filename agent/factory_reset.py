"""Factory reset (paw held 15 s): crypto-shred keys, credentials and data.

Keys go first: the store's key-encryption key (and a staged rotation key), and the key
sealing the fleet credentials. From that instant nothing left on the card can be
decrypted, even if the reset is interrupted; then the database, its WAL, the sealed
credentials, the command log and any installed content pack are overwritten and removed.
The device id stays (it names the hardware, and holds nothing about the family).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from agent.credentials import KEY_NAME, SEALED_NAME, shred_file
from config.settings import Settings

logger = logging.getLogger(__name__)


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

    data_dir = Path(settings.store.data_dir)
    db = settings.store.db_path
    return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"),
            db.with_name(db.name + ".keylock"), data_dir / SEALED_NAME, data_dir / SEEN_FILE]


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
    if settings.store.key_provider:
        logger.warning("store.key_provider %s keeps its own key: clear it with the provider's "
                       "tools to finish the reset", settings.store.key_provider)
    logger.warning("factory reset: %d keys and %d files shredded", len(report.keys),
                   len(report.files))
    return report
