"""AES-256-GCM sealing of stored values, and the wrapping of data keys.

Every sealed value is ``nonce (12 bytes) || ciphertext+tag`` under a fresh random nonce,
with the row's identity as associated data: a ciphertext copied to another row, another
conversation, or opened with another key fails authentication instead of yielding text.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from config.errors import DecryptionError

KEY_BYTES = 32
"""AES-256 key length, bytes."""
NONCE_BYTES = 12
"""GCM nonce length, bytes."""


def new_key() -> bytes:
    """A fresh random 256-bit key."""
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def seal(key: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """Encrypt ``plaintext`` under ``key`` bound to ``associated_data``."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated_data)


def unseal(key: bytes, sealed: bytes, associated_data: bytes, what: str) -> bytes:
    """Decrypt a value made by :func:`seal`; ``what`` names it in the error."""
    if len(sealed) < NONCE_BYTES + 16:
        raise DecryptionError(f"{what} is truncated ({len(sealed)} bytes) — run teddy store verify")
    nonce, body = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
    try:
        return AESGCM(key).decrypt(nonce, body, associated_data)
    except InvalidTag:
        raise DecryptionError(
            f"{what} failed authentication: tampered, moved from another row, or the wrong "
            "key — run teddy store verify"
        ) from None


def turn_aad(conversation_id: str, seq: int, role: str) -> bytes:
    """Associated data binding a turn's text to its row."""
    return f"teddy/turn/v1/{conversation_id}/{seq}/{role}".encode()


def data_key_aad(conversation_id: str) -> bytes:
    """Associated data binding a wrapped data key to its conversation."""
    return f"teddy/dek/v1/{conversation_id}".encode()


def consent_aad(consent_id: int) -> bytes:
    """Associated data binding a sealed parent (name or e-mail) to its consent row."""
    return f"teddy/consent/v1/{consent_id}".encode()


def key_id(key: bytes) -> str:
    """A public fingerprint of a key-encryption key: tells keys apart, reveals nothing."""
    return hashlib.sha256(b"teddy/kek-id/v1/" + key).hexdigest()[:32]
