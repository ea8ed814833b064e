"""``teddy-cloud broker-init``: the broker's dynamic-security file, with its administrator.

Runs Mosquitto's own ``mosquitto_ctrl dynsec init FILE ADMIN`` (the password goes through
its stdin, never a command line) and hands the file to the user the broker runs as (Debian:
``mosquitto``), mode 0600. The administrator's password goes to a
0600 file for ``fleet.broker_admin_password_file``. Every other account is made later, live,
by ``teddy-cloud provision``.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from config.errors import CloudError
from config.settings import SERVICE_ACCOUNT_PATTERN
from sync.cloud.provision import write_private

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerInit:
    """What :func:`init_broker` wrote."""

    dynsec_file: Path
    """The plugin's JSON (``plugin_opt_config_file``), owned by the broker's user."""
    password_file: Path
    """The administrator's password, mode 0600."""
    admin: str
    """The administrator's account name."""


def init_broker(dynsec_file: Path, password_file: Path, admin: str = "svc.admin",
                owner: str | None = "mosquitto") -> BrokerInit:
    """Create ``dynsec_file`` with administrator ``admin``; see the module docstring."""
    if not SERVICE_ACCOUNT_PATTERN.match(admin):
        raise CloudError(f"administrator {admin!r} must be svc.<name> (never a device id)")
    if dynsec_file.exists():
        raise CloudError(f"{dynsec_file} already exists — the broker has its accounts; "
                         "remove it only to start over with none")
    _check_owner(owner)
    binary = shutil.which("mosquitto_ctrl")
    if binary is None:
        raise CloudError("mosquitto_ctrl is not installed — apt-get install mosquitto")
    password = secrets.token_urlsafe(24)
    scratch = dynsec_file.with_name(f".{dynsec_file.name}.{secrets.token_hex(4)}.init")
    try:
        result = subprocess.run([binary, "dynsec", "init", str(scratch), admin],
                                input=f"{password}\n{password}\n", capture_output=True,
                                text=True, timeout=30)
        if result.returncode != 0:
            reason = (result.stderr or result.stdout).strip().splitlines()
            raise CloudError(f"mosquitto_ctrl dynsec init failed: "
                             f"{reason[-1] if reason else result.returncode}")
        text = scratch.read_text()
    finally:
        scratch.unlink(missing_ok=True)
    write_private(password_file, password + "\n")
    write_private(dynsec_file, text, owner=owner)
    logger.info("broker dynamic-security file %s made with administrator %s", dynsec_file, admin)
    return BrokerInit(dynsec_file, password_file, admin)


def _check_owner(owner: str | None) -> None:
    import pwd

    if owner is None:
        return
    try:
        uid = pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise CloudError(f"no user {owner!r} to own the broker's file — pass --owner with the "
                         "user Mosquitto runs as") from None
    if os.geteuid() not in (0, uid):
        raise CloudError(f"only root can give the broker's file to {owner!r} — run with sudo")
