"""Ingest: take bears' ``up/...`` messages from shared subscriptions into PostgreSQL.

Messages are received with manual acknowledgement: a message is PUBACKed to the broker,
and the bear's ``down/ack`` is published, only after the transaction holding its rows has
committed. A payload that fails validation is kept in ``dead_letters`` with the reason
(in the same transaction) and never stops ingest. Inserts are idempotent on
``(device_id, seq, created_at)`` (a resend carries the turn's own time), so resent batches
never duplicate.

No message can stop ingest: payloads are bounded in size and depth before parsing, every
field and time is range-checked (:mod:`sync.cloud.messages`), and any exception while
writing one message dead-letters that message (:mod:`sync.cloud.writer`). Dead letters are
rate-limited, capped and expire (:mod:`sync.cloud.dead_letters`). Each bear is rate-limited
(turns and bytes a second): what is over is refused with a ``down/receipt`` naming it and a
``retry_after``, not acked, so the bear sends it again later and others are not starved.

Fairness: wellbeing and other alerts have their own lane — a second MQTT connection
(client id ``<ingest's>-alerts``; for a service account, the companion account
``<name>-alerts`` that provisioning makes beside it) with its own queue at the broker and its
own thread and database connection, so a bear's permitted burst of turns queued on the main
connection never stands in front of another bear's alert. On the main lane, messages are
taken from per-bear queues in turn (:class:`FairInbox`), one bear's backlog never ahead of
another's next message, and a transaction holds at most ``cloud.max_bytes_per_transaction``
of payload, so the transaction in progress when another bear's turns arrive is short
(``tests/test_ingest_fairness.py``: its ack within 1 s under a permitted flood).

At start, ingest waits for a broker that is not up yet (retrying with backoff, a WARNING
per attempt) and tells systemd READY only once its subscriptions are confirmed.

PostgreSQL failures (a restart, a terminated backend) roll the transaction back; the batch
is retried on a fresh connection from the pool, and nothing about it was acked meanwhile.
On :meth:`Ingestor.stop` the ingestor unsubscribes, commits what it already holds (for up
to ``SHUTDOWN_GRACE`` seconds) and abandons the rest unacknowledged: the broker or the
bear's resend delivers those again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, cast

from config.settings import MqttSettings, Settings
from sync.backoff import Backoff
from sync.client import Inbound, MqttLink, Subscription, service_client_id
from sync.cloud import db, dead_letters, family_keys, writer
from sync.cloud.broker_accounts import INGEST_LANE_SUFFIX
from sync.cloud.messages import KINDS, Parsed, Received, TimeWindow, parse
from sync.cloud.metrics import IngestMetrics
from sync.cloud.ratelimit import TokenBuckets
from sync.protocol import Message, Receipt, parse_device_topic, receipt_id, shared_subscription
from sync.protocol.receipts import ReceiptKind

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE = 5.0
"""Seconds :meth:`Ingestor.run` spends committing what it holds after :meth:`stop`."""
ALERT_LANE = "alerts"
"""The ``up/`` kind that has a lane (connection, queue, thread) of its own."""
LANE_SUFFIX = INGEST_LANE_SUFFIX
"""Added to ingest's client id (and a service account's name) for the alert lane."""
LANE_WAIT_S = 10.0
"""Seconds the alert lane may take to log in and subscribe after the main one; past them
alerts go on the main connection (and an ERROR says which account to provision)."""


class FairInbox:
    """Received messages in one queue per bear, taken in turn (round robin): a bear with a
    thousand messages waiting gets one taken, then the next bear gets one. Thread-safe."""

    def __init__(self) -> None:
        self._queues: OrderedDict[str, deque[Received]] = OrderedDict()
        self._ready = threading.Condition()
        self._size = 0

    def put(self, message: Received) -> None:
        """Queue ``message`` behind its bear's earlier ones."""
        bear = _bear_of(message.topic)
        with self._ready:
            self._queues.setdefault(bear, deque()).append(message)
            self._size += 1
            self._ready.notify()

    def qsize(self) -> int:
        """Messages waiting."""
        return self._size

    def take(self, most: int, timeout: float, most_bytes: int | None = None
             ) -> list[Received]:
        """Up to ``most`` messages (and ``most_bytes`` of payload, at least one message), one
        per bear per round; waits up to ``timeout`` for the first. Empty if none came. Once
        the batch holds two bears' messages and only one bear still waits, it ends: that
        bear's backlog goes in the next transaction, the others' messages commit now."""
        with self._ready:
            if not self._size and not self._ready.wait_for(lambda: self._size > 0, timeout):
                return []
            taken: list[Received] = []
            size = 0
            bears: set[str] = set()
            while self._queues and len(taken) < most:
                if len(self._queues) == 1 and len(bears) > 1:
                    break
                bear, waiting = next(iter(self._queues.items()))
                size += len(waiting[0].payload)
                if taken and most_bytes is not None and size > most_bytes:
                    break  # the rest waits: one bear's burst never makes a long transaction
                taken.append(waiting.popleft())
                bears.add(bear)
                if waiting:
                    self._queues.move_to_end(bear)
                else:
                    del self._queues[bear]
            self._size -= len(taken)
            return taken


