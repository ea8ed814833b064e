"""The notifier: fans alert rows out to channels and delivers them, carefully.

One round (:meth:`Notifier.run_once`):

1. **fan out** — every alert event (a new ``alerts`` row: *raised*; a row that got its
   ``cleared_at``: *cleared*) is claimed once in ``notification_events`` and routed
   (:mod:`~sync.cloud.notify.routing`). Per channel it becomes a delivery that is
   ``pending``, or ``deduplicated`` (the same device, kind and event already went to that
   channel within ``notify.dedupe_window_s``), or ``rate_limited`` (the channel had
   ``rate_limit`` deliveries within its ``rate_window_s``);
2. **deliver** — due deliveries are leased (so parallel notifiers never send one twice),
   sent, and logged in ``notification_attempts``; a retryable failure waits a full-jitter
   exponential backoff, a permanent one (or the last attempt) is ``failed``.

PostgreSQL holds all state, so a restarted notifier carries on where it stopped.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from config.notify import NotifySettings
from sync.backoff import full_jitter
from sync.cloud import wellbeing
from sync.cloud.notify.channels import Sender, build_senders
from sync.cloud.notify.errors import DeliveryError
from sync.cloud.notify.mail import EmailSender
from sync.cloud.notify.message import Notification
from sync.cloud.notify.routing import route

logger = logging.getLogger(__name__)

NEW_EVENTS = """
SELECT a.id, ev.event, a.device_id, a.kind, a.severity, a.message, a.details,
       a.raised_at, a.cleared_at
FROM alerts a CROSS JOIN LATERAL (VALUES ('raised'), ('cleared')) AS ev(event)
WHERE (ev.event = 'raised' OR a.cleared_at IS NOT NULL)
  AND NOT EXISTS (SELECT 1 FROM notification_events e
                  WHERE e.alert_id = a.id AND e.event = ev.event)
ORDER BY a.id, ev.event DESC
LIMIT %s
"""
ALERT_ROWS = """
SELECT a.id, a.device_id, a.kind, a.severity, a.message,
       CASE WHEN a.category IS NULL THEN a.details
            ELSE a.details || jsonb_build_object('category', a.category) END,
       a.raised_at, a.cleared_at
