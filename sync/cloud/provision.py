"""``teddy-cloud provision``: a bear's (or a cloud service's) own broker account.

Creates the account's password, hashes it into Mosquitto's password file with
``mosquitto_passwd`` (the password goes through its stdin, never a command line), adds the
account's ACL entries, and writes the bear's config fragment (mode 0600). A bear may write
only under ``teddy/v1/<id>/up/`` and read only under ``teddy/v1/<id>/down/``; the ingest
service account is the only one that may read every bear's ``up/`` and write every ``down/``.
Mosquitto rereads both files on SIGHUP.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from config.errors import TeddyError
from config.settings import DEVICE_ID_PATTERN
from sync.protocol import TOPIC_ROOT

logger = logging.getLogger(__name__)

MARK = "# teddy-cloud provision:"
"""Prefix of the comment line that opens each account's block in the ACL file."""
Role = Literal["bear", "ingest"]


class ProvisionError(TeddyError, ValueError):
    """An account cannot be provisioned as asked."""


@dataclass(frozen=True)
class Provisioned:
    """What :func:`provision` did."""

    username: str
    """The broker account (a bear's device id)."""
    role: Role
    """``bear`` or ``ingest``."""
    password: str
    """The new password (only ever written to the 0600 fragment, never logged)."""
    fragment: Path | None
    """The config fragment written for the account, if any."""
    created: bool
    """False when an existing account only got a new password (``rotate``)."""


def acl_entries(username: str, role: Role) -> list[str]:
    """The ACL lines of one account (after its marker comment)."""
    if role == "ingest":
        return [f"user {username}", f"topic read {TOPIC_ROOT}/+/up/#",
                f"topic write {TOPIC_ROOT}/+/down/#"]
    return [f"user {username}", f"topic write {TOPIC_ROOT}/{username}/up/#",
            f"topic read {TOPIC_ROOT}/{username}/down/#"]


def accounts(acl_file: Path) -> dict[str, Role]:
    """Accounts this tool put in ``acl_file``: username -> role."""
    found: dict[str, Role] = {}
    if acl_file.exists():
        for line in acl_file.read_text().splitlines():
            if line.startswith(MARK):
                role, _, name = line[len(MARK):].strip().partition(" ")
                found[name.strip()] = role  # type: ignore[assignment]
    return found


def provision(username: str, password_file: Path, acl_file: Path, *, role: Role = "bear",
              fragment_dir: Path | None = None, rotate: bool = False) -> Provisioned:
    """Create (or with ``rotate``, re-key) an account; see the module docstring."""
    if not DEVICE_ID_PATTERN.match(username):
        raise ProvisionError(f"account name {username!r} must be 3-64 lowercase letters, digits "
                             "or dashes (a device id is one topic level)")
    with _locked(acl_file):
        known = accounts(acl_file)
        if username in known and known[username] != role:
            raise ProvisionError(f"{username!r} is already a {known[username]} account — "
                                 "pick another name")
        if username in known and not rotate:
            raise ProvisionError(f"{username!r} is already provisioned — pass --rotate to give "
                                 "it a new password")
        password = secrets.token_urlsafe(24)
        _set_password(password_file, username, password)
        if username not in known:
            _append_acl(acl_file, username, role)
    fragment = _write_fragment(fragment_dir, username, password, role) if fragment_dir else None
    logger.info("provisioned %s account %s", role, username)
    return Provisioned(username, role, password, fragment, created=username not in known)


@contextmanager
def _locked(acl_file: Path) -> Iterator[None]:
    acl_file.parent.mkdir(parents=True, exist_ok=True)
    with open(acl_file.with_name(acl_file.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _set_password(password_file: Path, username: str, password: str) -> None:
    binary = shutil.which("mosquitto_passwd")
    if binary is None:
        raise ProvisionError("mosquitto_passwd is not installed — apt-get install mosquitto")
    create = not password_file.exists() or password_file.stat().st_size == 0
    args = [binary, *(["-c"] if create else []), str(password_file), username]
    result = subprocess.run(args, input=f"{password}\n{password}\n", capture_output=True,
                            text=True, timeout=30)
    if result.returncode != 0:
        reason = (result.stderr or result.stdout).strip().splitlines()
        raise ProvisionError(f"mosquitto_passwd failed on {password_file}: "
                             f"{reason[-1] if reason else result.returncode} — check the file")
    os.chmod(password_file, 0o640)


def _append_acl(acl_file: Path, username: str, role: Role) -> None:
    existing = acl_file.read_text() if acl_file.exists() else ""
    block = "\n".join([f"{MARK} {role} {username}", *acl_entries(username, role)])
    text = existing + ("" if existing.endswith("\n") or not existing else "\n") + block + "\n\n"
    temporary = acl_file.with_name(acl_file.name + ".tmp")
    temporary.write_text(text)
    os.chmod(temporary, 0o640)
    os.replace(temporary, acl_file)


def _write_fragment(folder: Path, username: str, password: str, role: Role) -> Path:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{username}.toml"
    header = ("# Written by teddy-cloud provision: this bear's broker account. Secret: mode 0600.\n"
              if role == "bear" else
              "# Written by teddy-cloud provision: the ingest service's broker account.\n")
    body = [header]
    if role == "bear":
        body.append(f'[device]\nid = "{username}"\n\n')
    body.append(f'[mqtt]\nusername = "{username}"\npassword = "{password}"\n')
    body.append('# With TLS, also:\n# [mqtt.tls]\n# ca_file = "/etc/teddy/ca.pem"\n')
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write("".join(body))
    os.chmod(path, 0o600)
    return path
