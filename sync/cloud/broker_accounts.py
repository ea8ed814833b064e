"""Bears' own broker accounts in a Mosquitto password file (``$7$`` PBKDF2-SHA512 hashes,
the format ``mosquitto_passwd`` writes), and the SIGHUP that makes Mosquitto reload it.

The file is rewritten atomically (a temporary file renamed over it), so the broker never
reads half a file. Passwords never appear on a command line.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import signal
from pathlib import Path

from config.errors import CloudError

logger = logging.getLogger(__name__)

ITERATIONS = 1000
"""PBKDF2 iterations of each hash (mosquitto_passwd's default is 101)."""
SALT_BYTES = 12
"""Salt length, bytes (as mosquitto_passwd)."""


def password_hash(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """A Mosquitto ``$7$`` hash of ``password``."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def set_account(path: Path, username: str, password: str) -> None:
    """Add or replace ``username`` in the password file."""
    if ":" in username or "\n" in username:
        raise CloudError(f"broker user name {username!r} may not contain ':' or a newline")
    lines = [line for line in _lines(path) if line.split(":", 1)[0] != username]
    lines.append(f"{username}:{password_hash(password)}")
    _write(path, lines)
    logger.info("broker account %s set in %s", username, path)


def remove_account(path: Path, username: str) -> bool:
    """Remove ``username`` from the password file; returns whether it was there."""
    lines = _lines(path)
    kept = [line for line in lines if line.split(":", 1)[0] != username]
    if len(kept) != len(lines):
        _write(path, kept)
        logger.info("broker account %s removed from %s", username, path)
    return len(kept) != len(lines)


def has_account(path: Path, username: str) -> bool:
    """Whether the password file has ``username``."""
    return any(line.split(":", 1)[0] == username for line in _lines(path))


def reload_broker(pid_file: Path | None) -> bool:
    """Send SIGHUP to the broker whose pid is in ``pid_file``; False when none is named."""
    if pid_file is None:
        return False
    try:
        pid = int(Path(pid_file).read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        raise CloudError(f"cannot make the broker reload (pid file {pid_file}: {exc}) — check "
                         "TEDDY_FLEET__BROKER_PID_FILE and that Mosquitto runs") from None
    logger.info("broker (pid %d) reloads its password file", pid)
    return True


def _lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def _write(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
