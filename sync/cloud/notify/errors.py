"""Why a delivery failed, and whether trying again can help."""

from __future__ import annotations

from config.errors import TeddyError


class DeliveryError(TeddyError, ConnectionError):
    """One delivery attempt failed. ``retryable``: a later attempt may succeed (5xx, 429,
    timeouts, refused connections); otherwise it never will (4xx, bad credentials)."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable
        """Whether the dispatcher should try again after a backoff."""
