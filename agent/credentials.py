"""The bear's pairing record (the pairing id, the parent, the release token of that pairing;
from older bears also a broker login and fleet key that pairing gave them), sealed with
AES-256-GCM in ``<data_dir>/fleet.sealed``. Its existence means "paired". A bear made at
manufacture has its broker login and the fleet key in its config instead (an empty
``mqtt_password`` here means: use that login).

The sealing key comes from the store's key machinery (:class:`agent.store.keys.FileKeyProvider`,
mode 0600, refused when others may read it; sealed to the board like the store's key when
``store.key_provider`` is an ``agent.store.otp`` provider) but is a key of its own,
``fleet.key``: the store's KEK is rotated after every deletion, and credentials sealed
under it would become unreadable the moment a parent deleted a conversation. A factory
reset shreds both keys.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from agent.store import crypto
from agent.store.keys import FileKeyProvider, provider_from_settings
from config.errors import KeyFileError
from config.settings import Settings, StoreSettings

logger = logging.getLogger(__name__)

SEALED_NAME = "fleet.sealed"
"""File name of the sealed credentials inside the data dir."""
KEY_NAME = "fleet.key"
"""File name of the key that seals them."""
AAD = b"teddy/fleet-credentials/v1"
"""Associated data of the sealed file."""


class CredentialsError(KeyFileError):
    """The fleet credentials are missing or cannot be opened."""


@dataclass(frozen=True)
class FleetCredentials:
    """What pairing gave this bear."""

    device_id: str
    """The bear's device id."""
    mqtt_username: str
    """Its own broker user."""
    mqtt_password: str
    """Its own broker password (never logged)."""
    fleet_public_key: bytes
    """Raw Ed25519 public key that must have signed every command and config."""
    paired_at: float
    """Unix time, seconds."""
    pairing_id: str = ""
    """The pairing (family scope) the cloud started."""
    parent: str = ""
    """The consenting parent."""
    release_token: str = ""
    """Proves this pairing to the cloud when the bear releases it (never logged)."""

    def __repr__(self) -> str:
        return f"FleetCredentials(device_id={self.device_id!r}, mqtt_username=" \
               f"{self.mqtt_username!r}, password=***)"


class CredentialVault:
    """Seals, opens and shreds the credentials file of one data dir."""

    def __init__(self, store: StoreSettings) -> None:
        self.data_dir = Path(store.data_dir)
        """The bear's data dir."""
        self.path = self.data_dir / SEALED_NAME
        """The sealed credentials file."""
        self._keys = _sealing_keys(store, self.data_dir / KEY_NAME)

    @property
    def key_path(self) -> Path:
        """The sealing key's file."""
        return self._keys.path

    def exists(self) -> bool:
        """Whether this bear has been paired (and not reset or unpaired since)."""
        return self.path.exists()

    def save(self, credentials: FleetCredentials) -> None:
        """Seal and write the credentials (atomically, mode 0600)."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = self._keys.load(create=True)
        plain = json.dumps({
            "device_id": credentials.device_id,
            "mqtt_username": credentials.mqtt_username,
            "mqtt_password": credentials.mqtt_password,
            "fleet_public_key": base64.b64encode(credentials.fleet_public_key).decode(),
            "paired_at": credentials.paired_at,
            "pairing_id": credentials.pairing_id,
            "parent": credentials.parent,
            "release_token": credentials.release_token,
        }).encode()
        sealed = crypto.seal(key, plain, AAD)
        tmp = self.path.with_name(SEALED_NAME + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(sealed)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        logger.info("fleet credentials of %s sealed in %s", credentials.device_id, self.path)

    def load(self) -> FleetCredentials:
        """Open the credentials; a one-line error when unpaired or unreadable."""
        if not self.path.exists():
            raise CredentialsError(f"this bear is not paired ({self.path} does not exist) — "
                                   "hold the paw 5 s to pair it")
        key = self._keys.load(create=False)
        plain = crypto.unseal(key, self.path.read_bytes(), AAD, what=f"credentials {self.path}")
        data = json.loads(plain)
        return FleetCredentials(
            device_id=data["device_id"], mqtt_username=data["mqtt_username"],
            mqtt_password=data["mqtt_password"],
            fleet_public_key=base64.b64decode(data["fleet_public_key"]),
            paired_at=data["paired_at"], pairing_id=data.get("pairing_id", ""),
            parent=data.get("parent", ""), release_token=data.get("release_token", ""),
        )

    def shred(self) -> bool:
        """Destroy the sealing key, then the sealed file. Returns whether anything existed."""
        found = False
        for path in (self.key_path, self.path):
            found |= shred_file(path)
        if found:
            logger.info("fleet credentials shredded")
        return found


def _sealing_keys(store: StoreSettings, path: Path) -> FileKeyProvider:
    """The key file at ``path``, sealed to the board like the store's key when the store's
    provider does that (``agent.store.otp``); a plain key file otherwise."""
    provider = provider_from_settings(store.model_copy(update={"key_file": path}))
    return provider if isinstance(provider, FileKeyProvider) else FileKeyProvider(path)


def shred_file(path: Path) -> bool:
    """Overwrite ``path`` with random bytes, fsync, and remove it. False if it did not exist.

    On flash the old blocks may survive the overwrite; what makes the data unreadable is
    that the keys are gone, which is why keys are shredded first.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    with path.open("r+b") as handle:
        handle.write(os.urandom(max(size, 1)))
        handle.flush()
        os.fsync(handle.fileno())
    path.unlink()
    return True


def fleet_key(settings: Settings) -> bytes | None:
    """The fleet's command-signing public key: the one installed at manufacture
    (``[pairing] fleet_key``), else the one an older pairing gave; None if neither."""
    if settings.pairing.fleet_key:
        return base64.b64decode(settings.pairing.fleet_key)
    vault = CredentialVault(settings.store)
    if vault.exists():
        return vault.load().fleet_public_key
    return None
