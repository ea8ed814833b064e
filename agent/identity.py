"""Who this bear is: its device id, from config or made once and kept in the data dir."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from config.errors import ConfigError
from config.settings import DEVICE_ID_PATTERN, Settings

DEVICE_ID_FILE = "device_id"


def device_id(settings: Settings, create: bool = True) -> str:
    """The configured device id, else the one kept in the data dir (made if ``create``)."""
    if settings.device.id is not None:
        return settings.device.id
    path = Path(settings.store.data_dir) / DEVICE_ID_FILE
    if path.exists():
        kept = path.read_text().strip()
        if not DEVICE_ID_PATTERN.match(kept):
            raise ConfigError(f"{path} holds an invalid device id {kept!r} — delete the file "
                              "or set TEDDY_DEVICE__ID")
        return kept
    if not create:
        raise ConfigError("this bear has no device id yet — set TEDDY_DEVICE__ID or run "
                          "teddy consent grant first")
    made = f"bear-{secrets.token_hex(6)}"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(made + "\n")
    os.replace(tmp, path)
    return made