def _bear_of(topic: str) -> str:
    try:
        return parse_device_topic(topic).device_id
    except Exception:  # noqa: BLE001 - a bad topic queues with the others like it
        return ""


@dataclass
class Lane:
    """One connection's worth of ingest: its MQTT link, subscriptions and inbox."""

    name: str
    """``main`` or ``alerts``."""
    link: MqttLink
    """Its own connection (own queue at the broker)."""
    subscriptions: list[Subscription] = field(default_factory=list)
    """What it takes."""
    inbox: FairInbox = field(default_factory=FairInbox)
    """Received, not yet committed."""

    def receive(self, message: Inbound) -> None:
        """The subscriptions' handler (paho's network thread): queue it."""
        self.inbox.put(Received(message.topic, message.payload, message.mid, message.qos,
                                time.monotonic()))


@dataclass
class IngestCounters:
    """What this ingest process has done since it started."""

    messages: int = 0
    """Messages committed (valid or dead-lettered)."""
    turns_inserted: int = 0
    """Turn rows that were new."""
    duplicates: int = 0
    """Turn rows already present (resends)."""
    dead_letters: int = 0
    """Messages dead-lettered."""
    acks_sent: int = 0
    """``down/ack`` messages published."""
    db_retries: int = 0
    """Transactions retried after a PostgreSQL failure."""
    refused: int = 0
    """Messages refused because their bear was over its rate."""
    unheld: int = 0
    """Turn batches refused for good: their bear is held by no family (told to drop them)."""


