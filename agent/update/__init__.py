"""Signed A/B releases on the bear: fetch, verify, install beside, switch, check, roll back.

The fleet command ``update`` calls::

    from agent.update import Updater
    with Updater(settings, is_busy=bear.is_busy) as updater:
        result = updater.apply(args["release_url"])   # UpdateDeferred / UpdateRefused raise

Everything is journaled in ``<data_dir>/update-journal.jsonl``.
"""

from agent.update.errors import (
    DownloadError,
    InstallError,
    UpdateDeferred,
    UpdateError,
    UpdateRefused,
)
from agent.update.updater import Updater, UpdateResult, psutil_battery

__all__ = [
    "DownloadError",
    "InstallError",
    "UpdateDeferred",
    "UpdateError",
    "UpdateRefused",
    "UpdateResult",
    "Updater",
    "psutil_battery",
]
