"""Ingest: take bears' ``up/turns`` from a shared subscription into PostgreSQL.

Messages are received with manual acknowledgement: a message is PUBACKed to the broker,
and the bear's ``down/ack`` is published, only after the transaction holding its rows has
committed. A payload that fails validation is kept in ``dead_letters`` with the reason
(in the same transaction) and never stops ingest. Inserts are idempotent on
``(device_id, seq)``, so resent batches never duplicate.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
from dataclasses import dataclass
from typing import Any

from config.errors import ProtocolError
from config.settings import Settings
from sync.client import MqttLink
from sync.cloud import db
from sync.protocol import (
    Ack,
    Status,
    TurnsBatch,
    down_topic,
    parse_device_topic,
    shared_subscription,
    to_ranges,
)

logger = logging.getLogger(__name__)

MAX_MESSAGES_PER_TRANSACTION = 200
"""Most MQTT messages committed together."""
DEAD_LETTER_KEEP_BYTES = 64 * 1024
"""Bytes of an invalid payload kept in ``dead_letters`` (the size is kept in full)."""


@dataclass(frozen=True)
class Received:
    """An MQTT message waiting to be committed."""

    topic: str
    payload: bytes
    mid: int
    qos: int


@dataclass
class IngestCounters:
    """What this ingest process has done since it started."""

    messages: int = 0
    turns_inserted: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    acks_sent: int = 0


class Ingestor:
    """One ingest process: MQTT in, PostgreSQL, acks out. A context manager."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        client_id = settings.cloud.client_id or f"ingest-{socket.gethostname()}-{os.getpid()}"
        self._link = MqttLink(settings.mqtt, client_id=client_id, manual_ack=True)
        self._link.on("message", self._on_message)
        self._link.after_connect(self._subscribe)
        self._inbox: queue.Queue[Received] = queue.Queue()
        self._stop = threading.Event()
        self.counters = IngestCounters()
        """Running totals, for logs and tests."""

    def __enter__(self) -> Ingestor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop taking messages and disconnect. Idempotent. Uncommitted messages are not
        PUBACKed, so the broker (or the bear's resend) delivers them again."""
        self._stop.set()
        self._link.close()

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current transaction."""
        self._stop.set()

    def _subscribe(self) -> None:
        group = self._settings.cloud.share_group
        for name in ("turns", "status"):
            self._link.client.subscribe(shared_subscription(group, name), qos=1)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self._inbox.put(Received(message.topic, bytes(message.payload), message.mid, message.qos))

    def run(self) -> None:
        """Connect and ingest until :meth:`stop` (or SIGTERM through the CLI)."""
        conn = db.connect(self._settings.cloud)
        try:
            self._link.connect()
            logger.info("ingesting %s", shared_subscription(self._settings.cloud.share_group, "+"))
            while not self._stop.is_set():
                batch = self._next_messages()
                if batch:
                    conn = self._commit_with_retry(conn, batch)
        finally:
            conn.close()

    def _commit_with_retry(self, conn: Any, batch: list[Received]) -> Any:
        """Commit a batch; if the database connection broke, reconnect and try again.

        Nothing was PUBACKed or acked for an uncommitted batch, so retrying is safe."""
        import psycopg

        delay = 0.5
        while not self._stop.is_set():
            try:
                self._commit(conn, batch)
                return conn
            except psycopg.OperationalError as exc:
                logger.warning("PostgreSQL failed mid-batch (%s); retrying in %.1f s",
                               str(exc).strip().splitlines()[0] if str(exc).strip() else exc, delay)
                conn.close()
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
                try:
                    conn = db.connect(self._settings.cloud)
                except Exception:
                    logger.warning("PostgreSQL still unreachable")
        return conn

    def _next_messages(self) -> list[Received]:
        try:
            first = self._inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        while len(batch) < MAX_MESSAGES_PER_TRANSACTION:
            try:
                batch.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def _commit(self, conn: Any, messages: list[Received]) -> None:
        acks: list[tuple[str, Ack]] = []
        with conn.transaction():
            for message in messages:
                ack = self._store_message(conn, message)
                if ack is not None:
                    acks.append(ack)
        # Committed: only now may the broker forget the messages and the bears their rows.
        for topic, ack in acks:
            self._link.client.publish(topic, ack.to_payload(), qos=1)
            self.counters.acks_sent += 1
        for message in messages:
            if message.qos > 0:
                self._link.client.ack(message.mid, message.qos)
        self.counters.messages += len(messages)

    def _store_message(self, conn: Any, message: Received) -> tuple[str, Ack] | None:
        import psycopg

        try:
            with conn.transaction():  # a savepoint: a bad message cannot spoil the others
                return self._dispatch(conn, message)
        except ProtocolError as exc:
            reason = str(exc)
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            reason = f"rejected by PostgreSQL: {str(exc).strip().splitlines()[0]}"
        self._dead_letter(conn, message, reason)
        return None

    def _dispatch(self, conn: Any, message: Received) -> tuple[str, Ack] | None:
        topic = parse_device_topic(message.topic)
        if topic.name == "turns":
            return self._store_turns(conn, topic.device_id, message)
        if topic.name == "status":
            self._store_status(conn, topic.device_id, message)
            return None
        raise ProtocolError(f"no handler for topic kind {topic.name!r}")

    def _store_turns(self, conn: Any, device_id: str, message: Received) -> tuple[str, Ack]:
        batch = TurnsBatch.from_payload(message.payload)
        if batch.device_id != device_id:
            raise ProtocolError(
                f"turns batch names device {batch.device_id!r} but arrived on {device_id!r}'s topic"
            )
        _touch_device(conn, device_id)
        rows = [
            (device_id, t.seq, t.conversation_id, t.role, t.text, t.created_at, t.action,
             t.categories, batch.batch_id)
            for t in batch.turns
        ]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO turns (device_id, seq, conversation_id, role, text, created_at,"
                " action, categories, batch_id) VALUES (%s, %s, %s, %s, %s, to_timestamp(%s),"
                " %s, %s, %s) ON CONFLICT (device_id, seq) DO NOTHING",
                rows,
            )
            inserted = cur.rowcount
        self.counters.turns_inserted += inserted
        self.counters.duplicates += len(rows) - inserted
        ranges = to_ranges(t.seq for t in batch.turns)
        return down_topic(device_id, "ack"), Ack(batch_id=batch.batch_id, ranges=ranges)

    def _store_status(self, conn: Any, device_id: str, message: Received) -> None:
        if not message.payload:
            return  # a cleared retained status
        status = Status.from_payload(message.payload)
        _touch_device(conn, device_id)
        conn.execute(
            "UPDATE devices SET online = %s, firmware = %s,"
            " boot_time = COALESCE(to_timestamp(%s), boot_time) WHERE device_id = %s",
            (status.state == "online", status.firmware, status.boot_time, device_id),
        )

    def _dead_letter(self, conn: Any, message: Received, reason: str) -> None:
        logger.warning("dead-lettered a message on %s: %s", message.topic, reason)
        conn.execute(
            "INSERT INTO dead_letters (topic, payload, payload_size, reason) VALUES (%s, %s, %s, %s)",
            (message.topic, message.payload[:DEAD_LETTER_KEEP_BYTES], len(message.payload), reason),
        )
        self.counters.dead_letters += 1


def _touch_device(conn: Any, device_id: str) -> None:
    conn.execute(
        "INSERT INTO devices (device_id) VALUES (%s) ON CONFLICT (device_id)"
        " DO UPDATE SET last_seen = now()",
        (device_id,),
    )
