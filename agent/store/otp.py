"""The store's key sealed to the Raspberry Pi board: the key file is useless off the board.

On a laptop or in CI the key-encryption key (KEK) sits in ``teddy.key`` (the file key). On
a Pi that key file lives on the same memory card as ``teddy.db``, so whoever takes the card
has both. With this provider the key file holds the KEK *sealed* (AES-256-GCM) under a
wrapping key derived (HKDF-SHA256) from a 256-bit secret kept in the SoC's one-time
programmable memory, which stays on the board:

- ``agent.store.otp:private_key``: the device private key rows, read with the Raspberry Pi
  tool ``rpi-otp-private-key`` (Pi 4 and Pi 5, from the ``rpi-eeprom`` tools); programmed
  once at manufacture with ``rpi-otp-private-key -w <64 hex digits>``.
- ``agent.store.otp:customer_otp``: the eight customer OTP rows (36-43) of a Pi 4 and
  earlier, read with the firmware mailbox ``vcmailbox 0x00030021 40 40 0 8 0 ...``;
  programmed once with the ``0x00038021`` (SET_CUSTOMER_OTP) tag.

Set ``TEDDY_STORE__KEY_PROVIDER`` (``store.key_provider``) to one of them. Rotation works as
with the file key (the next key is sealed too). A plain key file found at first load (one
``provision-device`` wrote) is sealed in place. Reading OTP needs access to ``/dev/vcio``
(the ``video`` group). Errors are one line naming the tool and the way out.
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
from pathlib import Path
from typing import Protocol

from agent.store import crypto
from agent.store.keys import FileKeyProvider
from config.errors import DecryptionError, KeyFileError
from config.keyfile import fsync_dir, write_key_file
from config.settings import StoreSettings

logger = logging.getLogger(__name__)

PRIVATE_KEY_TOOL = "rpi-otp-private-key"
"""Raspberry Pi's script that reads (and once writes) the OTP device private key."""
VCMAILBOX = "vcmailbox"
"""Raspberry Pi's command-line client of the firmware mailbox (``/dev/vcio``)."""
GET_CUSTOMER_OTP = 0x00030021
"""Mailbox tag reading customer OTP rows (``start``, ``count``, then the values)."""
RESPONSE_OK = 0x80000000
"""Mailbox buffer code of a request the firmware answered successfully."""
ROWS = 8
"""32-bit OTP rows holding the secret: 256 bits."""
SEALED_PREFIX = b"teddy-otp-sealed-v1:"
"""Start of a key file whose key is sealed under the OTP secret."""
KEK_AAD = b"teddy/kek/otp/v1"
"""Associated data of the sealed KEK."""
TIMEOUT_S = 10.0
"""Seconds an OTP tool may take."""


class OtpSecret(Protocol):
    """Where the board's 256-bit secret comes from."""

    def read(self) -> bytes:
        """The 32-byte secret; a :class:`KeyFileError` if it cannot be read or is unset."""
        ...


