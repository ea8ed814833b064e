"""One JSON POST with the standard library, failures sorted into retry / give up."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from sync.cloud.notify.errors import DeliveryError

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 425, 429})
"""4xx answers that mean "later" rather than "never" (5xx always mean later)."""


def post_json(url: str, body: bytes | dict[str, Any], timeout: float,
              headers: dict[str, str] | None = None, what: str = "") -> int:
    """POST ``body`` to ``url``; returns the HTTP status (2xx).

    Raises :class:`DeliveryError` naming ``what`` and the host only (a Slack or gateway URL
    is itself a credential, so it is never put in a message).
    """
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "teddy-cloud-notify/1",
                 **(headers or {})})
    where = f"{what or 'receiver'} at {urlsplit(url).hostname}"
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        retry = exc.code >= 500 or exc.code in RETRY_STATUSES
        raise DeliveryError(f"{where} answered HTTP {exc.code}", retryable=retry) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"{where} unreachable: {reason}", retryable=True) from None
