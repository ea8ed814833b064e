"""Identity at manufacture: the cloud's claim keys, a bear's registration in PostgreSQL, and
the public keys every bear gets in its provisioning bundle.

``teddy-cloud provision DEVICE_ID`` makes the bear's broker account, registers the bear
(``devices.manufactured_at``) and writes a bundle holding its id, its broker login and three
public keys: the fleet's command-signing key (Ed25519), the claim key its claims are sealed
to (X25519) and the key that signs claim answers (Ed25519). Only a registered bear can be
claimed; service accounts are never registered (and their names are not device ids).
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from config.errors import CloudError
from config.settings import DEVICE_ID_PATTERN, Settings
from sync.protocol.claim import raw_public

if TYPE_CHECKING:
    from psycopg import Connection

logger = logging.getLogger(__name__)

KeyKind = Literal["x25519", "ed25519"]


class IdentityError(CloudError):
    """A bear cannot be registered or a key cannot be loaded; the message says why."""


def claim_key_path(settings: Settings) -> Path:
    """Where the cloud's X25519 claim key lives."""
    configured = settings.fleet.claim_key_file
    return configured if configured is not None else settings.store.data_dir / "claim.key"


def claim_signing_key_path(settings: Settings) -> Path:
    """Where the cloud's Ed25519 claim-answer signing key lives."""
    configured = settings.fleet.claim_signing_key_file
    return configured if configured is not None else (settings.store.data_dir
                                                      / "claim-signing.key")


def load_private_key(path: Path, kind: KeyKind, create: bool = True) -> Any:
    """An X25519 or Ed25519 private key from a PEM file (mode 0600), made on first use."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        load_pem_private_key,
    )

    wanted = X25519PrivateKey if kind == "x25519" else Ed25519PrivateKey
    if not path.exists():
        if not create:
            raise IdentityError(f"no {kind} key at {path} — check the fleet.*_key_file settings")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = wanted.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
            logger.info("created the %s key %s (mode 0600)", kind, path)
        except FileExistsError:
            pass
    if path.stat().st_mode & 0o077:
        raise IdentityError(f"key {path} is readable by others — run: chmod 600 {path}")
    key = load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, wanted):
        raise IdentityError(f"{path} is not an {kind} private key — move it away to make a new one")
    return key


@dataclass(frozen=True)
class ClaimKeys:
    """The cloud's two claim keys (private)."""

    opening: Any
    """X25519: opens sealed claims."""
    signing: Any
    """Ed25519: signs claim answers."""


def claim_keys(settings: Settings) -> ClaimKeys:
    """The cloud's claim keys (made on first use)."""
    return ClaimKeys(load_private_key(claim_key_path(settings), "x25519"),
                     load_private_key(claim_signing_key_path(settings), "ed25519"))


def bundle_keys(settings: Settings) -> dict[str, str]:
    """The public keys a bear gets at manufacture (``[pairing]`` of its bundle)."""
    from sync.cloud.fleet import load_signing_key

    keys = claim_keys(settings)
    return {"fleet_key": raw_public(load_signing_key(settings)),
            "claim_key": raw_public(keys.opening),
            "claim_verify_key": raw_public(keys.signing)}


def register(conn: Connection, device_id: str) -> bool:
    """Record ``device_id`` as a manufactured bear; False if it already was."""
    if not DEVICE_ID_PATTERN.match(device_id):
        raise IdentityError(f"device id {device_id!r} must be 3-64 lowercase letters, digits or "
                            "dashes")
    row = conn.execute(
        "INSERT INTO devices (device_id, manufactured_at) VALUES (%s, now())"
        " ON CONFLICT (device_id) DO UPDATE SET manufactured_at = now()"
        " WHERE devices.manufactured_at IS NULL RETURNING device_id", (device_id,)).fetchone()
    return row is not None


def is_manufactured(conn: Connection, device_id: str) -> bool:
    """Whether ``device_id`` was registered by ``teddy-cloud provision``."""
    return conn.execute("SELECT 1 FROM devices WHERE device_id = %s AND manufactured_at IS NOT"
                        " NULL", (device_id,)).fetchone() is not None


def install_broker_account(settings: Settings, device_id: str, password: str) -> None:
    """THE one place that gives a bear its broker account in-process: through the broker's
    account interface (:func:`sync.cloud.broker_accounts.broker_auth`), which also binds the
    bear's client id to its login."""
    from sync.cloud.broker_accounts import broker_auth

    with broker_auth(settings) as auth:
        auth.set_device(device_id, password)


@dataclass(frozen=True)
class Manufactured:
    """A bear made in-process: what its bundle holds."""

    device_id: str
    """The bear."""
    password: str
    """Its broker password (secret)."""
    keys: dict[str, str]
    """Its ``[pairing]`` keys."""


def manufacture(settings: Settings, conn: Connection, device_id: str) -> Manufactured:
    """Register ``device_id``, give it a broker account; what its bundle must hold."""
    register(conn, device_id)
    password = secrets.token_urlsafe(32)
    install_broker_account(settings, device_id, password)
    logger.info("manufactured bear %s", device_id)
    return Manufactured(device_id, password, bundle_keys(settings))


def bundle_toml(keys: dict[str, str]) -> str:
    """The ``[pairing]`` table of a bundle (public keys, not secret)."""
    lines = ["", "# The cloud's public keys, installed at manufacture (kept across resets).",
             "[pairing]"]
    lines += [f'{name} = "{value}"' for name, value in keys.items()]
    return "\n".join(lines) + "\n"
