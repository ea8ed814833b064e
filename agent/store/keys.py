"""Where the device key-encryption key (KEK) comes from.

The KEK never encrypts transcripts itself: it wraps each conversation's data key. It comes
from a :class:`KeyProvider`; :class:`FileKeyProvider` keeps it in a 0600 file, created on
first use, and refuses a file that others may read. A TPM or one-time-programmable key is
another provider with the same two methods, named by ``store.key_provider``
(``"package.module:factory"``, called with the :class:`StoreSettings`).

A provider that can also stage a *pending* key (:class:`RotatableKeyProvider`) supports
``teddy keys rotate`` and the key change that follows every deletion: the old key is then
gone, so a copy of the database taken before the deletion cannot be opened either.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

from agent.store.crypto import new_key
from agent.store.errors import KeyRotationError
from config.errors import ConfigError, KeyFileError
from config.keyfile import (
    check_key_permissions,
    create_key_file,
    decode_key,
    encode_key,
    fsync_dir,
    write_key_file,
)
from config.settings import StoreSettings

logger = logging.getLogger(__name__)


class KeyProvider(Protocol):
    """Supplies the device key-encryption key."""

    def exists(self) -> bool:
        """Whether a key has been created already."""
        ...

    def load(self, create: bool = False) -> bytes:
        """The 32-byte key; with ``create``, make one if there is none."""
        ...


@runtime_checkable
class RotatableKeyProvider(KeyProvider, Protocol):
    """A provider that can replace its key in two steps, safe to interrupt between them."""

    def load_pending(self) -> bytes | None:
        """The staged next key, or None when no rotation is under way."""
        ...

    def write_pending(self, key: bytes) -> None:
        """Stage ``key`` durably beside the current one (replacing a stale staged key)."""
        ...

    def promote_pending(self) -> None:
        """Make the staged key the current one (atomically); a no-op when none is staged."""
        ...

    def discard_pending(self) -> None:
        """Forget a staged key (a rotation that never committed)."""
        ...


def provider_from_settings(settings: StoreSettings) -> KeyProvider:
    """The key provider the settings name: the key-file one unless ``key_provider`` is set."""
    hook = getattr(settings, "key_provider", None)
    if not hook:
        return FileKeyProvider(settings.key_path)
    module_name, _, factory_name = hook.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), factory_name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(
            f"store.key_provider {hook!r} is not an importable 'package.module:factory' — "
            "fix it or unset TEDDY_STORE__KEY_PROVIDER to use the key file"
        ) from None
    return factory(settings)


class FileKeyProvider:
    """A key-encryption key kept base64-encoded in a file of mode 0600."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        """Path of the key file."""

    def exists(self) -> bool:
        """Whether the key file exists."""
        return self.path.exists()

    def load(self, create: bool = False) -> bytes:
        """Read the key, creating the file first when asked and missing."""
        if not self.path.exists():
            if not create:
                raise KeyFileError(
                    f"key file {self.path} does not exist — a parent must grant consent first "
                    "(teddy consent grant) or set TEDDY_STORE__KEY_FILE"
                )
            self._create()
        self._check_permissions()
        return self._read()

    @property
    def pending_path(self) -> Path:
        """Where a rotation stages the next key until the store has committed to it."""
        return self.path.with_name(self.path.name + ".next")

    def load_pending(self) -> bytes | None:
        """The staged next key, or None."""
        if not self.pending_path.exists():
            return None
        self._check_permissions(self.pending_path)
        return self._read(self.pending_path)

    def write_pending(self, key: bytes) -> None:
        """Stage ``key`` in ``<key file>.next`` (0600, fsynced)."""
        try:
            self.discard_pending()
            write_key_file(self.pending_path, self._encode(key))
        except OSError as exc:
            raise KeyRotationError(
                f"cannot stage a new key at {self.pending_path} ({exc.strerror}) — make "
                f"{self.path.parent} writable by the service user, then run teddy keys rotate"
            ) from exc

    def promote_pending(self) -> None:
        """Atomically replace the key file by the staged key."""
        try:
            os.replace(self.pending_path, self.path)
        except FileNotFoundError:
            return  # nothing staged, or another process promoted it first
        fsync_dir(self.path.parent)
        logger.info("key file %s replaced by the rotated key", self.path)

    def discard_pending(self) -> None:
        """Remove a staged key that the store never committed to."""
        try:
            self.pending_path.unlink()
        except FileNotFoundError:
            return
        fsync_dir(self.path.parent)

    def _create(self) -> None:
        """Write a new key beside the path, then link it into place: never a torn key file."""
        create_key_file(self.path, self._encode(new_key()))

    def _check_permissions(self, path: Path | None = None) -> None:
        check_key_permissions(self.path if path is None else path)

    def _read(self, path: Path | None = None) -> bytes:
        path = self.path if path is None else path
        return self._decode(path.read_bytes(), path)

    def _encode(self, key: bytes) -> bytes:
        """The key file's content for ``key``: base64 and a newline."""
        return encode_key(key)

    def _decode(self, content: bytes, path: Path) -> bytes:
        """The key in a key file's ``content``; a one-line error naming ``path`` if none."""
        return decode_key(content, path)
