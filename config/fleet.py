"""Settings sections ``pairing`` (the bear's side of the claim) and ``fleet`` (the cloud's).

A bear is made at manufacture (``teddy-cloud provision`` + ``scripts/provision-device``): its
own broker login, and three public keys of the cloud in ``[pairing]``: the fleet's
command-signing key, the claim key its claims are sealed to, and the key that signs the
cloud's claim answers. There is no shared claim password: a bear claims on its own topics.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from config.settings import Section

EDGE_SCHEMES = {"mqtt": False, "mqtts": True}
"""URL schemes of ``fleet.edge_brokers`` and whether each is TLS."""


def edge_address(url: str) -> tuple[str, int, bool]:
    """``(host, port, tls)`` of an edge broker URL ``mqtt[s]://HOST:PORT``; ValueError (a
    pydantic validation error in settings) naming the bad value otherwise."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in EDGE_SCHEMES or not parts.hostname or port is None or parts.path:
        raise ValueError(f"edge broker {url!r} is not mqtt://HOST:PORT or mqtts://HOST:PORT "
                         "— write it e.g. as mqtts://edge-1.mqtt.example.com:8883")
    return parts.hostname, port, EDGE_SCHEMES[parts.scheme]


class PairingSettings(Section):
    """The bear's paw-button pairing and factory reset."""

    fleet_key: str | None = Field(default=None, min_length=40, max_length=64)
    """Base64 Ed25519 public key that signs the fleet's commands and config; installed at
    manufacture (``provision-device --from-cloud``), kept across factory resets."""
    claim_key: str | None = Field(default=None, min_length=40, max_length=64)
    """Base64 X25519 public key of the cloud that claims are sealed to; from manufacture."""
    claim_verify_key: str | None = Field(default=None, min_length=40, max_length=64)
    """Base64 Ed25519 public key that must have signed the cloud's claim answers."""
    @field_validator("fleet_key", "claim_key", "claim_verify_key")
    @classmethod
    def _check_key(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                raw = base64.b64decode(value, validate=True)
            except ValueError:
                raw = b""
            if len(raw) != 32:
                raise ValueError("must be the base64 of a 32-byte public key, as the bundle "
                                 "of teddy-cloud provision has it")
        return value

    hold_pair_s: float = Field(default=5.0, gt=0, le=60)
    """Seconds the paw must be held to enter pairing (released before the reset hold)."""
    hold_reset_s: float = Field(default=15.0, gt=0, le=120)
    """Seconds the paw must be held for a factory reset (crypto-shreds keys and data)."""
    code_ttl_s: float = Field(default=300.0, gt=0, le=3600)
    """Seconds a spoken one-time code stays valid (the bear stops waiting after it)."""
    speak_times: int = Field(default=2, ge=1, le=5)
    """How many times the bear speaks the code."""


class FleetSettings(Section):
    """The cloud's fleet operations: command signing, pairing approval, broker accounts."""

    signing_key_file: Path | None = None
    """Ed25519 private key (PEM, mode 0600) that signs commands and config; made once by
    ``teddy-cloud fleet keygen``, never implicitly. None: ``<store.data_dir>/fleet-signing.key``."""
    command_ttl_s: float = Field(default=300.0, gt=0, le=7 * 24 * 3600)
    """Seconds a command stays valid after it is issued (the bear rejects it after)."""
    wait_s: float = Field(default=30.0, gt=0, le=3600)
    """``--wait``: seconds to wait for a bear's answer."""
    claim_ttl_s: float = Field(default=300.0, gt=0, le=3600)
    """Seconds after a claim request during which its code may be approved."""
    claim_max_attempts: int = Field(default=5, ge=1, le=100)
    """Wrong codes a claim tolerates before it is locked (brute-force limit, per claim)."""
    requester_max_attempts: int = Field(default=5, ge=1, le=100)
    """Wrong codes one requester (parent account or operator) may enter within
    ``claim_ttl_s`` before its approvals are refused for that long (per requester)."""
    address_max_attempts: int = Field(default=20, ge=1, le=10000)
    """Wrong codes from one client address (every account behind it) within
    ``claim_ttl_s`` before approvals from that address are refused for that long."""
    fleet_max_attempts: int = Field(default=1000, ge=1, le=1_000_000)
    """Wrong codes fleet-wide within ``claim_ttl_s`` before every approval waits (a guessing
    budget: with k bears waiting, a guesser's odds stay below k x this / 10^12)."""
    release_window_s: float = Field(default=7 * 86400.0, gt=0, le=90 * 86400)
    """Seconds the holding family has to answer a request to release its bear (a claim from
    another account after a factory reset); unanswered, the bear stays theirs."""
    claim_key_file: Path | None = None
    """X25519 private key (PEM, mode 0600) that opens bears' claims; made on first use.
    None: ``<store.data_dir>/claim.key``."""
    claim_signing_key_file: Path | None = None
    """Ed25519 private key (PEM, mode 0600) that signs claim answers; made on first use.
    None: ``<store.data_dir>/claim-signing.key``."""
    claim_collect_s: float = Field(default=1.0, gt=0, le=30)
    """``pair approve``: seconds to collect retained claim requests from the broker."""
    broker_auth: Literal["dynsec"] = "dynsec"
    """How ``teddy-cloud`` keeps broker accounts (``sync.cloud.broker_accounts``): ``dynsec``
    is Mosquitto's dynamic-security plugin, changed live over ``$CONTROL`` (no reload)."""
    broker_admin_username: str = Field(default="svc.admin", pattern=r"^svc\.[a-z0-9][a-z0-9-]+$")
    """The broker's account administrator (made by ``teddy-cloud broker-init``)."""
    broker_admin_password: SecretStr | None = None
    """Its password; never logged. Prefer ``broker_admin_password_file``."""
    broker_admin_password_file: Path | None = None
    """File holding the administrator's password (``teddy-cloud broker-init`` writes it,
    mode 0600); read when an account is made or removed."""
    edge_brokers: list[str] = []
    """Edge brokers that hold bears' connections (docs/operations.md, "Past one broker"):
    ``mqtt://HOST:PORT`` or ``mqtts://HOST:PORT`` (TLS, checked against ``edge_ca_file``). A
    bear's account is made, re-keyed and removed on each of them as well as on the core
    (``mqtt``), as the same administrator with the same password."""
    edge_ca_file: Path | None = None
    """CA bundle of the edges' ``mqtts://`` listeners; None: ``mqtt.tls.ca_file``."""
    edge_admin_cert_file: Path | None = None
    """Client certificate (CN = ``broker_admin_username``) the administrator logs in to the
    edges' admin listener with (mutual TLS, ``use_identity_as_username``); the edges' files
    then keep no password for it, so it can never log in on the bears' listener. None: the
    administrator's password (an edge made before this)."""
    edge_admin_key_file: Path | None = None
    """Its private key (0600)."""

    @field_validator("edge_brokers")
    @classmethod
    def _edge_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            edge_address(url)
        return urls
