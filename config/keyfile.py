"""A 32-byte secret key kept base64-encoded in a file of mode 0600, owned by the service user.

Shared by the bear's key-encryption key (:class:`agent.store.keys.FileKeyProvider`) and the
cloud's key that wraps family keys (:class:`sync.cloud.family_keys.FileWrapper`): created
on first use without ever leaving a torn file, and refused when others may read it.
"""

from __future__ import annotations

import base64
import logging
import os
import stat
from pathlib import Path

from config.errors import KeyFileError

logger = logging.getLogger(__name__)

KEY_BYTES = 32
"""Length of every key kept in a key file (AES-256)."""


def load_key_file(path: Path, create: bool = False) -> bytes:
    """The key in ``path``; with ``create``, make a fresh one first when there is none."""
    if not path.exists():
        if not create:
            raise KeyFileError(f"key file {path} does not exist — restore it from backup or "
                               "point the setting that names it at the right file")
        create_key_file(path, encode_key(os.urandom(KEY_BYTES)))
    check_key_permissions(path)
    return decode_key(path.read_bytes(), path)


def create_key_file(path: Path, content: bytes) -> None:
    """Write ``content`` beside ``path``, then link it into place: never a torn key file.
    When another process made ``path`` first, theirs is kept."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    draft = path.with_name(f"{path.name}.new-{os.getpid()}")
    draft.unlink(missing_ok=True)
    write_key_file(draft, content)
    try:
        os.link(draft, path)
    except FileExistsError:
        return  # another process made it first; use theirs
    finally:
        draft.unlink()
    fsync_dir(path.parent)
    logger.info("created key file %s (mode 0600)", path)


def check_key_permissions(path: Path) -> None:
    """Raise :class:`KeyFileError` unless ``path`` is private to the service user."""
    info = path.stat()
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"key file {path} has mode {mode:04o}, readable by others — run: chmod 600 {path}"
        )
    if info.st_uid != os.geteuid():
        raise KeyFileError(
            f"key file {path} is owned by uid {info.st_uid}, not by the service user "
            f"(uid {os.geteuid()}) — run: chown {os.geteuid()} {path}"
        )


def encode_key(key: bytes) -> bytes:
    """A key file's content for ``key``: base64 and a newline."""
    return base64.b64encode(key) + b"\n"


def decode_key(content: bytes, path: Path) -> bytes:
    """The key in a key file's ``content``; a one-line error naming ``path`` if none."""
    try:
        key = base64.b64decode(content.strip(), validate=True)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise KeyFileError(
            f"key file {path} does not hold a base64 {KEY_BYTES}-byte key — restore it "
            "from backup; without it the stored conversations cannot be read"
        )
    return key


def write_key_file(path: Path, content: bytes) -> None:
    """Create ``path`` (must not exist) holding ``content``, mode 0600, durable on return."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename or create in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
