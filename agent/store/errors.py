"""Errors of the store that callers may want to tell apart: disk full, read-only, corrupt.

Each is a :class:`config.errors.StoreError` (so one ``except StoreError`` still catches them
all) and also the built-in that describes it best.
"""

from __future__ import annotations

from config.errors import DecryptionError, KeyFileError, StoreError


class StoreFullError(StoreError, OSError):
    """The disk under the store is full: the turn was not kept (and nothing half-written)."""


class StoreReadOnlyError(StoreError, PermissionError):
    """The store's file or filesystem is read-only."""


class StoreCorruptError(StoreError):
    """The database file is damaged or is not a Teddy store."""


class WrongKeyError(DecryptionError, KeyFileError):
    """The key-encryption key does not match the one this store was written with."""


class KeyRotationError(KeyFileError):
    """The key provider cannot rotate, or a rotation could not finish."""
