"""The generic webhook: the notification's JSON, signed with HMAC-SHA256.

The signature covers ``<timestamp>.<body>`` (so a captured request cannot be replayed
later with a fresh timestamp) and travels as ``<signature_header>: sha256=<hex>`` next to
``X-Teddy-Timestamp: <unix seconds>``. Receivers check it with :func:`verify_signature`.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from config.notify import WebhookChannel
from sync.cloud.notify.message import Notification
from sync.cloud.notify.web import post_json

TIMESTAMP_HEADER = "X-Teddy-Timestamp"
"""Header with the signing time, Unix seconds."""


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` HMAC of ``<timestamp>.<body>`` under ``secret``."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: bytes, timestamp: str, body: bytes, signature: str,
                     tolerance_s: float = 300.0, now: float | None = None) -> bool:
    """Whether ``signature`` is ours for this body and the timestamp is recent."""
    try:
        age = abs((time.time() if now is None else now) - float(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookSender:
    """Delivers to one webhook channel."""

    def __init__(self, settings: WebhookChannel, timeout: float) -> None:
        self.settings = settings
        """The channel's settings."""
        self.timeout = timeout
        """Seconds per attempt."""

    def send(self, note: Notification) -> None:
        """POST the signed JSON; raises DeliveryError."""
        body = note.to_json()
        timestamp = str(int(time.time()))
        signature = sign(self.settings.secret.get_secret_value().encode(), timestamp, body)
        post_json(self.settings.url, body, self.timeout, what="webhook", headers={
            self.settings.signature_header: signature, TIMESTAMP_HEADER: timestamp})
