"""Transcripts sealed at rest per family.

Each pairing (a family's bear) has its own 32-byte data key; transcript text in PostgreSQL
is AES-256-GCM under it (a fresh nonce per value, the key id as associated data), stored as
``tk1.<key id>.<base64 nonce+ciphertext>``. Data keys are kept only wrapped by the cloud
key (``portal.cloud_key_file``, 0600, made on first use) or by a KMS hook
(``portal.key_provider = "pkg.mod:factory"``, called with the settings, returning an object
with ``wrap(bytes) -> bytes`` and ``unwrap(bytes) -> bytes``). :func:`destroy` deletes a
family's wrapped key: every row sealed under it, backups included, is unreadable after.

Ingest resolves the family keys of every bear in a batch at once
(:meth:`Keyring.keys_for_pairings`: one query, one insert for keys not made yet) and seals
each turn with :func:`seal_text` (``sync/cloud/sealing.py``). Where no cloud key exists at
all (a development set-up: :meth:`Keyring.ready` is False) text is stored as sent, and ingest
says so in its log once.
"""

from __future__ import annotations

import base64
import importlib
import logging
import os
import threading
import uuid
from typing import TYPE_CHECKING, Protocol

from config.errors import CloudError, ConfigError, KeyFileError, TeddyError
from config.keyfile import load_key_file
from config.settings import Settings
from sync.cloud.db import one_row

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from psycopg import Connection

logger = logging.getLogger(__name__)

PREFIX = "tk1."
NONCE_BYTES = 12


class SealedTextError(TeddyError, ValueError):
    """A sealed text could not be opened (its family key is gone, or it was altered)."""


class Wrapper(Protocol):
    """Wraps and unwraps data keys (the cloud key file, or a KMS)."""

    def wrap(self, key: bytes) -> bytes:
        """``key`` encrypted under the cloud key."""
        ...

    def unwrap(self, wrapped: bytes) -> bytes:
        """The data key back."""
        ...


class FileWrapper:
    """The cloud key in a 0600 file (made on first use); wraps with AES-256-GCM."""

    def __init__(self, settings: Settings, create: bool = True) -> None:
        self.path = settings.portal.cloud_key_file or settings.store.data_dir / "portal-cloud.key"
        """The cloud key file (read on first use; made then too when ``create``)."""
        self._create = create
        self._loaded: bytes | None = None

    @property
    def _key(self) -> bytes:
        if self._loaded is None:
            self._loaded = load_key_file(self.path, create=self._create)
        return self._loaded

    def wrap(self, key: bytes) -> bytes:
        """``key`` sealed under the cloud key."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = os.urandom(NONCE_BYTES)
        return nonce + AESGCM(self._key).encrypt(nonce, key, b"teddy-family-key")

    def unwrap(self, wrapped: bytes) -> bytes:
        """The data key back; raises :class:`SealedTextError` if it does not open."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            return AESGCM(self._key).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:],
                                             b"teddy-family-key")
        except InvalidTag:
            raise SealedTextError("a family key does not open with this cloud key — is "
                                  "portal.cloud_key_file the right one?") from None


def wrapper_from_settings(settings: Settings, create: bool = True) -> Wrapper:
    """The configured wrapper: the KMS hook if set, else the cloud key file (made on first
    use when ``create``: the parent app makes it, ingest only reads it)."""
    hook = settings.portal.key_provider
    if not hook:
        return FileWrapper(settings, create)
    module_name, _, factory_name = hook.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), factory_name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"portal.key_provider {hook!r} is not an importable "
                          "'package.module:factory' — fix it or unset it to use the key file"
                          ) from None
    return factory(settings)


