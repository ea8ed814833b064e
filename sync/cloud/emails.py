"""Parents' e-mail addresses at rest: a keyed hash to look them up, sealed to show them.

Where a cloud key is configured (the process installed the keyring of
:mod:`sync.cloud.family_keys` and the key can be loaded), the app's own tables — ``parents``,
``signin_links``, ``family_invites`` — keep an address as ``email_hash`` (HMAC-SHA256 of the
trimmed, lower-cased address under a key derived from the e-mail key) and ``email`` sealed
(AES-256-GCM, ``te1.``) under an e-mail key wrapped by the cloud key (``email_keys``); the
fleet tables ``pairings`` and ``consents`` keep ``parent_email_hash`` and ``parent_email``
sealed the same way (:func:`stored`); ``consent_records.parent_email`` is sealed too. Every
process that reads or writes them installs the keyring first (the parent app, the operator's
``teddy-cloud fleet``, ``teddy-cloud notify run``); ``fleet serve`` holds no cloud key: the
app hands it the address sealed and hashed (``fleet_requests.pair``), and the notifier tells
families of the release requests it opens. Without a cloud key (development)
the hash is unkeyed and the address stays readable, and one warning says so. :func:`migrate`
seals rows written before (plain address, no hash) on the first connection of such a
process.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import weakref
from typing import TYPE_CHECKING

from sync.cloud import family_keys
from sync.cloud.db import one_row

if TYPE_CHECKING:
    from psycopg import Connection

logger = logging.getLogger(__name__)

KEY_PREFIX = "te1."
"""A sealed address: ``te1.<email key id>.<base64 nonce + AES-GCM ciphertext>``."""
TABLES = ("parents", "signin_links", "family_invites")
"""Tables whose ``email`` is sealed with an ``email_hash`` beside it."""
FLEET_TABLES = {"pairings": "claim_id", "consents": "id"}
"""Fleet tables whose ``parent_email`` is sealed with a ``parent_email_hash`` beside it (by
their key column)."""
_UNKEYED = b"teddy/email-lookup/no-cloud-key"
_warned = False
_cache: weakref.WeakKeyDictionary[family_keys.Keyring, dict[str, bytes]] = (
    weakref.WeakKeyDictionary())
"""Unwrapped e-mail keys by key id, per keyring (a keyring of another cloud key differs)."""


def _ring() -> family_keys.Keyring | None:
    """This process's keyring when its cloud key can be used (None: development)."""
    ring = family_keys.keyring()
    return ring if ring is not None and ring.ready() else None


def _normal(email: str) -> bytes:
    return email.strip().lower().encode("utf-8")


def _key(conn: Connection, ring: family_keys.Keyring) -> tuple[str, bytes]:
    """``(key id, key)`` of the e-mail key this cloud key opens (made on first use)."""
    for (key_id, wrapped) in conn.execute(
            "SELECT key_id::text, wrapped_key FROM email_keys ORDER BY created_at").fetchall():
        key = _opened(ring, key_id, bytes(wrapped))
        if key is not None:
            return key_id, key
    fresh = os.urandom(32)
    key_id = one_row(conn.execute("INSERT INTO email_keys (wrapped_key) VALUES (%s)"
                                  " RETURNING key_id::text", (ring.wrapper.wrap(fresh),)))[0]
    _cache.setdefault(ring, {})[key_id] = fresh
    return key_id, fresh


def _opened(ring: family_keys.Keyring, key_id: str, wrapped: bytes) -> bytes | None:
    cached = _cache.get(ring, {}).get(key_id)
    if cached is not None:
        return cached
    try:
        key = ring.wrapper.unwrap(wrapped)
    except family_keys.SealedTextError:
        return None  # wrapped under another cloud key
    _cache.setdefault(ring, {})[key_id] = key
    return key


def lookup(conn: Connection, email: str) -> bytes:
    """The keyed hash an address is found by."""
    ring = _ring()
    if ring is None:
        _warn()
        key = _UNKEYED
    else:
        key = hmac.new(_key(conn, ring)[1], b"teddy/email-lookup/v1", hashlib.sha256).digest()
    return hmac.new(key, _normal(email), hashlib.sha256).digest()


