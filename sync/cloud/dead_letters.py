"""Dead letters: what ingest refused, kept for an operator, never without bounds.

Each kept dead letter holds the topic, the reason, the payload's size and only its first
``cloud.dead_letter_keep_bytes`` bytes. They are rate-limited per device (the rest are
counted, not kept), capped per device and in total, and deleted after
``cloud.dead_letter_keep_days`` by :func:`prune`, which ingest runs periodically.
"""

from __future__ import annotations

import logging
from typing import Any

from config.settings import CloudSettings
from sync.cloud.ratelimit import TokenBuckets

logger = logging.getLogger(__name__)

PRUNE_EVERY_S = 300.0
"""Seconds between two deletions of expired dead letters by one ingest process."""


class DeadLetters:
    """Decides which dead letters are kept, and keeps them. One per ingest process."""

    def __init__(self, cloud: CloudSettings) -> None:
        self.cloud = cloud
        """The ``[cloud]`` settings (caps, rate, bytes kept, retention)."""
        self._rate = TokenBuckets(cloud.dead_letters_per_device_per_s,
                                  max(cloud.dead_letters_per_device_per_s * 5, 1.0))
        self.dropped: dict[str, int] = {"rate": 0, "device_cap": 0, "total_cap": 0}
        """Dead letters not kept, by why."""

    def admit(self, device_id: str | None) -> bool:
        """Whether a dead letter from ``device_id`` is within the per-device rate."""
        if self._rate.take(device_id) > 0:
            self.dropped["rate"] += 1
            return False
        return True

    def insert(self, conn: Any, topic: str, device_id: str | None, payload: bytes,
               reason: str) -> bool:
        """Keep one dead letter unless a cap is reached; True if it was kept."""
        cloud = self.cloud
        same_device = "device_id IS NULL" if device_id is None else "device_id = %(device)s"
        row = conn.execute(
            "SELECT (SELECT count(*) FROM (SELECT 1 FROM dead_letters WHERE "
            f"{same_device} LIMIT %(per_device)s) d),"
            " (SELECT count(*) FROM (SELECT 1 FROM dead_letters LIMIT %(total)s) t)",
            {"device": device_id, "per_device": cloud.dead_letters_per_device,
             "total": cloud.dead_letters_total}).fetchone()
        if row[0] >= cloud.dead_letters_per_device:
            self.dropped["device_cap"] += 1
            return False
        if row[1] >= cloud.dead_letters_total:
            self.dropped["total_cap"] += 1
            return False
        conn.execute(
            "INSERT INTO dead_letters (topic, device_id, payload, payload_size, reason)"
            " VALUES (%s, %s, %s, %s, %s)",
            (topic, device_id, payload[:cloud.dead_letter_keep_bytes], len(payload),
             reason[:1000]))
        return True


def prune(conn: Any, keep_days: float) -> int:
    """Delete dead letters older than ``keep_days``; returns how many."""
    deleted = conn.execute(
        "DELETE FROM dead_letters WHERE received_at < now() - make_interval(secs => %s)",
        (keep_days * 86400.0,)).rowcount
    if deleted:
        logger.info("deleted %d dead letters older than %g days", deleted, keep_days)
    return deleted
