"""Helpers of the identity and pairing attack tests: publish a claim as some broker account,
read claims as the fleet, answer as an attacker."""

from __future__ import annotations

import secrets
import time

from config.settings import Settings
from sync.client import MqttLink
from sync.protocol import ClaimBody
from sync.protocol.claim import code_digest, seal_request


def bound_client_id(settings: Settings) -> str:
    """The one client id the broker lets ``settings.mqtt.username`` connect with."""
    name = settings.mqtt.username or ""
    return name if name.startswith("svc.") else f"teddy-{name}"


def publish_claim(settings: Settings, topic_device: str, code: str, *,
                  body_device: str | None = None, expiry_s: float | None = None,
                  client_id: str | None = None) -> str:
    """Publish, retained, a claim sealed to the cloud's claim key (``settings.pairing``) on
    ``teddy/v1/<topic_device>/up/claim`` as the broker account in ``settings.mqtt``; the
    claim id. Returns once the broker has it (the ACL may drop it silently)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    claim_id = "c" + secrets.token_hex(12)
    body = ClaimBody(claim_id=claim_id, device_id=body_device or topic_device,
                     code_digest=code_digest(claim_id, code), nonce=secrets.token_hex(16),
                     requested_at=time.time())
    request = seal_request(body, X25519PrivateKey.generate(), settings.pairing.claim_key)
    with MqttLink(settings.mqtt, client_id=client_id or bound_client_id(settings)) as link:
        link.connect()
        link.publish(request, topic_device, expiry_s=expiry_s).wait(5)
    return claim_id
