"""Dead letters: what ingest refused, kept for an operator, never without bounds.

Each kept dead letter holds the topic, the device, the reason, the payload's size and the
time — and, only where no cloud key exists (a development set-up), the payload's first
``cloud.dead_letter_keep_bytes`` bytes: once a cloud key is configured a payload (which may
hold a child's words) is never kept readable. They are rate-limited per device (the rest are
counted, not kept), capped per device and in total, and deleted after
``cloud.dead_letter_keep_days`` by :func:`prune`, which ingest runs periodically.

One :class:`DeadLetters` serves both lanes of an ingest process (thread-safe), and near the
total cap the count is taken under a transaction-level advisory lock, so two lanes (or two
ingest processes) committing at once never keep more than the cap.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from config.settings import CloudSettings
from sync.cloud.db import one_row
from sync.cloud.ratelimit import TokenBuckets

if TYPE_CHECKING:
    from psycopg import Connection

    from sync.cloud.family_keys import Keyring

logger = logging.getLogger(__name__)

PRUNE_EVERY_S = 300.0
"""Seconds between two deletions of expired dead letters by one ingest process."""
TOTAL_RECOUNT_S = 1.0
"""Seconds between two counts of all dead letters (in between, this process adds its own)."""
EXACT_MARGIN = 1000
"""Within this many of the total cap, every dead letter counts all of them exactly, under
:data:`CAP_LOCK` (held to the end of its transaction)."""
CAP_LOCK = 0x7EDDDEAD
"""Advisory lock id serialising dead letters near the total cap."""


class DeadLetters:
    """Decides which dead letters are kept, and keeps them. One per ingest process."""

    def __init__(self, cloud: CloudSettings, keyring: Keyring | None = None) -> None:
        self.cloud = cloud
        """The ``[cloud]`` settings (caps, rate, bytes kept, retention)."""
        self.keyring = keyring
        """The cloud's keyring: while its key exists, payloads are not kept (metadata only)."""
        self._rate = TokenBuckets(cloud.dead_letters_per_device_per_s,
                                  max(cloud.dead_letters_per_device_per_s * 5, 1.0))
        self.dropped: dict[str, int] = {"rate": 0, "device_cap": 0, "total_cap": 0}
        """Dead letters not kept, by why."""
        self._total = 0
        self._counted_at = float("-inf")
        self._lock = threading.Lock()

    def admit(self, device_id: str | None) -> bool:
        """Whether a dead letter from ``device_id`` is within the per-device rate."""
        with self._lock:
            if self._rate.take(device_id) > 0:
                self.dropped["rate"] += 1
                return False
            return True

    def insert(self, conn: Connection, topic: str, device_id: str | None, payload: bytes,
               reason: str) -> bool:
        """Keep one dead letter unless a cap is reached; True if it was kept."""
        near = self._total >= self.cloud.dead_letters_total - EXACT_MARGIN
        if near:  # before the thread lock: the other lane may hold this until it commits
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (CAP_LOCK,))
        with self._lock:
            return self._insert(conn, topic, device_id, payload, reason, exact=near)

    def _insert(self, conn: Connection, topic: str, device_id: str | None, payload: bytes,
                reason: str, exact: bool) -> bool:
        cloud = self.cloud
        if self._total_reached(conn, exact):
            self.dropped["total_cap"] += 1
            return False
        same_device = "device_id IS NULL" if device_id is None else "device_id = %(device)s"
        kept = one_row(conn.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM dead_letters WHERE {same_device}"
            " LIMIT %(per_device)s) d",
            {"device": device_id, "per_device": cloud.dead_letters_per_device}))[0]
        if kept >= cloud.dead_letters_per_device:
            self.dropped["device_cap"] += 1
            return False
        conn.execute(
            "INSERT INTO dead_letters (topic, device_id, payload, payload_size, reason)"
            " VALUES (%s, %s, %s, %s, %s)",
            (topic, device_id, self.kept_part(payload), len(payload), reason[:1000]))
        self._total += 1
        return True

    def kept_part(self, payload: bytes) -> bytes:
        """What of ``payload`` is kept: nothing where a cloud key exists, else its first
        ``cloud.dead_letter_keep_bytes`` bytes."""
        if self.keyring is not None and self.keyring.ready():
            return b""
        return payload[:self.cloud.dead_letter_keep_bytes]

    def _total_reached(self, conn: Connection, exact: bool) -> bool:
        """Whether all dead letters reach ``cloud.dead_letters_total``: counted ``exact`` (under
        :data:`CAP_LOCK`) near the cap, else at most once a second with this process's own
        inserts added in between."""
        total = self.cloud.dead_letters_total
        now = time.monotonic()
        if exact or now - self._counted_at >= TOTAL_RECOUNT_S:
            self._total = one_row(conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM dead_letters LIMIT %s) t", (total,)))[0]
            self._counted_at = now
        return self._total >= total


def prune(conn: Connection, keep_days: float) -> int:
    """Delete dead letters older than ``keep_days``; returns how many."""
    deleted = conn.execute(
        "DELETE FROM dead_letters WHERE received_at < now() - make_interval(secs => %s)",
        (keep_days * 86400.0,)).rowcount
    if deleted:
        logger.info("deleted %d dead letters older than %g days", deleted, keep_days)
    return deleted
