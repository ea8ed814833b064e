"""``teddy-cloud provision``: a bear's (or a cloud service's) own broker account.

Makes a random password, gives it to the broker through :func:`broker_auth` (the
dynamic-security plugin: live, no reload, nothing written next to the broker), and writes the
account's config fragment (mode 0600, replaced atomically). Bears are device ids
(``bear-0042``); services are ``svc.<name>`` with a role, ``ingest``, ``fleet`` or ``edge``. The two
never overlap, so a bear can never be given a service's account or the reverse.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from config.errors import CloudError, TeddyError
from sync.cloud.broker_accounts import (
    SERVICE_ACLS,
    BrokerAuth,
    check_device_id,
    check_service_name,
)

logger = logging.getLogger(__name__)


class ProvisionError(TeddyError, ValueError):
    """An account cannot be provisioned as asked."""


@dataclass(frozen=True)
class Provisioned:
    """What :func:`provision` did."""

    username: str
    """The broker account (a bear's device id, or ``svc.<name>``)."""
    role: str
    """``bear``, ``ingest`` or ``fleet``."""
    password: str
    """The new password (only ever written to the 0600 fragment, never logged)."""
    fragment: Path | None
    """The config fragment written for the account, if any."""
    created: bool
    """False when an existing account only got a new password (``rotate``)."""


def provision(auth: BrokerAuth, username: str, *, role: str = "bear",
              fragment_dir: Path | None = None, rotate: bool = False) -> Provisioned:
    """Create (or with ``rotate``, re-key) an account; see the module docstring."""
    check_name(username, role)
    exists = auth.has_device(username) if role == "bear" else auth.has_service(username)
    if exists and not rotate:
        raise ProvisionError(f"{username!r} is already provisioned — pass --rotate to give "
                             "it a new password")
    password = secrets.token_urlsafe(24)
    if role == "bear":
        auth.set_device(username, password)
    else:
        auth.set_service(username, role, password)
    fragment = _write_fragment(fragment_dir, username, password, role) if fragment_dir else None
    logger.info("provisioned %s account %s", role, username)
    return Provisioned(username, role, password, fragment, created=not exists)


def check_name(username: str, role: str) -> None:
    """Refuse (:class:`ProvisionError`) a name outside its role's namespace: a bear's must be
    a device id, a service's ``svc.<name>``."""
    try:
        if role == "bear":
            check_device_id(username)
        elif role in SERVICE_ACLS:
            check_service_name(username)
        else:
            raise ProvisionError(f"unknown role {role!r}: bear, {', '.join(sorted(SERVICE_ACLS))}")
    except CloudError as exc:
        raise ProvisionError(str(exc)) from None


def _write_fragment(folder: Path, username: str, password: str, role: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{username}.toml"
    body = [f"# Written by teddy-cloud provision: the {role} account {username}. "
            "Secret: mode 0600.\n"]
    if role == "bear":
        body.append(f'[device]\nid = "{username}"\n\n')
    body.append(f'[mqtt]\nusername = "{username}"\npassword = "{password}"\n')
    body.append('# With TLS, also:\n# [mqtt.tls]\n# ca_file = "/etc/teddy/ca.pem"\n')
    write_private(path, "".join(body))
    return path


def write_private(path: Path, text: str, mode: int = 0o600, owner: str | None = None) -> None:
    """Replace ``path`` atomically with ``text``, created with ``mode`` (never readable by
    others in between) and, when ``owner`` is given, owned by that user and its group."""
    import pwd

    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        if owner is not None:
            entry = pwd.getpwnam(owner)
            os.chown(temporary, entry.pw_uid, entry.pw_gid)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
