"""Settings sections ``pairing`` (the bear's side of the claim) and ``fleet`` (the cloud's).

The bear pairs with a *claim credential* (``pairing.claim_username``/``claim_password``)
that the broker's ACL lets touch only ``teddy/v1/claim/<its client id>/...``; the cloud
answers with the bear's own credentials and the fleet's command-signing public key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from config.settings import Section


class PairingSettings(Section):
    """The bear's paw-button pairing and factory reset."""

    claim_username: str = "claim"
    """Broker user of the claim credential (its ACL: ``teddy/v1/claim/%c/#`` only)."""
    claim_password: SecretStr | None = None
    """Password of the claim credential, set at manufacture; never logged."""
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
    """Ed25519 private key (PEM, mode 0600) that signs commands and config; made on first
    use. None: ``<store.data_dir>/fleet-signing.key``."""
    command_ttl_s: float = Field(default=300.0, gt=0, le=7 * 24 * 3600)
    """Seconds a command stays valid after it is issued (the bear rejects it after)."""
    wait_s: float = Field(default=30.0, gt=0, le=3600)
    """``--wait``: seconds to wait for a bear's answer."""
    claim_ttl_s: float = Field(default=300.0, gt=0, le=3600)
    """Seconds after a claim request during which its code may be approved."""
    claim_max_attempts: int = Field(default=5, ge=1, le=100)
    """Wrong codes a claim tolerates before it is locked (brute-force limit)."""
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
