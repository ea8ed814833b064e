"""The release manifest: what a signed over-the-air release holds, as both ends read it.

A release is a directory (served over HTTP(S)) of::

    manifest.json   this model as JSON: version, floor, and the SHA-256 and size of every file
    manifest.sig    base64 Ed25519 signature of the exact bytes of ``manifest.json``
    wheels/*.whl    the project's wheel and (in a complete release) its dependency wheels

The cloud signs with the fleet's release key; the bear holds only the public key and checks
the signature before it reads a single field, then every file's hash before it installs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from pathlib import PurePosixPath
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from config.errors import ProtocolError
from sync.protocol.base import Message

MANIFEST_NAME = "manifest.json"
"""File name of the manifest inside a release."""
SIGNATURE_NAME = "manifest.sig"
"""File name of the manifest's signature inside a release."""
VERSION_PATTERN = re.compile(r"^\d+(\.\d+){1,3}([.-]?(a|b|rc|dev|post)\d+)*$")
"""Versions are PEP 440 release numbers (``1.4.2``, ``1.5.0rc1``)."""


class SignatureError(ProtocolError):
    """A manifest's signature is missing, malformed, or not made by the fleet's release key."""


class ReleaseFile(Message):
    """One file of a release."""

    path: str
    """Path relative to the release root, POSIX separators (``wheels/teddy-1.2.0-...whl``)."""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """Lower-case hex SHA-256 of the file's bytes."""
    size: int = Field(ge=0)
    """Size, bytes."""

    @field_validator("path")
    @classmethod
    def _relative_and_inside(cls, value: str) -> str:
        parts = PurePosixPath(value).parts
        if not parts or value.startswith("/") or ".." in parts or "\\" in value:
            raise ValueError(f"file path {value!r} must be relative and stay inside the release")
        return value


class ReleaseManifest(Message):
    """What a release is: version, floor, and every file with its hash."""

    MAX_BYTES: ClassVar[int] = 1024 * 1024

    v: Literal[1] = 1
    name: Literal["teddy"] = "teddy"
    """Distribution name of the project wheel."""
    version: str = Field(pattern=VERSION_PATTERN.pattern)
    """Version this release installs."""
    floor: str = Field(pattern=VERSION_PATTERN.pattern)
    """Minimum previous version: once a bear runs this release it refuses any release older
    than ``floor`` (anti-rollback to a known-vulnerable version)."""
    created_at: str
    """When the release was built, ISO 8601 UTC."""
    key_id: str
    """Fingerprint of the public key expected to have signed it (see :func:`key_id`)."""
    complete: bool
    """True when every dependency wheel is included (installable offline); False for a
    development release carrying only the project wheel."""
    files: tuple[ReleaseFile, ...] = Field(min_length=1)
    """Every file of the release except the manifest and its signature."""

    @model_validator(mode="after")
    def _floor_not_above_version(self) -> ReleaseManifest:
        if parse_version(self.floor) > parse_version(self.version):
            raise ValueError(f"floor {self.floor} is above the release's version {self.version}")
        return self

    @property
    def total_size(self) -> int:
        """Bytes of all files together."""
        return sum(item.size for item in self.files)

    def project_wheel(self) -> ReleaseFile:
        """The file that is the project's own wheel."""
        prefix = f"wheels/{self.name}-{self.version}-"
        for item in self.files:
            if item.path.startswith(prefix) and item.path.endswith(".whl"):
                return item
        raise ProtocolError(f"release {self.version} has no {prefix}*.whl — rebuild the release")


def parse_version(text: str):
    """A comparable PEP 440 version."""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text)
    except InvalidVersion:
        raise ProtocolError(f"version {text!r} is not a PEP 440 version like 1.2.0") from None


def key_id(public_key_raw: bytes) -> str:
    """A short public fingerprint of an Ed25519 public key (hex, 16 characters)."""
    return hashlib.sha256(b"teddy/release-key/v1" + public_key_raw).hexdigest()[:16]


def load_public_key(text: str):
    """An Ed25519 public key from base64 of its 32 raw bytes."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise SignatureError(
            "update.public_key is not base64 of a 32-byte Ed25519 public key — copy it from "
            "teddy-cloud release keygen"
        ) from None


def public_key_raw(public_key) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sign_manifest(private_key, manifest_bytes: bytes) -> bytes:
    """The ``manifest.sig`` content for ``manifest_bytes``: base64 of the Ed25519 signature."""
    return base64.b64encode(private_key.sign(manifest_bytes)) + b"\n"


def verify_manifest(public_key, manifest_bytes: bytes, signature_file: bytes) -> ReleaseManifest:
    """Check the signature first, then parse; raises :class:`SignatureError` or ProtocolError."""
    from cryptography.exceptions import InvalidSignature

    try:
        signature = base64.b64decode(signature_file.strip(), validate=True)
    except binascii.Error:
        raise SignatureError("manifest.sig is not base64 — the release is damaged") from None
    try:
        public_key.verify(signature, manifest_bytes)
    except InvalidSignature:
        raise SignatureError(
            "manifest signature does not verify with this fleet's release key — the release "
            "was altered or signed by another key; nothing was installed"
        ) from None
    manifest = ReleaseManifest.from_payload(manifest_bytes)
    expected = key_id(public_key_raw(public_key))
    if manifest.key_id != expected:
        raise SignatureError(
            f"manifest names key {manifest.key_id} but was verified with key {expected} — "
            "rebuild the release with the fleet's release key"
        )
    return manifest
