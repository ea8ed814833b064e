"""Pairing on the bear's own authenticated topics: ``up/claim`` and ``down/claim``.

A bear is made at manufacture (``teddy-cloud provision``): it has its own broker login and
the cloud's two claim keys. In pairing mode it publishes a retained :class:`ClaimRequest` on
``teddy/v1/<device_id>/up/claim``; the broker's ACL lets only that bear write there, so the
cloud takes the device id from the TOPIC, never from the payload. The request's body
(:class:`ClaimBody`: the code's digest, a fresh nonce, the release of a previous pairing) is
sealed to the cloud's X25519 claim key (X25519 + HKDF-SHA256 + AES-256-GCM, the device id and
claim id as associated data), so nobody reading the topic can brute-force the code offline.

The cloud answers on ``down/claim`` with a :class:`ClaimAnswer` signed by its Ed25519 claim
key and bound to that claim (device id, claim id, the bear's nonce, an expiry); the parent's
consent inside (:class:`PairingGrant`) is sealed to the bear's one-time X25519 key. The bear
refuses an answer its manufacture key does not verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from typing import Any, ClassVar, Literal

from pydantic import Field

from config.errors import ProtocolError
from sync.protocol.base import Message
from sync.protocol.commands import Signed
from sync.protocol.topics import Route

Scope = Literal["keep", "sync", "name"]
"""What a parent consents to (:class:`agent.store.consent.Scope` values)."""
CLAIM_ID_PATTERN = re.compile(r"^c[0-9a-f]{24}$")
"""A claim id: ``c`` and 24 hex digits."""
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
"""A pairing id (a UUID made by PostgreSQL)."""


def code_digest(claim_id: str, code: str) -> str:
    """HMAC-SHA256 of a spoken code keyed by its claim id, hex (the code is never sent)."""
    return hmac.new(claim_id.encode(), code.encode(), hashlib.sha256).hexdigest()


def release_digest(token: str) -> str:
    """SHA-256 of a pairing's release token, hex (what the cloud keeps of it)."""
    return hashlib.sha256(token.encode()).hexdigest()


class Release(Message):
    """Proof that the claimant held the bear's current pairing (released by a factory reset
    or a new pairing of the same family): the token the cloud sealed into that pairing."""

    v: Literal[1] = 1
    """Schema version."""
    pairing_id: str = Field(pattern=UUID_PATTERN)
    """The pairing released."""
    token: str = Field(min_length=32, max_length=128)
    """Its release token."""
    reason: Literal["factory-reset", "re-pair"] = "re-pair"
    """Why it is released."""


class ClaimBody(Message):
    """What a claim request says, sealed to the cloud's claim key."""

    v: Literal[1] = 1
    """Schema version."""
    claim_id: str = Field(pattern=CLAIM_ID_PATTERN.pattern)
    """The claim's id."""
    device_id: str = Field(min_length=3, max_length=64)
    """The bear asking (must equal the topic's; the topic is what counts)."""
    code_digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    """:func:`code_digest` of the code the bear spoke."""
    nonce: str = Field(pattern=r"^[0-9a-f]{32}$")
    """Fresh random hex the answer must echo."""
    requested_at: float = Field(ge=0, le=1e10)
    """When the bear spoke the code, Unix time in seconds."""
    firmware: str = Field(default="", max_length=64)
    """Software version of the bear."""
    release: Release | None = None
    """The previous pairing this claim releases, if the bear was paired."""


class ClaimRequest(Message):
    """``up/claim``: a bear in pairing mode asks to be claimed, retained."""

    ROUTE: ClassVar[Route] = Route("up", "claim", retain=True)

    MAX_BYTES: ClassVar[int] = 8 * 1024

    v: Literal[2] = 2
    """Schema version."""
    claim_id: str = Field(pattern=CLAIM_ID_PATTERN.pattern)
    """The claim's id (new for every attempt)."""
    ephemeral_key: str = Field(min_length=40, max_length=64)  # base64 raw 32 bytes
    """Base64 one-time X25519 public key of the bear: the body is sealed with it to the
    cloud's claim key, and the answer's grant is sealed to it."""
    sealed: str = Field(min_length=20, max_length=4096)
    """Base64 nonce + AES-GCM ciphertext of :class:`ClaimBody` JSON."""


class PairingGrant(Message):
    """What an approved claim gives the bear (only ever travels sealed)."""

    v: Literal[2] = 2
    """Schema version."""
    parent: str = Field(min_length=3, max_length=320)
    """The consenting parent (e-mail)."""
    scopes: list[Scope] = Field(min_length=1, max_length=3)
    """What the parent consented to."""
    release_token: str = Field(min_length=32, max_length=128)
    """Secret that proves this pairing to the cloud when the bear later releases it."""