class Ingestor:
    """One ingest process: MQTT in, PostgreSQL, acks out. A context manager."""

    def __init__(self, settings: Settings, keyring: family_keys.Keyring | None = None) -> None:
        self._settings = settings
        self._keyring = keyring
        """Family keys to seal turns with (``teddy-cloud ingest`` passes the process's; None:
        a development set-up, text stored as sent)."""
        client_id = (settings.cloud.client_id or service_client_id(settings.mqtt)
                     or f"ingest-{socket.gethostname()}-{os.getpid()}")
        group = settings.cloud.share_group
        kinds = list(KINDS.values())
        split = settings.cloud.alert_lane and any(m.route().name == ALERT_LANE for m in kinds)
        self._main = self._lane("main", settings.mqtt, client_id, group, [
            m for m in kinds if not split or m.route().name != ALERT_LANE])
        self._lanes = [self._main]
        if split:
            self._lanes.append(self._lane(ALERT_LANE, _lane_account(settings.mqtt),
                                          client_id + LANE_SUFFIX, group,
                                          [m for m in kinds if m.route().name == ALERT_LANE]))
        self._link = self._main.link
        self._shared = threading.Lock()  # rate buckets, counters: both lanes use them
        self._stop = threading.Event()
        self._stopped_at = float("inf")
        self._pool: Any = None
        cloud = settings.cloud
        self._turn_rate = TokenBuckets(cloud.bear_turns_per_s, cloud.bear_turns_burst)
        self._byte_rate = TokenBuckets(cloud.bear_bytes_per_s, cloud.bear_bytes_burst)
        self.dead_letters = dead_letters.DeadLetters(cloud, self._keyring)
        """What decides which dead letters are kept (caps, rate)."""
        self._pruned_at = float("-inf")
        self.counters = IngestCounters()
        """Running totals, for logs and tests."""
        self.metrics = IngestMetrics()
        """Prometheus metrics (served when ``cloud.metrics_port`` is set)."""

    def _lane(self, name: str, mqtt: MqttSettings, client_id: str, group: str,
              kinds: list[type[Message]]) -> Lane:
        link = MqttLink(mqtt, client_id=client_id, manual_ack=True,
                        backoff=Backoff(0.2, 5.0), retry_log_level=logging.WARNING)
        lane = Lane(name, link)
        lane.subscriptions = [link.subscribe_to(model, lane.receive, share_group=group)
                              for model in kinds]
        return lane

    def __enter__(self) -> Ingestor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop taking messages and disconnect. Idempotent. Uncommitted messages are not
        PUBACKed, so the broker (or the bear's resend) delivers them again."""
        self.stop()
        for lane in self._lanes:
            lane.link.close()
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self.metrics.close()

    def stop(self) -> None:
        """Ask :meth:`run` to commit what it holds and return."""
        if not self._stop.is_set():
            self._stopped_at = time.monotonic()
        self._stop.set()

    @property
    def subscribed(self) -> bool:
        """Whether the broker has answered every subscription of ingest (a refused one is
        logged as an ERROR; ingest takes what was granted and the operator fixes the rest)."""
        return all(s.answered for lane in self._lanes for s in lane.subscriptions)

    def run(self) -> None:
        """Connect (waiting for the broker as long as it takes) and ingest until :meth:`stop`
        (or SIGTERM through the CLI)."""
        from sync.systemd_notify import SystemdNotifier

        cloud = self._settings.cloud
        self._pool = db.open_pool(cloud, prepare=writer.prepare_connection)
        if cloud.metrics_port is not None:
            self.metrics.serve(cloud.metrics_port, cloud.metrics_host)
        for lane in self._lanes:
            lane.link.start()
        if not self._wait_subscribed():
            self._finish()
            return
        SystemdNotifier.from_environment().ready(f"ingesting {cloud.share_group}")
        logger.info("ingesting %s", shared_subscription(cloud.share_group, "+"))
        side = [threading.Thread(target=self._run_lane, args=(lane,), daemon=True,
                                 name=f"teddy-ingest-{lane.name}") for lane in self._lanes[1:]]
        for thread in side:
            thread.start()
        while not self._stop.is_set():
            batch = self._next_messages(self._main, timeout=0.2)
            if batch:
                self._commit_safely(self._main, batch)
            self._prune_due()
        for thread in side:
            thread.join(SHUTDOWN_GRACE + 10)
        self._finish()

    def _run_lane(self, lane: Lane) -> None:
        """A side lane (alerts): take and commit its messages until :meth:`stop`."""
        while not self._stop.is_set():
            batch = self._next_messages(lane, timeout=0.2)
            if batch:
                self._commit_safely(lane, batch)

    def _wait_subscribed(self) -> bool:
        """Wait until the broker confirmed our subscriptions; False if stopped first."""
        waited = 0.0
        while not self._stop.is_set():
            if self._main.link.wait_subscribed(1.0):
                return self._settle_side_lanes()
            waited += 1.0
            if waited % 30 == 0:
                logger.warning("still waiting for the MQTT broker at %s:%s (%.0f s) — is it "
                               "running, and may this account subscribe?",
                               self._settings.mqtt.host, self._settings.mqtt.port, waited)
        return False

    def _settle_side_lanes(self) -> bool:
        """Wait for the alert lane; one that cannot log in (an account provisioned before it
        existed) is closed and its kinds are taken on the main connection instead."""
        for lane in list(self._lanes[1:]):
            if lane.link.wait_subscribed(LANE_WAIT_S):
                continue
            logger.error("the %s lane could not log in or subscribe as %s within %g s: %s are "
                         "taken on the main connection, behind other bears' turns — provision "
                         "it again (teddy-cloud provision service) to give it its own",
                         lane.name, lane.link.settings.username, LANE_WAIT_S, lane.name)
            lane.link.close()
            self._lanes.remove(lane)
            group = self._settings.cloud.share_group
            self._main.subscriptions += [
                self._main.link.subscribe_to(model, self._main.receive, share_group=group)
                for model in KINDS.values() if model.route().name == lane.name]
        return self._main.link.wait_subscribed(LANE_WAIT_S) or not self._stop.is_set()

    def _commit_safely(self, lane: Lane, batch: list[Received]) -> None:
        """Commit a batch; if anything unexpected escapes, commit its messages one by one
        (each one that still fails is dead-lettered), so ingest never stops."""
        try:
            self._commit_with_retry(lane, batch, give_up_at=None)
        except Exception:  # noqa: BLE001 - the last line of defence of the loop
            logger.exception("a batch of %d messages failed; committing one by one", len(batch))
            for message in batch:
                try:
                    self._commit_with_retry(lane, [message], give_up_at=None)
                except Exception as exc:  # noqa: BLE001
                    self._last_resort(lane, message, exc)

    def _last_resort(self, lane: Lane, message: Received, exc: Exception) -> None:
        logger.error("message on %s could not be handled (%s); dead-lettering it",
                     message.topic, type(exc).__name__)
        try:
            with self._pool.connection(timeout=5.0) as conn, conn.transaction():
                self.dead_letters.insert(conn, message.topic, None, message.payload,
                                         f"unhandled {type(exc).__name__}")
        except Exception:  # noqa: BLE001
            logger.exception("could not dead-letter the message on %s", message.topic)
        lane.link.ack(message.mid, message.qos)
        self.counters.dead_letters += 1
        self.metrics.dead_letters.inc()

    def _prune_due(self) -> None:
        now = time.monotonic()
        if now - self._pruned_at < dead_letters.PRUNE_EVERY_S:
            return
        self._pruned_at = now
        try:
            with self._pool.connection(timeout=5.0) as conn, conn.transaction():
                pruned = dead_letters.prune(conn, self._settings.cloud.dead_letter_keep_days)
            self.metrics.dead_letters_pruned.inc(pruned)
        except Exception as exc:  # noqa: BLE001 - pruning waits for the next round
            logger.warning("deleting expired dead letters failed: %s", exc)

    def _finish(self) -> None:
        """Graceful shutdown: no new messages; commit what we hold, within the grace."""
        for lane in self._lanes:
            for subscription in lane.subscriptions:
                lane.link.unsubscribe(subscription)
        give_up_at = time.monotonic() + SHUTDOWN_GRACE
        for lane in self._lanes:
            while time.monotonic() < give_up_at:
                batch = self._next_messages(lane, timeout=0.1)
                if not batch:
                    break
                if not self._commit_with_retry(lane, batch, give_up_at=give_up_at):
                    break
        left = sum(lane.inbox.qsize() for lane in self._lanes)
        if left:
            logger.warning("shutting down with %d uncommitted messages; they stay unacked and "
                           "come back by the bears' resend", left)
        logger.info("ingest stopped: %s", self.counters)

    def _next_messages(self, lane: Lane, timeout: float) -> list[Received]:
        cloud = self._settings.cloud
        batch = lane.inbox.take(cloud.max_messages_per_transaction, timeout,
                                cloud.max_bytes_per_transaction)
        if lane is self._main:
            self.metrics.inbox.set(lane.inbox.qsize())
        return batch

    def _commit_with_retry(self, lane: Lane, batch: list[Received],
                           give_up_at: float | None) -> bool:
        """Commit a batch, retrying on PostgreSQL failures; returns whether it committed.

        Nothing was PUBACKed or acked for an uncommitted batch, so retrying is safe; a
        batch abandoned at shutdown is simply delivered again later."""
        import psycopg
        from psycopg_pool import PoolTimeout

        cloud = self._settings.cloud
        window = TimeWindow.around(time.time(), cloud.max_clock_ahead_s,
                                   cloud.max_message_age_days)
        items = [parse(message, window) for message in batch]
        with self._shared:
            items, refusals = self._within_rates(items)
        delay = Backoff(0.1, 5.0)
        while True:
            started = time.monotonic()
            try:
                with self._pool.connection(timeout=5.0) as conn:
                    outcome = writer.write(conn, items, self.dead_letters, self._keyring)
            except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
                self.counters.db_retries += 1
                self.metrics.db_retries.inc()
                logger.warning("PostgreSQL failed mid-batch (%s); retrying",
                               writer._first_line(exc))
                if self._wait(delay.next_delay(), give_up_at):
                    return False
                continue
            outcome.acks.extend(refusals)
            self._after_commit(lane, batch, items, outcome, started)
            return True

    def _within_rates(self, items: list[Parsed]) -> tuple[list[Parsed], list[tuple[str, Receipt]]]:
        """Split off messages of bears over their rate: they are refused, not written."""
        kept: list[Parsed] = []
        refusals: list[tuple[str, Receipt]] = []
        for item in items:
            wait = self._over_rate(item)
            if wait <= 0:
                kept.append(item)
                continue
            rid = item.body.batch_id if item.kind == "turns" else receipt_id(item.kind, item.body)
            self.counters.refused += 1
            self.metrics.refused.labels(kind=item.kind).inc()
            if rid is not None:
                reason = (f"over this bear's rate ({self._settings.cloud.bear_turns_per_s:g} "
                          f"turns/s, {self._settings.cloud.bear_bytes_per_s:g} bytes/s)")
                kind = cast(ReceiptKind, item.kind)  # turns, or one that receipt_id named
                refusals.append((item.bear,
                                 Receipt(kind=kind, ids=[rid], refused=reason,
                                         retry_after=round(min(max(wait, 0.5), 3600.0), 3))))
        return kept, refusals

    def _over_rate(self, item: Parsed) -> float:
        """Seconds until ``item``'s bear may send it; 0.0 if it may now."""
        if item.kind in ("invalid", "status") or item.body is None:
            return 0.0
        size = len(item.message.payload)
        wait = self._byte_rate.take(item.device_id, size)
        if wait > 0 or item.kind != "turns":
            return wait
        wait = self._turn_rate.take(item.device_id, len(item.body.turns))
        if wait > 0:  # give the bytes back: the message is not taken
            self._byte_rate.take(item.device_id, -size)
        return wait

    def _deadline(self, give_up_at: float | None) -> float | None:
        if give_up_at is not None:
            return give_up_at
        if self._stop.is_set():
            return self._stopped_at + SHUTDOWN_GRACE
        return None  # running: never abandon a batch

    def _wait(self, delay: float, give_up_at: float | None) -> bool:
        """Sleep before a retry; True if shutdown says to abandon the batch instead."""
        deadline = self._deadline(give_up_at)
        if deadline is None:
            self._stop.wait(delay)
            return False
        time.sleep(min(delay, max(deadline - time.monotonic(), 0.0)))
        return time.monotonic() >= deadline

    def _after_commit(self, lane: Lane, batch: list[Received], items: list[Parsed],
                      outcome: writer.WriteOutcome, started: float) -> None:
        # Committed: only now may the bears forget their rows and the broker the messages.
        for device_id, ack in outcome.acks:
            lane.link.publish(ack, device_id)
        for message in batch:
            lane.link.ack(message.mid, message.qos)
        with self._shared:
            self._count(items, outcome, started)

    def _count(self, items: list[Parsed], outcome: writer.WriteOutcome, started: float) -> None:
        counters, metrics = self.counters, self.metrics
        counters.messages += len(items)
        counters.turns_inserted += outcome.inserted
        counters.duplicates += outcome.duplicates
        counters.dead_letters += outcome.dead_letters
        counters.acks_sent += len(outcome.acks)
        counters.unheld += outcome.unheld
        if outcome.unheld:
            metrics.unheld.inc(outcome.unheld)
        for reason, count in self.dead_letters.dropped.items():
            if count:
                metrics.dead_letters_dropped.labels(reason=reason).inc(count)
                self.dead_letters.dropped[reason] = 0
        for item in items:
            metrics.messages.labels(kind=item.kind).inc()
        metrics.rows.inc(outcome.inserted)
        metrics.duplicates.inc(outcome.duplicates)
        metrics.dead_letters.inc(outcome.dead_letters)
        metrics.batch_seconds.observe(time.monotonic() - started)
        if outcome.oldest_turn_at is not None:
            metrics.lag.set(max(time.time() - outcome.oldest_turn_at, 0.0))


def _lane_account(mqtt: MqttSettings) -> MqttSettings:
    """The alert lane's broker login: a service account's companion ``<name>-alerts`` (made by
    provisioning beside it, same password, bound to its own client id); otherwise the same."""
    if service_client_id(mqtt) is None or mqtt.username is None:
        return mqtt
    return mqtt.model_copy(update={"username": mqtt.username + LANE_SUFFIX})
