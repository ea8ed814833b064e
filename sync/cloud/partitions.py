"""Monthly partitions of ``turns`` (migration 0010): made ahead, dropped whole past retention.

``turns`` is partitioned by the month (UTC) of each turn's ``created_at``; partitions are
named ``turns_pYYYYMM`` and a default partition ``turns_default`` takes whatever no month
partition holds, so an insert never fails. ``teddy-cloud portal retention`` (the daily
timer) calls :func:`make_ahead` and :func:`drop_expired` before the row-by-row sweep, which
still deletes a family's turns past that family's own (shorter) retention.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

logger = logging.getLogger(__name__)

MONTHS_AHEAD = 2
"""Month partitions kept ready after the current one (the job runs daily)."""
LOCK_TIMEOUT = "5s"
"""How long a DETACH may wait for ingest's transactions before giving up until the next run."""
NAME = re.compile(r"^turns_p(\d{4})(\d{2})$")


@dataclass(frozen=True)
class Partition:
    """One month partition of ``turns``."""

    name: str
    """``turns_pYYYYMM``."""
    start: datetime
    """First instant it holds (UTC)."""
    end: datetime
    """First instant after it (UTC)."""


def _month(year: int, month: int) -> datetime:
    return datetime(year + (month - 1) // 12, (month - 1) % 12 + 1, 1, tzinfo=UTC)


def months_from(first: date | datetime, count: int) -> list[date]:
    """``count`` first days of months, starting with the month of ``first``."""
    return [_month(first.year, first.month + i).date() for i in range(count)]


def partitions(conn: Any) -> list[Partition]:
    """The month partitions of ``turns``, oldest first (the default partition is not one)."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'turns'::regclass").fetchall()
    found = []
    for (name,) in rows:
        match = NAME.match(name)
        if match:
            year, month = int(match.group(1)), int(match.group(2))
            found.append(Partition(name, _month(year, month), _month(year, month + 1)))
    return sorted(found, key=lambda p: p.start)


def make_ahead(conn: Any, now: datetime | None = None, months: int = MONTHS_AHEAD) -> list[str]:
    """Make the partitions of this month and the next ``months`` if missing (rows of those
    months waiting in the default partition move in); returns the names made."""
    at = (now or datetime.now(UTC)).astimezone(UTC)
    made = []
    for first in months_from(at, months + 1):
        with conn.transaction():
            if conn.execute("SELECT teddy_turns_partition(%s)", (first,)).fetchone()[0]:
                made.append(f"turns_p{first:%Y%m}")
    if made:
        logger.info("made turns partitions %s", ", ".join(made))
    return made


def retention_cutoff(conn: Any, default_days: int, now: datetime | None = None) -> datetime:
    """The instant before which every turn is past retention: the longest of any family's
    retention and ``default_days`` (turns of no family), back from ``now``."""
    at = (now or datetime.now(UTC)).astimezone(UTC)
    longest = conn.execute("SELECT max(retention_days) FROM families").fetchone()[0]
    return at - timedelta(days=max(default_days, longest or 0))


def drop_expired(conn: Any, cutoff: datetime) -> list[str]:
    """DETACH and DROP every month partition that ends at or before ``cutoff`` (each in its
    own transaction, waiting at most :data:`LOCK_TIMEOUT` for its lock); returns their names.
    A partition whose lock could not be had is left for the next run."""
    import psycopg

    dropped = []
    for partition in partitions(conn):
        if partition.end > cutoff:
            break
        try:
            with conn.transaction():
                conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                conn.execute(f'ALTER TABLE turns DETACH PARTITION "{partition.name}"')
                conn.execute(f'DROP TABLE "{partition.name}"')
        except psycopg.errors.LockNotAvailable:
            logger.warning("turns partition %s is busy; it is dropped on the next run",
                           partition.name)
            continue
        dropped.append(partition.name)
        logger.info("dropped turns partition %s (ended %s, retention cutoff %s)",
                    partition.name, partition.end.isoformat(), cutoff.isoformat())
    return dropped
