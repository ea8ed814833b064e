"""The bear's MQTT client: publish the outbox, take the cloud's acks.

The SQLite outbox is the only queue. A batch is published with QoS 1 and stays in the
outbox, claimed under its batch id, until the cloud's ``down/ack`` names its seq ranges as
committed in PostgreSQL; the broker's PUBACK proves nothing about the database. A batch
not acked within ``sync.ack_timeout`` is sent again with the same batch id; the cloud's
insert is idempotent on ``(device_id, seq)``, so a resend never makes a duplicate.
"""

from __future__ import annotations

import logging
import queue
import time
from dataclasses import dataclass, field
from typing import Any

from agent.store import ConversationStore, StoredTurn
from config.errors import ProtocolError, SyncError
from config.settings import Settings
from sync.client import LastWill, MqttLink
from sync.protocol import Ack, Status, TurnRecord, TurnsBatch, down_topic, up_topic

logger = logging.getLogger(__name__)

SESSION_EXPIRY = 7 * 24 * 3600
"""Seconds the broker keeps our session (subscriptions, queued acks) while we are away."""


@dataclass
class SyncReport:
    """What one ``sync_once`` did."""

    batches_sent: int = 0
    """Batch publications, resends included."""
    turns_sent: int = 0
    """Turns published, resends included."""
    turns_acked: int = 0
    """Outbox rows the cloud confirmed as committed."""
    resends: int = 0
    """Batches published again after an ack timeout or a restart."""
    left: int = 0
    """Outbox rows still waiting when the run ended."""


@dataclass
class _InFlight:
    batch_id: str
    seqs: set[int]
    sent_at: float = field(default_factory=time.monotonic)


class DeviceSync:
    """Moves a bear's outbox to the cloud. A context manager; :meth:`close` is idempotent."""

    def __init__(
        self, settings: Settings, store: ConversationStore, device_id: str, firmware: str
    ) -> None:
        self._settings = settings
        self._store = store
        self._device_id = device_id
        self._firmware = firmware
        self._boot_time = time.time()
        self._acks: queue.Queue[Ack] = queue.Queue()
        self._inflight: dict[str, _InFlight] = {}
        offline = Status(state="offline", firmware=firmware).to_payload()
        self._link = MqttLink(
            settings.mqtt,
            client_id=f"teddy-{device_id}",
            clean_start=False,
            session_expiry=SESSION_EXPIRY,
            will=LastWill(up_topic(device_id, "status"), offline),
        )
        self._link.on("message", self._on_message)
        self._link.after_connect(self._on_connected)

    def __enter__(self) -> DeviceSync:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        """Connect to the broker (subscribes to acks, announces ``online``)."""
        self._link.connect()

    def close(self) -> None:
        """Publish ``offline`` and disconnect. Idempotent."""
        if self._link.connected:
            offline = Status(state="offline", firmware=self._firmware).to_payload()
            info = self._link.client.publish(
                up_topic(self._device_id, "status"), offline, qos=1, retain=True
            )
            info.wait_for_publish(timeout=2)
        self._link.close()

    def _on_connected(self) -> None:
        client = self._link.client
        client.subscribe(down_topic(self._device_id, "ack"), qos=1)
        online = Status(state="online", firmware=self._firmware, boot_time=self._boot_time)
        client.publish(up_topic(self._device_id, "status"), online.to_payload(), qos=1, retain=True)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            ack = Ack.from_payload(message.payload)
        except ProtocolError as exc:
            logger.error("ignored a malformed ack on %s: %s", message.topic, exc)
            return
        self._acks.put(ack)

    def sync_once(self, timeout: float | None = None) -> SyncReport:
        """Send every outbox row and wait until the cloud has acked them all.

        Raises :class:`SyncError` if rows are still unacked after ``timeout`` seconds
        (default ``sync.once_timeout``); those rows stay in the outbox for the next run.
        """
        timeout = self._settings.sync.once_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        report = SyncReport()
        for batch_id in self._store.unacked_batches():
            self._publish(batch_id, report, resend=True)
        while True:
            self._fill_window(report)
            if not self._inflight:
                break
            self._take_acks(report, until=min(deadline, time.monotonic() + 0.5))
            self._resend_overdue(report)
            if time.monotonic() >= deadline:
                report.left = self._store.outbox_depth()
                raise SyncError(
                    f"{report.left} turns still wait for the cloud's ack after {timeout:g} s — "
                    "they stay queued; check teddy-cloud ingest and the broker, then sync again"
                )
        report.left = self._store.outbox_depth()
        return report

    def _fill_window(self, report: SyncReport) -> None:
        while len(self._inflight) < self._settings.sync.max_inflight:
            if not self._publish(None, report, resend=False):
                return

    def _publish(self, batch_id: str | None, report: SyncReport, resend: bool) -> bool:
        batch_id, turns = self._store.outbox_batch(self._settings.sync.batch_size, batch_id)
        if not turns:
            return False
        batch = TurnsBatch(
            device_id=self._device_id, batch_id=batch_id, turns=[_record(t) for t in turns]
        )
        self._link.client.publish(up_topic(self._device_id, "turns"), batch.to_payload(), qos=1)
        self._inflight[batch_id] = _InFlight(batch_id, {t.seq for t in turns})
        report.batches_sent += 1
        report.turns_sent += len(turns)
        report.resends += int(resend)
        logger.debug("published batch %s (%d turns)", batch_id, len(turns))
        return True

    def _take_acks(self, report: SyncReport, until: float) -> None:
        while True:
            remaining = until - time.monotonic()
            try:
                ack = self._acks.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                return
            report.turns_acked += self._store.mark_synced(ack.ranges)
            self._settle(ack)
            if not self._inflight:
                return

    def _settle(self, ack: Ack) -> None:
        acked = {seq for first, last in ack.ranges for seq in range(first, last + 1)}
        for batch_id, flight in list(self._inflight.items()):
            flight.seqs -= acked
            if not flight.seqs:
                del self._inflight[batch_id]

    def _resend_overdue(self, report: SyncReport) -> None:
        now = time.monotonic()
        for batch_id, flight in list(self._inflight.items()):
            if now - flight.sent_at >= self._settings.sync.ack_timeout:
                logger.info("batch %s not acked in %.1f s; sending it again", batch_id,
                            now - flight.sent_at)
                del self._inflight[batch_id]
                self._publish(batch_id, report, resend=True)


def _record(turn: StoredTurn) -> TurnRecord:
    return TurnRecord(
        seq=turn.seq,
        conversation_id=turn.conversation_id,
        role=turn.role,
        text=turn.text,
        created_at=turn.created_at,
        action=turn.verdict["action"],
        categories=turn.verdict["categories"],
    )
