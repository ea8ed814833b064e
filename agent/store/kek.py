"""The key-encryption key an open store uses, kept in step with the key id in the database.

The database records the fingerprint (:func:`crypto.key_id`) of the KEK that wraps its data
keys. A rotation stages the new key beside the old one, re-wraps every data key and records
the new fingerprint in ONE transaction, then promotes the staged key. Killed at any moment,
the next open finds the fingerprint matching either the current key (the rotation never
committed: the staged key is dropped) or the staged one (it committed: the staged key is
promoted), so every conversation stays readable.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from agent.store import crypto
from agent.store.errors import KeyRotationError, StoreReadOnlyError, WrongKeyError
from agent.store.keys import KeyProvider, RotatableKeyProvider
from config.errors import KeyFileError

logger = logging.getLogger(__name__)

KEK_ID = "kek_id"
"""Key of the ``meta`` row holding the fingerprint of the KEK in use."""

Transaction = Callable[[], AbstractContextManager[sqlite3.Connection]]


def stored_key_id(conn: sqlite3.Connection) -> str | None:
    """The fingerprint of the KEK the database says wraps its data keys."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (KEK_ID,)).fetchone()
    return None if row is None else row[0]


class KeyRing:
    """The KEK of one open store: loaded, checked against the database, rotated."""

    def __init__(self, provider: KeyProvider, lock_path: Path) -> None:
        self.provider = provider
        """Where the KEK comes from."""
        self.lock_path = lock_path
        """File locked (flock) while a process changes which key is current."""
        self.kek = b""
        """The key in use (empty once forgotten)."""

    @property
    def kek_id(self) -> str:
        """Fingerprint of the key in use."""
        return crypto.key_id(self.kek)

    @property
    def can_rotate(self) -> bool:
        """Whether the provider can stage and promote a new key."""
        return self._rotatable is not None

    @property
    def _rotatable(self) -> RotatableKeyProvider | None:
        """The provider, when it can stage and promote a new key."""
        return self.provider if isinstance(self.provider, RotatableKeyProvider) else None

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreReadOnlyError(
                f"cannot create the key lock {self.lock_path} ({exc.strerror}) — remount "
                f"{self.lock_path.parent} read-write or fix its owner and mode"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def open(self, conn: sqlite3.Connection, create: bool) -> bool:
        """Load the KEK and finish any interrupted rotation; returns whether the key matches."""
        with self._exclusive():
            self.kek = self.provider.load(create=create)
            db_id = stored_key_id(conn)
            if db_id is None:
                return self._adopt(conn)
            if self.kek_id == db_id:
                # a staged key here belongs to a rotation that never committed (it may even
                # be torn: the kill came while writing it): the database never used it
                self._discard_pending()
                return True
            pending = self._pending()
            rotatable = self._rotatable
            if (pending is not None and rotatable is not None
                    and crypto.key_id(pending) == db_id):
                logger.warning("finishing a key rotation that was interrupted after commit")
                rotatable.promote_pending()
                self.kek = pending
                return True
            return False

    def _pending(self) -> bytes | None:
        """The staged key, or None if there is none or it is unreadable (never committed)."""
        rotatable = self._rotatable
        if rotatable is None:
            return None
        try:
            return rotatable.load_pending()
        except KeyFileError:
            return None

    def _discard_pending(self) -> None:
        rotatable = self._rotatable
        if rotatable is not None:
            rotatable.discard_pending()

    def _adopt(self, conn: sqlite3.Connection) -> bool:
        """A store without a recorded key id (new, or from schema 1): record the current one."""
        row = conn.execute("SELECT id, wrapped_key FROM conversations LIMIT 1").fetchone()
        if row is not None and not _unwraps(self.kek, row[0], row[1]):
            return False
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                     (KEK_ID, self.kek_id))
        self._discard_pending()
        return True

    def ensure(self, db_id: str | None) -> bytes:
        """The KEK matching ``db_id``, reloading it if another process rotated it."""
        if db_id is None or db_id == self.kek_id:
            return self.kek
        for _ in range(3):  # a concurrent promote may move the file between the two reads
            candidates = [self.provider.load(), self._pending()]
            for key in candidates:
                if key is not None and crypto.key_id(key) == db_id:
                    self.kek = key
                    return key
        raise WrongKeyError(
            f"the key-encryption key ({_where(self.provider)}) is not the one this store was "
            f"written with (key id {db_id[:8]}…) — restore the right key file from backup; "
            "without it the kept conversations cannot be read"
        )

    def rotate(self, transaction: Transaction) -> str:
        """Re-wrap every data key under a new KEK; returns the new key id."""
        rotatable = self._rotatable
        if rotatable is None:
            raise KeyRotationError(
                f"the key provider {type(self.provider).__name__} cannot rotate its key — "
                "rotate it with the provider's own tools"
            )
        with self._exclusive():
            new_kek = crypto.new_key()
            rotatable.write_pending(new_kek)
            with transaction() as conn:
                old_kek = self.ensure(stored_key_id(conn))
                count = _rewrap_all(conn, old_kek, new_kek)
                conn.execute("UPDATE meta SET value = ? WHERE key = ?",
                             (crypto.key_id(new_kek), KEK_ID))
                conn.execute("DELETE FROM meta WHERE key = 'rotation_due'")
            rotatable.promote_pending()
            if crypto.key_id(self.provider.load()) != crypto.key_id(new_kek):
                raise KeyRotationError(
                    f"the rotated key did not replace {_where(self.provider)} — "
                    "check the key directory is writable, then run teddy keys rotate again"
                )
            self.kek = new_kek
        logger.info("rotated the key-encryption key (%d data keys re-wrapped)", count)
        return crypto.key_id(new_kek)

    def forget(self) -> None:
        """Drop the key from memory."""
        self.kek = b""


def _rewrap_all(conn: sqlite3.Connection, old_kek: bytes, new_kek: bytes) -> int:
    rows = conn.execute("SELECT id, wrapped_key FROM conversations").fetchall()
    for conversation_id, wrapped in rows:
        aad = crypto.data_key_aad(conversation_id)
        data_key = crypto.unseal(old_kek, wrapped, aad,
                                 what=f"data key of conversation {conversation_id}")
        conn.execute("UPDATE conversations SET wrapped_key = ? WHERE id = ?",
                     (crypto.seal(new_kek, data_key, aad), conversation_id))
    _reseal_consents(conn, old_kek, new_kek)
    return len(rows)


def _reseal_consents(conn: sqlite3.Connection, old_kek: bytes, new_kek: bytes) -> None:
    """Consents' sealed parents move to the new key with the data keys, in one transaction."""
    rows = conn.execute("SELECT id, parent_sealed FROM consents "
                        "WHERE parent_sealed IS NOT NULL").fetchall()
    for consent_id, sealed in rows:
        aad = crypto.consent_aad(consent_id)
        parent = crypto.unseal(old_kek, sealed, aad, what=f"consent {consent_id}")
        conn.execute("UPDATE consents SET parent_sealed = ? WHERE id = ?",
                     (crypto.seal(new_kek, parent, aad), consent_id))


def _unwraps(kek: bytes, conversation_id: str, wrapped: bytes) -> bool:
    try:
        crypto.unseal(kek, wrapped, crypto.data_key_aad(conversation_id), what="data key")
    except crypto.DecryptionError:
        return False
    return True


def _where(provider: KeyProvider) -> str:
    path = getattr(provider, "path", None)
    return f"key file {path}" if path is not None else type(provider).__name__