def seal(conn: Connection, email: str) -> str:
    """The address as stored: sealed where a cloud key is configured."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    ring = _ring()
    if ring is None:
        _warn()
        return email
    key_id, key = _key(conn, ring)
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, email.encode("utf-8"), key_id.encode())
    return f"{KEY_PREFIX}{key_id}.{base64.b64encode(nonce + sealed).decode()}"


def stored(conn: Connection, email: str) -> tuple[str, bytes]:
    """``(sealed address, lookup hash)``: what a row keeps of ``email``."""
    return seal(conn, email), lookup(conn, email)


def matching(conn: Connection, email: str, column: str = "parent_email"
             ) -> tuple[str, tuple[bytes, str]]:
    """``(SQL condition, parameters)``: a fleet row's ``column`` is ``email`` — by its keyed
    hash, or, for a row not sealed yet (written before migration 0017 and not migrated),
    by the readable address."""
    return (f"({column}_hash = %s OR ({column}_hash IS NULL AND lower({column}) = lower(%s)))",
            (lookup(conn, email), email.strip()))


def show(conn: Connection, stored: str) -> str:
    """A stored address, readable (``"(sealed)"`` when this process cannot open it)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not stored.startswith(KEY_PREFIX):
        return stored
    ring = _ring()
    key_id, _, body = stored[len(KEY_PREFIX):].partition(".")
    row = conn.execute("SELECT wrapped_key FROM email_keys WHERE key_id::text = %s",
                       (key_id,)).fetchone() if ring is not None else None
    key = _opened(ring, key_id, bytes(row[0])) if ring is not None and row else None
    if key is None:
        return "(sealed)"
    raw = base64.b64decode(body)
    try:
        return AESGCM(key).decrypt(raw[:12], raw[12:], key_id.encode()).decode("utf-8")
    except InvalidTag:
        return "(sealed)"


def migrate(conn: Connection) -> int:
    """Seal and hash the addresses stored before (idempotent); returns the rows changed."""
    keyed = _ring() is not None
    changed = 0
    for table in TABLES:
        key = {"parents": "parent_id", "signin_links": "token_hash",
               "family_invites": "invite_id"}[table]
        unsealed = " OR email NOT LIKE 'te1.%%'" if keyed else ""
        rows = conn.execute(f"SELECT {key}, email FROM {table} WHERE email_hash IS NULL"
                            f"{unsealed}").fetchall()
        with conn.transaction():
            for row_key, stored in rows:
                plain = show(conn, stored)
                conn.execute(f"UPDATE {table} SET email = %s, email_hash = %s WHERE {key} = %s",
                             (seal(conn, plain), lookup(conn, plain), row_key))
        changed += len(rows)
    if keyed:  # the parent app's consent records: sealed for display, never looked up
        rows = conn.execute("SELECT record_id, parent_email FROM consent_records WHERE"
                            " parent_email NOT LIKE 'te1.%%'").fetchall()
        with conn.transaction():
            for record_id, plain in rows:
                conn.execute("UPDATE consent_records SET parent_email = %s WHERE record_id = %s",
                             (seal(conn, plain), record_id))
        changed += len(rows)
    changed += _migrate_fleet(conn, keyed)
    if changed:
        logger.warning("sealed %d stored e-mail addresses (kept as a keyed hash)", changed)
    return changed


def _migrate_fleet(conn: Connection, keyed: bool) -> int:
    """Seal and hash ``parent_email`` of the fleet tables (migration 0017's rows)."""
    changed = 0
    unsealed = " OR parent_email NOT LIKE 'te1.%%'" if keyed else ""
    for table, key in FLEET_TABLES.items():
        rows = conn.execute(f"SELECT {key}, parent_email FROM {table} WHERE parent_email IS NOT"
                            f" NULL AND (parent_email_hash IS NULL{unsealed})").fetchall()
        with conn.transaction():
            for row_key, kept in rows:
                plain = show(conn, kept)
                if plain == "(sealed)":
                    continue  # sealed under a cloud key this process does not have
                conn.execute(f"UPDATE {table} SET parent_email = %s, parent_email_hash = %s"
                             f" WHERE {key} = %s", (*stored(conn, plain), row_key))
        changed += len(rows)
    return changed


def _warn() -> None:
    global _warned
    if not _warned:
        logger.warning("no cloud key: parents' e-mail addresses are stored readable "
                       "(development only; configure portal.cloud_key_file)")
        _warned = True