def _run(argv: list[str], what: str) -> str:
    """Run an OTP tool; its stdout, or a one-line :class:`KeyFileError`."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S,
                              check=False)
    except FileNotFoundError:
        raise KeyFileError(
            f"{argv[0]} is not installed (not on PATH) — {what} needs it: install the "
            "Raspberry Pi tools (raspi-utils, rpi-eeprom) or unset TEDDY_STORE__KEY_PROVIDER "
            "to use the key file"
        ) from None
    except subprocess.TimeoutExpired:
        raise KeyFileError(f"{argv[0]} did not answer within {TIMEOUT_S:g} s — check the "
                           "firmware mailbox /dev/vcio") from None
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[0]
        raise KeyFileError(
            f"{argv[0]} failed (exit {done.returncode}: {said}) — run the bear as a user in "
            "the 'video' group (it reads /dev/vcio)"
        )
    return done.stdout


def _not_programmed(tool: str, how: str) -> KeyFileError:
    return KeyFileError(f"the board's OTP secret read by {tool} is not programmed (all zeros) "
                        f"— program it once at manufacture ({how}); see docs/operations.md")


class PrivateKeyOtp:
    """The OTP device private key, read with ``rpi-otp-private-key`` (64 hex digits)."""

    def read(self) -> bytes:
        """The 32-byte private key from OTP."""
        out = _run([PRIVATE_KEY_TOOL], "store.key_provider agent.store.otp:private_key").strip()
        try:
            secret = bytes.fromhex(out)
        except ValueError:
            secret = b""
        if len(secret) != 4 * ROWS:
            raise KeyFileError(f"{PRIVATE_KEY_TOOL} printed {len(out)} characters, not "
                               f"{8 * ROWS} hex digits — check the tool's version")
        if not any(secret):
            raise _not_programmed(PRIVATE_KEY_TOOL, "rpi-otp-private-key -w $(openssl rand "
                                  "-hex 32)")
        return secret


class CustomerOtp:
    """The eight customer OTP rows of a Pi 4 or earlier, read through ``vcmailbox``."""

    def read(self) -> bytes:
        """The rows as 32 bytes (big-endian words, row 0 first)."""
        size = 8 + 4 * ROWS
        argv = [VCMAILBOX, f"0x{GET_CUSTOMER_OTP:08x}", str(size), str(size), "0", str(ROWS),
                *(["0"] * ROWS)]
        words = _parse_words(_run(argv, "store.key_provider agent.store.otp:customer_otp"))
        rows = words[7:7 + ROWS]
        secret = b"".join(word.to_bytes(4, "big") for word in rows)
        if not any(secret):
            raise _not_programmed(VCMAILBOX, "the SET_CUSTOMER_OTP tag 0x00038021 with 8 "
                                  "random rows")
        return secret


def _parse_words(out: str) -> list[int]:
    """The answer of ``vcmailbox 0x00030021``: buffer size, code, tag, sizes, start, count and
    the rows; a one-line error unless it is a successful answer to that tag."""
    try:
        words = [int(token, 16) for token in out.split()]
    except ValueError:
        raise KeyFileError(f"{VCMAILBOX} printed something that is not hex words "
                           f"({out.strip()[:60]!r}) — check the tool") from None
    if len(words) < 7 + ROWS or words[2] != GET_CUSTOMER_OTP:
        raise KeyFileError(f"{VCMAILBOX} answered {len(words)} words, not the customer OTP "
                           "rows — check the firmware supports tag 0x00030021")
    if words[1] != RESPONSE_OK or not words[4] & RESPONSE_OK:
        raise KeyFileError(f"the firmware refused to read the customer OTP (code "
                           f"0x{words[1]:08x}) — update the Pi's firmware")
    return words


class OtpKeyProvider(FileKeyProvider):
    """The file key, sealed under a key derived from the board's OTP secret. Rotatable."""

    def __init__(self, path: Path, secret: OtpSecret) -> None:
        super().__init__(path)
        self.secret = secret
        """Where the board's secret is read from."""
        self._wrapping: bytes | None = None

    def _wrapping_key(self) -> bytes:
        if self._wrapping is None:
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.kdf.hkdf import HKDF

            self._wrapping = HKDF(algorithm=hashes.SHA256(), length=crypto.KEY_BYTES, salt=None,
                                  info=b"teddy/kek-wrap/v1").derive(self.secret.read())
        return self._wrapping

    def load(self, create: bool = False) -> bytes:
        """The KEK, unsealed with the board's secret; a plain key file is sealed first."""
        key = super().load(create=create)
        if not self.path.read_bytes().startswith(SEALED_PREFIX):
            self._seal_in_place(key)
        return key

    def _encode(self, key: bytes) -> bytes:
        sealed = crypto.seal(self._wrapping_key(), key, KEK_AAD)
        return SEALED_PREFIX + base64.b64encode(sealed) + b"\n"

    def _decode(self, content: bytes, path: Path) -> bytes:
        if not content.startswith(SEALED_PREFIX):
            return super()._decode(content, path)  # a plain key file, sealed by load()
        try:
            sealed = base64.b64decode(content[len(SEALED_PREFIX):].strip(), validate=True)
            return crypto.unseal(self._wrapping_key(), sealed, KEK_AAD, what=f"key file {path}")
        except (ValueError, DecryptionError):
            raise KeyFileError(
                f"key file {path} does not open with this board's OTP secret — the memory card "
                "comes from another bear, or the file is damaged; put the card back in its own "
                "bear (without it the kept conversations cannot be read)"
            ) from None

    def _seal_in_place(self, key: bytes) -> None:
        """Replace a plain key file by the same key sealed to this board (atomically)."""
        draft = self.path.with_name(f"{self.path.name}.seal-{os.getpid()}")
        draft.unlink(missing_ok=True)
        write_key_file(draft, self._encode(key))
        os.replace(draft, self.path)
        fsync_dir(self.path.parent)
        logger.info("sealed key file %s to this board's OTP secret", self.path)


def private_key(settings: StoreSettings) -> OtpKeyProvider:
    """``store.key_provider = "agent.store.otp:private_key"``: sealed by the OTP device
    private key (``rpi-otp-private-key``; Pi 4 and Pi 5)."""
    return OtpKeyProvider(settings.key_path, PrivateKeyOtp())


def customer_otp(settings: StoreSettings) -> OtpKeyProvider:
    """``store.key_provider = "agent.store.otp:customer_otp"``: sealed by the customer OTP
    rows (``vcmailbox 0x00030021``; Pi 4 and earlier)."""
    return OtpKeyProvider(settings.key_path, CustomerOtp())