FROM alerts a WHERE a.id = ANY(%s)
"""
"""The alerts of due deliveries (a v2 wellbeing alert's category joins its details)."""
LEASE_DUE = """
UPDATE notification_deliveries SET next_attempt_at = %(lease)s
WHERE id IN (
    SELECT d.id FROM notification_deliveries d
    WHERE d.status IN ('pending', 'retrying') AND d.next_attempt_at <= %(now)s
      AND NOT (d.event = 'cleared' AND EXISTS (
          SELECT 1 FROM notification_deliveries r
          WHERE r.alert_id = d.alert_id AND r.channel = d.channel AND r.event = 'raised'
            AND r.status IN ('pending', 'retrying')))
    ORDER BY d.next_attempt_at, d.id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING id, alert_id, event, channel, attempts
"""
"""Lease due deliveries; a clear waits until its raise has gone to the same channel."""
PARENTS = """
SELECT device_id, parent_email FROM consents
WHERE revoked_at IS NULL AND device_id = ANY(%s) ORDER BY device_id, id
"""
"""Addresses are sealed (sync/cloud/emails.py): opened and de-duplicated in Python."""
LIVE = "('pending', 'retrying', 'delivered')"
"""Statuses of deliveries that did or will reach the channel."""


def _utcnow(clock: Callable[[], float]) -> datetime:
    return datetime.fromtimestamp(clock(), UTC)


class Notifier:
    """Fans alerts out to channels and delivers them. One per process; several processes
    may run against one database."""

    def __init__(self, settings: NotifySettings, conn, senders: dict[str, Sender] | None = None,
                 rng: random.Random | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        """The ``notify`` section."""
        self.conn = conn
        """An autocommit psycopg connection (:func:`sync.cloud.db.connect`)."""
        self.senders = build_senders(settings) if senders is None else senders
        """Channel name -> sender."""
        self._rng = rng or random.Random()
        self._clock = clock
        self._families: bool | None = None

    def run(self, stop: threading.Event) -> None:
        """Run rounds every ``poll_interval_s`` until ``stop`` is set."""
        logger.info("notifying through %d channels", len(self.senders))
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:
                logger.exception("notification round failed; trying again next interval")
            stop.wait(self.settings.poll_interval_s)

    def run_once(self) -> Counter:
        """One fan-out, one delivery pass and the daily summaries due; returns counts by
        outcome."""
        counts = self.fan_out()
        counts.update(self.deliver_due())
        summaries = self.send_digests()
        if summaries:
            counts["summaries"] += summaries
        return counts

    # --- fan-out -------------------------------------------------------------------------

    def fan_out(self) -> Counter:
        """Claim and route a batch of new alert events (one transaction); returns counts by
        delivery status."""
        counts: Counter = Counter()
        admitted: dict[str, int] = {}
        with self.conn.transaction():
            # One fan-out at a time across notifiers: dedupe and rate counts stay exact.
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('notify:fan-out'))")
            rows = self.conn.execute(NEW_EVENTS, (self.settings.batch_size,)).fetchall()
            now = _utcnow(self._clock)
            for row in rows:
                note = _notification(row)
                claimed = self.conn.execute(
                    "INSERT INTO notification_events (alert_id, event) VALUES (%s, %s) "
                    "ON CONFLICT DO NOTHING RETURNING alert_id", (note.alert_id, note.event),
                ).fetchone()
                if claimed is not None:
                    counts.update(self._fan_out_one(note, now, admitted))
        return counts

    def _fan_out_one(self, note: Notification, now: datetime,
                     admitted: dict[str, int]) -> Counter:
        counts: Counter = Counter()
        cleared_at = note.cleared_at if note.event == "cleared" else None
        happened = cleared_at if cleared_at is not None else note.raised_at
        if (now - happened).total_seconds() > self.settings.skip_older_than_s:
            counts["stale"] += 1
            return counts
        family = self._family_choice(note)
        if family is not None and not family:
            counts["summary"] += 1  # the family hears of it in its daily summary (or the app)
            return counts
        channels = route(self.settings.channels, note, severity_floor=family is None)
        names = [n for n in channels if n in self.senders]
        for name in names:
            status = self._admission(name, note, now, admitted)
            self.conn.execute(
                "INSERT INTO notification_deliveries (alert_id, event, channel, dedupe_key, "
                "status, next_attempt_at, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (note.alert_id, note.event, name, note.dedupe_key, status,
                 now if status == "pending" else None, now))
            counts[status] += 1
            if status != "pending":
                logger.info("alert %s %s for channel %s: %s", note.alert_id, note.event, name,
                            status)
        self.conn.execute("UPDATE notification_events SET channels = %s WHERE alert_id = %s "
                          "AND event = %s", (len(names), note.alert_id, note.event))
        return counts

    def _family_choice(self, note: Notification) -> bool | None:
        """For a wellbeing alert of a family's bear: whether the family chose to be told at
        once (:func:`sync.cloud.wellbeing.immediate_sql`); None for any other alert."""
        if not note.wellbeing or note.event != "raised" or not self._has_families():
            return None
        row = self.conn.execute(
            f"SELECT {wellbeing.immediate_sql('a')}, EXISTS (SELECT 1 FROM family_pairings f"
            " WHERE f.pairing_id = a.pairing_id) FROM alerts a WHERE a.id = %s",
            (note.alert_id,)).fetchone()
        if row is None or not row[1]:
            return None
        return bool(row[0])

    def _has_families(self) -> bool:
        """Whether the parent app's tables (and the inbox's, migration 0018) exist."""
        if self._families is None:
            self._families = self.conn.execute(
                "SELECT to_regclass('family_alert_prefs') IS NOT NULL").fetchone()[0]
        return bool(self._families)

    # --- the daily summary ---------------------------------------------------------------

    def send_digests(self) -> int:
        """Each family's daily summary of the wellbeing alerts it did not get at once, once
        a day (``notify.digest_hour`` in ``notify.digest_timezone``), by the first parent
        e-mail channel that writes to the parent; returns how many went out."""
        sender = self._summary_sender()
        if sender is None or not self._has_families():
            return 0
        channel = sender.settings
        return wellbeing.send_digests(
            self.conn, sender.send_text, _utcnow(self._clock), self.settings.digest_hour,
            self.settings.digest_timezone, channel.app_url)

    def _summary_sender(self) -> EmailSender | None:
        for name, channel in self.settings.channels.items():
            sender = self.senders.get(name)
            if (isinstance(sender, EmailSender) and channel.audience == "parent"
                    and sender.settings.to_parent):
                return sender
        return None

    def _admission(self, name: str, note: Notification, now: datetime,
                   admitted: dict[str, int]) -> str:
        """``pending``, ``deduplicated`` or ``rate_limited`` for a new delivery to ``name``.

        ``admitted`` counts, per channel, the window's deliveries so far (read once per
        fan-out transaction, under the fan-out lock, then kept up to date).
        """
        if name not in admitted:
            since = now - timedelta(seconds=self.settings.channels[name].rate_window_s)
            admitted[name] = self.conn.execute(
                "SELECT count(*) FROM notification_deliveries WHERE channel = %s "
                "AND created_at > %s AND status IN ('pending', 'retrying', 'delivered', 'failed')",
                (name, since)).fetchone()[0]
        window = now - timedelta(seconds=self.settings.dedupe_window_s)
        duplicate = self.conn.execute(
            f"SELECT 1 FROM notification_deliveries WHERE channel = %s AND dedupe_key = %s "
            f"AND status IN {LIVE} AND created_at > %s LIMIT 1",
            (name, note.dedupe_key, window)).fetchone()
        if duplicate is not None:
            return "deduplicated"
        if admitted[name] >= self.settings.channels[name].rate_limit:
            return "rate_limited"
        admitted[name] += 1
        return "pending"

    # --- delivery ------------------------------------------------------------------------

    def deliver_due(self) -> Counter:
        """Attempt a batch of due deliveries once, ``notify.concurrency`` at a time; returns
        counts by attempt outcome."""
        settings = self.settings
        now = _utcnow(self._clock)
        rounds = -(-settings.batch_size // settings.concurrency)
        lease = now + timedelta(seconds=(rounds + 1) * 3 * settings.timeout_s + 30)
        with self.conn.transaction():
            due = sorted(self.conn.execute(LEASE_DUE, {
                "lease": lease, "now": now, "limit": settings.batch_size}).fetchall())
        if not due:
            return Counter()
        alerts = {row[0]: row for row in self.conn.execute(
            ALERT_ROWS, ([d[1] for d in due],)).fetchall()}
        parents = self._parents({row[1] for row in alerts.values()})
        families = (wellbeing.family_addresses(self.conn, sorted(alerts))
                    if self._has_families() else {})
        recipients = {alert_id: tuple(dict.fromkeys(
            parents.get(row[1], ()) + families.get(alert_id, ())))
            for alert_id, row in alerts.items()}
        jobs = [(d, alerts.get(d[1])) for d in due]
        with ThreadPoolExecutor(max_workers=settings.concurrency) as pool:
            results = list(pool.map(
                lambda job: self._send(job[0][3], job[0][2], job[1], recipients), jobs))
        outcomes: Counter = Counter()
        with self.conn.transaction():
            for (delivery_id, _, _, channel, attempts), (error, elapsed_ms) in zip(
                    due, results, strict=True):
                outcomes[self._record(delivery_id, attempts + 1, error, elapsed_ms,
                                      channel)] += 1
        return outcomes

    def _parents(self, device_ids: set[str]) -> dict[str, tuple[str, ...]]:
        """Device id -> e-mail addresses of parents with an active consent (fleet tables)."""
        if not device_ids or self.conn.execute(
                "SELECT to_regclass('consents')").fetchone()[0] is None:
            return {}
        from sync.cloud import emails

        found: dict[str, set[str]] = {}
        for device_id, kept in self.conn.execute(PARENTS, (sorted(device_ids),)).fetchall():
            found.setdefault(device_id, set()).add(emails.show(self.conn, kept))
        return {device_id: tuple(sorted(addresses - {"(sealed)"}))
                for device_id, addresses in found.items()}

    def _send(self, channel: str, event: str, row,
              recipients: dict[int, tuple[str, ...]]) -> tuple[DeliveryError | None, int]:
        """One attempt (in a worker thread, no database): ``(error or None, milliseconds)``."""
        sender = self.senders.get(channel)
        started = time.monotonic()
        error: DeliveryError | None = None
        if sender is None:
            error = DeliveryError(f"channel {channel} is no longer configured", retryable=False)
        elif row is not None:
            try:
                note = _notification((row[0], event, *row[1:]))
                sender.send(replace(note, parents=recipients.get(note.alert_id, ())))
            except DeliveryError as exc:
                error = exc
            except Exception as exc:  # a sender bug must not lose the delivery's state
                logger.exception("sender for %s failed unexpectedly", channel)
                error = DeliveryError(f"{type(exc).__name__}: {exc}", retryable=True)
        return error, int((time.monotonic() - started) * 1000)

    def _record(self, delivery_id: int, attempt: int, error: DeliveryError | None,
                elapsed_ms: int, channel: str) -> str:
        now = _utcnow(self._clock)
        retry = self.settings.retry
        wait = None
        if error is None:
            outcome, status = "delivered", "delivered"
        elif error.retryable and attempt < retry.max_attempts:
            outcome, status = "retry", "retrying"
            wait = full_jitter(attempt, retry.base_s, retry.cap_s, self._rng)
        else:
            outcome, status = "failed", "failed"
        message = None if error is None else str(error)
        self.conn.execute(
            "UPDATE notification_deliveries SET status = %s, attempts = %s, last_error = %s, "
            "next_attempt_at = %s, delivered_at = %s WHERE id = %s",
            (status, attempt, message, None if wait is None else now + timedelta(seconds=wait),
             now if error is None else None, delivery_id))
        self.conn.execute(
            "INSERT INTO notification_attempts (delivery_id, attempt, attempted_at, outcome, "
            "error, duration_ms, retry_in_s) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (delivery_id, attempt, now, outcome, message, elapsed_ms, wait))
        if error is not None:
            logger.warning("delivery %s to %s attempt %d: %s (%s)", delivery_id, channel,
                           attempt, error, outcome)
        return outcome


def _notification(row) -> Notification:
    alert_id, event, device_id, kind, severity, message, details, raised_at, cleared_at = row
    return Notification(alert_id=alert_id, event=event, device_id=device_id, kind=kind,
                        severity=severity, message=message, raised_at=raised_at,
                        cleared_at=cleared_at, details=details or {})