class ClaimAnswer(Signed):
    """``down/claim``: the cloud's answer to one claim, signed with its claim key, retained."""

    ROUTE: ClassVar[Route] = Route("down", "claim", retain=True)

    MAX_BYTES: ClassVar[int] = 16 * 1024
    DOMAIN: ClassVar[bytes] = b"teddy/claim-answer/v1\n"

    v: Literal[2] = 2
    """Schema version."""
    device_id: str = Field(min_length=3, max_length=64)
    """The bear answered."""
    claim_id: str = Field(pattern=CLAIM_ID_PATTERN.pattern)
    """The claim answered."""
    nonce: str = Field(pattern=r"^[0-9a-f]{32}$")
    """The claim's nonce (binds the answer to that one claim)."""
    status: Literal["approved", "rejected"]
    """Approved (``sealed`` holds the grant) or rejected (``reason`` says why)."""
    reason: str = Field(default="", max_length=300)
    """Why a claim was rejected."""
    expires_at: float = Field(ge=0, le=1e10)
    """The bear ignores the answer after this, Unix time in seconds."""
    pairing_id: str = Field(default="", max_length=36)
    """The new pairing (family scope), when approved."""
    ephemeral_key: str = Field(default="", max_length=64)
    """Base64 X25519 public key of the cloud's one-time key pair."""
    sealed: str = Field(default="", max_length=8192)
    """Base64 nonce + AES-GCM ciphertext of :class:`PairingGrant` JSON."""

    def verify(self, public_key: bytes) -> None:
        """Raise :class:`ProtocolError` unless signed with the cloud's claim key."""
        try:
            super().verify(public_key)
        except ProtocolError:
            raise ProtocolError("the claim answer is not signed by this fleet's claim key "
                                "— ignored") from None


def _aead_key(shared: bytes, label: str) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"teddy/claim/v2/" + label.encode()).derive(shared)


def _public(b64: str, what: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    try:
        return X25519PublicKey.from_public_bytes(base64.b64decode(b64, validate=True))
    except ValueError:
        raise ProtocolError(f"{what} is not a base64 X25519 public key") from None


def raw_public(private_key: Any) -> str:
    """Base64 raw public key of an X25519 or Ed25519 private key."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return base64.b64encode(private_key.public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)).decode()


def _seal(private: Any, peer_b64: str, label: str, plain: bytes, aad: bytes) -> str:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = _aead_key(private.exchange(_public(peer_b64, "the peer key")), label)
    nonce = os.urandom(12)
    return base64.b64encode(nonce + AESGCM(key).encrypt(nonce, plain, aad)).decode()


def _open(private: Any, peer_b64: str, label: str, sealed_b64: str, aad: bytes,
          what: str) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        key = _aead_key(private.exchange(_public(peer_b64, what)), label)
        sealed = base64.b64decode(sealed_b64, validate=True)
        return AESGCM(key).decrypt(sealed[:12], sealed[12:], aad)
    except (ValueError, InvalidTag):
        raise ProtocolError(f"{what} does not open with this key (sealed for another, or "
                            "altered)") from None


def _claim_aad(device_id: str, claim_id: str) -> bytes:
    return f"{device_id}/{claim_id}".encode()


def seal_request(body: ClaimBody, bear_private: Any, cloud_claim_key: str) -> ClaimRequest:
    """The claim request: ``body`` sealed with the bear's one-time key to the cloud's key."""
    sealed = _seal(bear_private, cloud_claim_key, "up/" + body.claim_id, body.to_payload(),
                   _claim_aad(body.device_id, body.claim_id))
    return ClaimRequest(claim_id=body.claim_id, ephemeral_key=raw_public(bear_private),
                        sealed=sealed)


def open_request(request: ClaimRequest, device_id: str, cloud_private: Any) -> ClaimBody:
    """The body of a claim that arrived on ``device_id``'s topic, opened with the cloud's
    claim key; refused when it was sealed for another bear or another claim."""
    plain = _open(cloud_private, request.ephemeral_key, "up/" + request.claim_id,
                  request.sealed, _claim_aad(device_id, request.claim_id),
                  f"claim {request.claim_id} of {device_id}")
    body = ClaimBody.from_payload(plain)
    if body.claim_id != request.claim_id or body.device_id != device_id:
        raise ProtocolError(f"claim {request.claim_id} names another bear or claim inside")
    return body


def seal_grant(grant: PairingGrant, answer: ClaimAnswer, bear_key: str) -> ClaimAnswer:
    """``answer`` with ``grant`` sealed to the bear's one-time X25519 key (not yet signed)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    ephemeral = X25519PrivateKey.generate()
    sealed = _seal(ephemeral, bear_key, "down/" + answer.claim_id, grant.to_payload(),
                   _claim_aad(answer.device_id, answer.claim_id))
    return answer.model_copy(update={"ephemeral_key": raw_public(ephemeral), "sealed": sealed})


def open_grant(answer: ClaimAnswer, bear_private: Any) -> PairingGrant:
    """The grant inside an approved answer, opened with the bear's one-time private key."""
    plain = _open(bear_private, answer.ephemeral_key, "down/" + answer.claim_id, answer.sealed,
                  _claim_aad(answer.device_id, answer.claim_id),
                  f"the answer to claim {answer.claim_id}")
    return PairingGrant.from_payload(plain)