class Keyring:
    """Family data keys on one database: created on demand, cached unwrapped by key id."""

    def __init__(self, wrapper: Wrapper) -> None:
        self._wrapper = wrapper
        self._cache: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._ready = False

    def check(self) -> None:
        """Load (or make) the cloud key now, so a missing or unreadable one fails at start."""
        self._wrapper.unwrap(self._wrapper.wrap(bytes(32)))

    def ready(self) -> bool:
        """Whether the cloud key can be used now (False: none exists — a development set-up
        — or it is unreadable). Once True, stays True (the key is kept loaded)."""
        if self._ready:
            return True
        try:
            self.check()
        except (KeyFileError, OSError):
            return False
        self._ready = True
        return True

    def keys_for_pairings(self, conn: Connection, pairing_ids: list[str]
                          ) -> dict[str, tuple[str, bytes]]:
        """``pairing_id -> (key id, data key)`` for every pairing named: one query for the
        keys there are, one insert for those not made yet (kept if another ingest made
        them first)."""
        wanted = sorted(set(pairing_ids))
        if not wanted:
            return {}
        rows = conn.execute("SELECT pairing_id::text, key_id::text, wrapped_key FROM family_keys"
                            " WHERE pairing_id = ANY(%s::uuid[])", (wanted,)).fetchall()
        found = {r[0]: (r[1], bytes(r[2])) for r in rows}
        missing = [p for p in wanted if p not in found]
        if missing:
            fresh = [(p, str(uuid.uuid4()), self._wrapper.wrap(os.urandom(32))) for p in missing]
            rows = conn.execute(
                "INSERT INTO family_keys (pairing_id, key_id, wrapped_key)"
                " SELECT * FROM unnest(%s::uuid[], %s::uuid[], %s::bytea[]) ORDER BY 1"
                " ON CONFLICT (pairing_id) DO UPDATE SET pairing_id = EXCLUDED.pairing_id"
                " RETURNING pairing_id::text, key_id::text, wrapped_key",
                ([f[0] for f in fresh], [f[1] for f in fresh], [f[2] for f in fresh])
            ).fetchall()
            found.update({r[0]: (r[1], bytes(r[2])) for r in rows})
        return {p: (key_id, self._unwrapped(key_id, wrapped))
                for p, (key_id, wrapped) in found.items()}

    def _key_for_pairing(self, conn: Connection, pairing_id: str) -> tuple[str, bytes]:
        row = conn.execute("SELECT key_id::text, wrapped_key FROM family_keys"
                           " WHERE pairing_id = %s", (pairing_id,)).fetchone()
        if row is None:
            key = os.urandom(32)
            row = one_row(conn.execute(
                "INSERT INTO family_keys (pairing_id, key_id, wrapped_key) VALUES (%s, %s, %s)"
                " ON CONFLICT (pairing_id) DO UPDATE SET pairing_id = EXCLUDED.pairing_id"
                " RETURNING key_id::text, wrapped_key",
                (pairing_id, str(uuid.uuid4()), self._wrapper.wrap(key))))
        return row[0], self._unwrapped(row[0], bytes(row[1]))

    @property
    def wrapper(self) -> Wrapper:
        """What wraps keys under the cloud key (``sync.cloud.emails`` wraps its own)."""
        return self._wrapper

    def _unwrapped(self, key_id: str, wrapped: bytes) -> bytes:
        with self._lock:
            key = self._cache.get(key_id)
        if key is None:
            key = self._wrapper.unwrap(wrapped)
            with self._lock:
                self._cache[key_id] = key
        return key

    def seal_for_pairing(self, conn: Connection, pairing_id: str, text: str) -> str:
        """``text`` sealed under the family key of ``pairing_id`` (made if missing)."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        key_id, key = self._key_for_pairing(conn, pairing_id)
        return seal_text(AESGCM(key), key_id, text)

    def open(self, conn: Connection, value: str) -> str:
        """The text of a sealed value (plain text passes through)."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not value.startswith(PREFIX):
            return value
        key_id, _, body = value[len(PREFIX):].partition(".")
        with self._lock:
            key = self._cache.get(key_id)
        if key is None:
            row = conn.execute("SELECT wrapped_key FROM family_keys WHERE key_id::text = %s",
                               (key_id,)).fetchone()
            if row is None:
                raise SealedTextError("this text's family key was destroyed (deleted data)")
            key = self._unwrapped(key_id, bytes(row[0]))
        raw = base64.b64decode(body)
        try:
            return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:],
                                       key_id.encode()).decode("utf-8")
        except InvalidTag:
            raise SealedTextError("a sealed text was altered") from None

    def forget(self, key_ids: list[str]) -> None:
        """Drop unwrapped keys from the cache (after :func:`destroy`)."""
        with self._lock:
            for key_id in key_ids:
                self._cache.pop(key_id, None)


_installed: Keyring | None = None


def seal_text(cipher: AESGCM, key_id: str, text: str) -> str:
    """``text`` sealed with ``cipher`` (an ``AESGCM`` of the family key ``key_id``)."""
    return seal_texts(cipher, key_id, [text])[0]


def seal_texts(cipher: AESGCM, key_id: str, texts: list[str]) -> list[str]:
    """Each of ``texts`` sealed as :func:`seal_text` does, with its own random nonce; a batch
    at once (ingest seals a bear's whole batch): one ``urandom`` call for every nonce, the
    prefix and associated data made once."""
    import binascii

    nonces = os.urandom(NONCE_BYTES * len(texts))
    aad = key_id.encode()
    head = f"{PREFIX}{key_id}."
    encrypt, b64 = cipher.encrypt, binascii.b2a_base64
    sealed = []
    for index, text in enumerate(texts):
        nonce = nonces[index * NONCE_BYTES:(index + 1) * NONCE_BYTES]
        body = b64(nonce + encrypt(nonce, text.encode("utf-8"), aad), newline=False)
        sealed.append(head + body.decode("ascii"))
    return sealed


def install(settings: Settings, create: bool = True) -> Keyring:
    """Give this process its keyring (ingest and the portal call this at start; ingest with
    ``create=False``, so it never makes a cloud key of its own that the app would not have)."""
    global _installed
    _installed = Keyring(wrapper_from_settings(settings, create))
    return _installed


def require_configured_key(settings: Settings, ring: Keyring) -> None:
    """Raise :class:`CloudError` when ``portal.cloud_key_file`` is set but ``ring`` cannot
    load it: ingest waits for it rather than store transcripts unsealed (with nothing
    configured, a development set-up, text without a cloud key stays as it is and one error
    says so). The key stays loaded in ``ring``."""
    if settings.portal.cloud_key_file is None or settings.portal.key_provider:
        return
    try:
        ring.check()
    except (KeyFileError, OSError) as exc:
        raise CloudError(f"ingest will not store transcripts unsealed: {exc} — make the cloud "
                         "key once with teddy-cloud portal keygen and give it to ingest "
                         "(LoadCredential=portal-cloud.key)") from None


def keyring() -> Keyring | None:
    """This process's keyring, if installed."""
    return _installed


def destroy(conn: Connection, pairing_id: str) -> int:
    """Delete a family's data key: what was sealed under it can never be read again."""
    rows = conn.execute("DELETE FROM family_keys WHERE pairing_id = %s RETURNING key_id::text",
                        (pairing_id,)).fetchall()
    if _installed is not None:
        _installed.forget([r[0] for r in rows])
    return len(rows)
