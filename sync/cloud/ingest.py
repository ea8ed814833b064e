"""Ingest: take bears' ``up/...`` messages from shared subscriptions into PostgreSQL.

Messages are received with manual acknowledgement: a message is PUBACKed to the broker,
and the bear's ``down/ack`` is published, only after the transaction holding its rows has
committed. A payload that fails validation is kept in ``dead_letters`` with the reason
(in the same transaction) and never stops ingest. Inserts are idempotent on
``(device_id, seq)``, so resent batches never duplicate.

PostgreSQL failures (a restart, a terminated backend) roll the transaction back; the batch
is retried on a fresh connection from the pool, and nothing about it was acked meanwhile.
On :meth:`Ingestor.stop` the ingestor unsubscribes, commits what it already holds (for up
to ``SHUTDOWN_GRACE`` seconds) and abandons the rest unacknowledged: the broker or the
bear's resend delivers those again.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from config.settings import Settings
from sync.backoff import Backoff
from sync.client import MqttLink, service_client_id
from sync.cloud import db, writer
from sync.cloud.messages import KINDS, Parsed, Received, parse
from sync.cloud.metrics import IngestMetrics
from sync.protocol import shared_subscription

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE = 5.0
"""Seconds :meth:`Ingestor.run` spends committing what it holds after :meth:`stop`."""
QOS = {"turns": 1, "status": 1, "health": 0, "alerts": 1, "cmd-result": 1, "config": 1}
"""Subscription QoS per ``up/<name>``."""


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


class Ingestor:
    """One ingest process: MQTT in, PostgreSQL, acks out. A context manager."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        client_id = (settings.cloud.client_id or service_client_id(settings.mqtt)
                     or f"ingest-{socket.gethostname()}-{os.getpid()}")
        self._link = MqttLink(settings.mqtt, client_id=client_id, manual_ack=True,
                              backoff=Backoff(0.2, 5.0))
        self._link.on("message", self._on_message)
        self._link.on("subscribe", self._on_subscribe)
        self._subscribed = threading.Event()
        self._subscribe_mid: int | None = None
        self._link.after_connect(self._subscribe)
        self._inbox: queue.Queue[Received] = queue.Queue()
        self._stop = threading.Event()
        self._stopped_at = float("inf")
        self._pool: Any = None
        self.counters = IngestCounters()
        """Running totals, for logs and tests."""
        self.metrics = IngestMetrics()
        """Prometheus metrics (served when ``cloud.metrics_port`` is set)."""

    def __enter__(self) -> Ingestor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop taking messages and disconnect. Idempotent. Uncommitted messages are not
        PUBACKed, so the broker (or the bear's resend) delivers them again."""
        self.stop()
        self._link.close()
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self.metrics.close()

    def stop(self) -> None:
        """Ask :meth:`run` to commit what it holds and return."""
        if not self._stop.is_set():
            self._stopped_at = time.monotonic()
        self._stop.set()

    def _topics(self) -> list[tuple[str, int]]:
        group = self._settings.cloud.share_group
        return [(shared_subscription(group, name), QOS[name]) for name in KINDS]

    def _subscribe(self) -> None:
        self._subscribed.clear()
        _, self._subscribe_mid = self._link.client.subscribe(self._topics())

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            logger.error("the broker refused ingest's subscriptions: %s — check the ingest "
                         "account's ACL", ", ".join(refused))
            return
        self._subscribed.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self._inbox.put(Received(message.topic, bytes(message.payload), message.mid,
                                 message.qos, time.monotonic()))

    def run(self) -> None:
        """Connect and ingest until :meth:`stop` (or SIGTERM through the CLI)."""
        cloud = self._settings.cloud
        self._pool = db.open_pool(cloud, prepare=writer.prepare_connection)
        if cloud.metrics_port is not None:
            self.metrics.serve(cloud.metrics_port, cloud.metrics_host)
        self._link.connect()
        if not self._subscribed.wait(self._settings.mqtt.connect_timeout):
            logger.warning("subscriptions not confirmed within %.0f s; ingesting anyway",
                           self._settings.mqtt.connect_timeout)
        logger.info("ingesting %s", shared_subscription(cloud.share_group, "+"))
        while not self._stop.is_set():
            batch = self._next_messages(timeout=0.2)
            if batch:
                self._commit_with_retry(batch, give_up_at=None)
        self._finish()

    def _finish(self) -> None:
        """Graceful shutdown: no new messages; commit what we hold, within the grace."""
        if self._link.connected:
            for topic, _qos in self._topics():
                self._link.client.unsubscribe(topic)
        give_up_at = time.monotonic() + SHUTDOWN_GRACE
        while time.monotonic() < give_up_at:
            batch = self._next_messages(timeout=0.1)
            if not batch:
                break
            if not self._commit_with_retry(batch, give_up_at=give_up_at):
                break
        left = self._inbox.qsize()
        if left:
            logger.warning("shutting down with %d uncommitted messages; they stay unacked and "
                           "come back by the bears' resend", left)
        logger.info("ingest stopped: %s", self.counters)

    def _next_messages(self, timeout: float) -> list[Received]:
        try:
            first = self._inbox.get(timeout=timeout)
        except queue.Empty:
            return []
        batch = [first]
        most = self._settings.cloud.max_messages_per_transaction
        while len(batch) < most:
            try:
                batch.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        self.metrics.inbox.set(self._inbox.qsize())
        return batch

    def _commit_with_retry(self, batch: list[Received], give_up_at: float | None) -> bool:
        """Commit a batch, retrying on PostgreSQL failures; returns whether it committed.

        Nothing was PUBACKed or acked for an uncommitted batch, so retrying is safe; a
        batch abandoned at shutdown is simply delivered again later."""
        import psycopg
        from psycopg_pool import PoolTimeout

        items = [parse(message) for message in batch]
        delay = Backoff(0.1, 5.0)
        while True:
            started = time.monotonic()
            try:
                with self._pool.connection(timeout=5.0) as conn:
                    outcome = writer.write(conn, items)
            except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
                self.counters.db_retries += 1
                self.metrics.db_retries.inc()
                logger.warning("PostgreSQL failed mid-batch (%s); retrying",
                               writer._first_line(exc))
                if self._wait(delay.next_delay(), give_up_at):
                    return False
                continue
            self._after_commit(batch, items, outcome, started)
            return True

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

    def _after_commit(self, batch: list[Received], items: list[Parsed],
                      outcome: writer.Outcome, started: float) -> None:
        # Committed: only now may the bears forget their rows and the broker the messages.
        client = self._link.client
        for topic, ack in outcome.acks:
            client.publish(topic, ack.to_payload(), qos=1)
        for message in batch:
            if message.qos > 0:
                client.ack(message.mid, message.qos)
        self._count(items, outcome, started)

    def _count(self, items: list[Parsed], outcome: writer.Outcome, started: float) -> None:
        counters, metrics = self.counters, self.metrics
        counters.messages += len(items)
        counters.turns_inserted += outcome.inserted
        counters.duplicates += outcome.duplicates
        counters.dead_letters += outcome.dead_letters
        counters.acks_sent += len(outcome.acks)
        for item in items:
            metrics.messages.labels(kind=item.kind).inc()
        metrics.rows.inc(outcome.inserted)
        metrics.duplicates.inc(outcome.duplicates)
        metrics.dead_letters.inc(outcome.dead_letters)
        metrics.batch_seconds.observe(time.monotonic() - started)
        if outcome.oldest_turn_at is not None:
            metrics.lag.set(max(time.time() - outcome.oldest_turn_at, 0.0))
