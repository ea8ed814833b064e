"""Pairing: ``teddy/v1/claim/<claim_id>/up/request`` and ``.../down/answer``.

A bear that holds only the claim credential may touch nothing but its own claim root
(the broker's ACL: ``pattern readwrite teddy/v1/claim/%c/#``, the claim id being the MQTT
client id). The request is retained, so the cloud finds it whenever the parent approves;
the answer carries the bear's own credentials sealed to the X25519 key in the request
(X25519 + HKDF-SHA256 + AES-256-GCM), so nobody else on the claim path can read them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from typing import Literal

from pydantic import Field

from config.errors import ProtocolError
from sync.protocol.base import Message
from sync.protocol.topics import TOPIC_ROOT

CLAIM_ID_PATTERN = re.compile(r"^c[0-9a-f]{24}$")
"""A claim id: ``c`` and 24 hex digits (also the claim's MQTT client id)."""


def claim_topic(claim_id: str, name: str) -> str:
    """``teddy/v1/claim/<claim_id>/<name>`` (``up/request`` or ``down/answer``)."""
    if not CLAIM_ID_PATTERN.match(claim_id):
        raise ProtocolError(f"claim id {claim_id!r} is not 'c' and 24 hex digits")
    return f"{TOPIC_ROOT}/claim/{claim_id}/{name}"


def claim_requests_filter() -> str:
    """The filter the cloud subscribes to for every claim request."""
    return f"{TOPIC_ROOT}/claim/+/up/request"


def code_digest(claim_id: str, code: str) -> str:
    """HMAC-SHA256 of a spoken code keyed by its claim id, hex (the code is never sent)."""
    return hmac.new(claim_id.encode(), code.encode(), hashlib.sha256).hexdigest()


class ClaimRequest(Message):
    """``claim/<id>/up/request``: a bear in pairing mode asks to be claimed, retained."""

    v: Literal[1] = 1
    """Schema version."""
    claim_id: str = Field(pattern=CLAIM_ID_PATTERN.pattern)
    """The claim's id (also its MQTT client id)."""
    device_id: str = Field(min_length=3, max_length=64)
    """The bear asking."""
    code_digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    """:func:`code_digest` of the code the bear spoke."""
    requested_at: float = Field(ge=0)
    """When the bear spoke the code, Unix time in seconds."""
    public_key: str = Field(min_length=40, max_length=64)
    """Base64 X25519 public key the answer is sealed to."""
    firmware: str = Field(default="", max_length=64)
    """Software version of the bear."""


class ClaimAnswer(Message):
    """``claim/<id>/down/answer``: the cloud's answer, retained until the bear takes it."""

    v: Literal[1] = 1
    """Schema version."""
    claim_id: str = Field(pattern=CLAIM_ID_PATTERN.pattern)
    """The claim answered."""
    status: Literal["approved", "rejected"]
    """Approved (``sealed`` holds the credentials) or rejected (``reason`` says why)."""
    reason: str = Field(default="", max_length=300)
    """Why a claim was rejected (locked after wrong codes, expired)."""
    ephemeral_key: str = Field(default="", max_length=64)
    """Base64 X25519 public key of the cloud's one-time key pair."""
    sealed: str = Field(default="", max_length=8192)
    """Base64 nonce + AES-GCM ciphertext of :class:`PairingGrant` JSON."""


class PairingGrant(Message):
    """What an approved claim gives the bear (only ever travels sealed)."""

    v: Literal[1] = 1
    """Schema version."""
    device_id: str = Field(min_length=3, max_length=64)
    """The bear's device id (also its broker user name)."""
    mqtt_username: str = Field(min_length=1, max_length=128)
    """The bear's own broker user."""
    mqtt_password: str = Field(min_length=16, max_length=256)
    """The bear's own broker password."""
    fleet_public_key: str = Field(min_length=40, max_length=64)
    """Base64 raw Ed25519 public key that signs the fleet's commands and config."""
    parent: str = Field(min_length=3, max_length=320)
    """The consenting parent (e-mail)."""
    scopes: list[Literal["keep", "sync", "name"]] = Field(min_length=1, max_length=3)
    """What the parent consented to."""


def _aead_key(shared: bytes, claim_id: str) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"teddy/claim/v1/" + claim_id.encode()).derive(shared)


def seal_grant(grant: PairingGrant, claim_id: str, bear_public_key: str) -> ClaimAnswer:
    """An approved answer: ``grant`` sealed to the bear's X25519 key."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    try:
        peer = X25519PublicKey.from_public_bytes(base64.b64decode(bear_public_key, validate=True))
    except ValueError:
        raise ProtocolError(f"claim {claim_id} carries an invalid X25519 public key") from None
    ephemeral = X25519PrivateKey.generate()
    key = _aead_key(ephemeral.exchange(peer), claim_id)
    nonce = os.urandom(12)
    sealed = nonce + AESGCM(key).encrypt(nonce, grant.to_payload(), claim_id.encode())
    raw = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return ClaimAnswer(claim_id=claim_id, status="approved",
                       ephemeral_key=base64.b64encode(raw).decode(),
                       sealed=base64.b64encode(sealed).decode())


def open_grant(answer: ClaimAnswer, private_key: object) -> PairingGrant:
    """The grant inside an approved answer, opened with the bear's X25519 private key."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        peer = X25519PublicKey.from_public_bytes(base64.b64decode(answer.ephemeral_key,
                                                                  validate=True))
        sealed = base64.b64decode(answer.sealed, validate=True)
        key = _aead_key(private_key.exchange(peer), answer.claim_id)
        plain = AESGCM(key).decrypt(sealed[:12], sealed[12:], answer.claim_id.encode())
    except (ValueError, InvalidTag):
        raise ProtocolError(f"the answer to claim {answer.claim_id} does not open with this "
                            "bear's key — hold the paw 5 s to pair again") from None
    return PairingGrant.from_payload(plain)
