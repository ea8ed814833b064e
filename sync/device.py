"""The bear's MQTT client: publish the outbox, take the cloud's acks.

The SQLite outbox is the only queue. A batch is published with QoS 1 and stays in the
outbox, claimed under its batch id, until the cloud's ``down/ack`` names its seq ranges as
committed in PostgreSQL; the broker's PUBACK proves nothing about the database. A batch
not acked within ``sync.ack_timeout`` (or in flight when the connection dropped, or left
claimed by a process that died) is sent again with the same batch id; the cloud's insert is
idempotent on ``(device_id, seq, created_at)`` (a resend carries the same stored time),
so a resend never makes a duplicate.

A receipt that says ``drop`` (the cloud's custody check: this bear is held by no family,
never paired or revoked) ends those batches for good: the store shreds their turns
(:meth:`Outbox.drop_batches`), and they are never sent again.

Nothing is handed to paho while the link is down (paho would accept it into an unbounded
in-memory queue), and at most ``sync.max_inflight`` batches are ever in flight, so memory
stays flat however long the outbox is.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from config.errors import ProtocolError, SyncError
from config.settings import Settings
from sync.backoff import Backoff
from sync.client import Inbound, LastWill, MqttLink
from sync.protocol import Ack, Receipt, Status, TurnRecord, TurnsBatch
from sync.receipts import PendingUplink

logger = logging.getLogger(__name__)

SESSION_EXPIRY = 7 * 24 * 3600
"""Seconds the broker keeps our session (subscriptions, queued acks) while we are away."""
IDLE_POLL = 1.0
"""Seconds between outbox checks in :meth:`DeviceSync.run` when nobody calls ``wake()``."""
BUDGET_CHECK_EVERY = 5.0
"""Seconds between outbox budget checks."""
BUDGET_ALERT = "sync.outbox_budget"
"""Alert kind raised while unsynced turns exceed ``sync.outbox_budget_bytes``."""

AckListener = Callable[[list[tuple[int, int]]], None]


class OutboxTurn(Protocol):
    """A kept turn as the outbox hands it out (``agent.store.StoredTurn``)."""

    @property
    def seq(self) -> int:
        """Device-wide sequence number."""

    @property
    def conversation_id(self) -> str:
        """The conversation it belongs to."""

    @property
    def role(self) -> Literal["child", "bear"]:
        """``"child"`` or ``"bear"``."""

    @property
    def text(self) -> str:
        """What was said."""

    @property
    def created_at(self) -> float:
        """Unix time, seconds."""

    @property
    def verdict(self) -> dict[str, Any]:
        """Safety verdict: ``action`` and ``categories``."""


class Outbox(Protocol):
    """What :class:`DeviceSync` needs of the bear's store (``agent.store.ConversationStore``)."""

    def outbox_batch(self, limit: int,
                     batch_id: str | None = None) -> tuple[str, Sequence[OutboxTurn]]:
        """Claim up to ``limit`` unsent turns under a batch id, or re-read ``batch_id``."""

    def unacked_batches(self) -> list[str]:
        """Batch ids sent earlier and not yet acked."""

    def mark_synced(self, ranges: Iterable[tuple[int, int]]) -> int:
        """The cloud committed these seq ranges; returns the outbox rows removed."""

    def outbox_depth(self) -> int:
        """Turns waiting for the cloud's ack."""

    def drop_batches(self, batch_ids: Iterable[str]) -> int:
        """The cloud will never store these batches: shred their turns; returns how many."""

    def outbox_usage(self, with_bytes: bool = True) -> dict[str, Any]:
        """``unclaimed``, ``oldest_unclaimed_at`` and (``with_bytes``) ``bytes`` waiting."""


class AlertHook(Protocol):
    """Where the outbox-budget alert goes (``agent.alerts.AlertSink``)."""

    def raise_alert(self, kind: str, severity: str, message: str, **details: Any) -> Any:
        """Raise alert ``kind`` with ``severity`` (``"warning"``...)."""

    def clear_alert(self, kind: str, message: str = "", **details: Any) -> Any:
        """Clear alert ``kind``."""


@dataclass
class SyncReport:
    """What one ``sync_once`` (or one ``run``) did."""

    batches_sent: int = 0
    """Batch publications, resends included."""
    turns_sent: int = 0
    """Turns published, resends included."""
    turns_acked: int = 0
    """Outbox rows the cloud confirmed as committed."""
    turns_dropped: int = 0
    """Turns shredded because the cloud said it will never store them (no family)."""
    resends: int = 0
    """Batches published again after an ack timeout, a reconnect or a restart."""
    left: int = 0
    """Outbox rows still waiting when the run ended."""


@dataclass
class _InFlight:
    batch_id: str
    seqs: set[int]
    sent_at: float = field(default_factory=time.monotonic)


class DeviceSync:
    """Moves a bear's outbox to the cloud. A context manager; :meth:`close` is idempotent.

    ``alerts`` receives the outbox-budget alert; ``on_ack`` is called with the seq ranges
    of every ack after they are marked synced (load generators measure latency with it).
    """

    def __init__(
        self,
        settings: Settings,
        store: Outbox,
        device_id: str,
        firmware: str,
        alerts: AlertHook | None = None,
        on_ack: AckListener | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._device_id = device_id
        self._firmware = firmware
        self._alerts = alerts
        self._on_ack = on_ack
        self._boot_time = time.time()
        self._events: queue.Queue[Ack | Receipt | None] = queue.Queue()
        self._paused_until = float("-inf")
        self._inflight: dict[str, _InFlight] = {}
        self._reconnected = threading.Event()
        self._over_budget = False
        self._due_in: float | None = None
        self._budget_checked = float("-inf")
        offline = Status(state="offline", firmware=firmware)
        sync = settings.sync
        self._link = MqttLink(
            settings.mqtt,
            client_id=f"teddy-{device_id}",
            clean_start=False,
            session_expiry=SESSION_EXPIRY,
            will=LastWill.of(offline, device_id),
            backoff=Backoff(sync.backoff_min, max(sync.backoff_max, sync.backoff_min)),
        )
        self._link.subscribe_to(Ack, self._on_ack_message, device_id=device_id)
        self._link.after_connect(self._on_connected)
        self.pending = PendingUplink.of(self._link, device_id, sync.ack_timeout)
        """Alerts, health, command results and config reports waiting for the cloud's
        receipt (``down/receipt``), on this same link."""
        self.pending.listen("turns", self._events.put)

    def __enter__(self) -> DeviceSync:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def link(self) -> MqttLink:
        """The MQTT link (for its ``connected`` state and counters)."""
        return self._link

    @property
    def over_budget(self) -> bool:
        """Whether unsynced turns exceeded ``sync.outbox_budget_bytes`` at the last check."""
        return self._over_budget

    def connect(self) -> None:
        """Connect to the broker now (subscribes to acks, announces ``online``); raises
        :class:`SyncError` if the broker cannot be reached. Later drops reconnect by themselves."""
        self._link.connect()

    def start(self) -> None:
        """Connect in the background, retrying with jittered backoff; never raises."""
        self._link.start()

    def wake(self) -> None:
        """Tell :meth:`run` that turns were appended, so it need not wait for its next poll."""
        self._events.put(None)

    def close(self) -> None:
        """Publish ``offline`` and disconnect. Idempotent."""
        if self._link.connected:
            offline = Status(state="offline", firmware=self._firmware)
            # if the link drops meanwhile, the Last Will says offline instead
            self._link.publish(offline, self._device_id).wait(timeout=2)
        self.pending.close()
        self._link.close()

    def _on_connected(self) -> None:
        online = Status(state="online", firmware=self._firmware, boot_time=self._boot_time)
        self._link.publish(online, self._device_id)
        self._reconnected.set()
        self._events.put(None)

    def _on_ack_message(self, message: Inbound) -> None:
        try:
            ack = Ack.from_payload(message.payload)
        except ProtocolError as exc:
            logger.error("ignored a malformed ack on %s: %s", message.topic, exc)
            return
        self._events.put(ack)

    # --- the two ways to run -------------------------------------------------------------

    def sync_once(self, timeout: float | None = None) -> SyncReport:
        """Send every outbox row and wait until the cloud has acked them all.

        Raises :class:`SyncError` if rows are still unacked after ``timeout`` seconds
        (default ``sync.once_timeout``); those rows stay in the outbox for the next run.
        """
        timeout = self._settings.sync.once_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        report = SyncReport()
        self._reclaim()
        while True:
            self._pump(report, drain=True, wait=0.5)
            if not self._inflight and self._store.outbox_depth() == 0:
                break
            if time.monotonic() >= deadline:
                report.left = self._store.outbox_depth()
                raise SyncError(
                    f"{report.left} turns still wait for the cloud's ack after {timeout:g} s — "
                    "they stay queued; check teddy-cloud ingest and the broker, then sync again"
                )
        report.left = self._store.outbox_depth()
        return report

    def run(self, stop: threading.Event) -> SyncReport:
        """Sync continuously until ``stop`` is set: a batch leaves when ``sync.batch_size``
        turns wait or the oldest has waited ``sync.batch_max_age`` seconds. Connects in the
        background if :meth:`connect` was not called. Never raises for a broker outage."""
        if not self._link.connected and self._link.connects == 0:
            self.start()
        report = SyncReport()
        self._reclaim()
        while not stop.is_set():
            self._pump(report, drain=False, wait=self._next_wait())
        report.left = self._store.outbox_depth()
        return report

    # --- one step: resend, publish, take acks --------------------------------------------

    def _reclaim(self) -> None:
        """Batches claimed earlier (by us, or by a process that died) are due for a resend."""
        for batch_id in self._store.unacked_batches():
            if batch_id not in self._inflight:
                self._inflight[batch_id] = _InFlight(batch_id, set(), sent_at=float("-inf"))

    def _pump(self, report: SyncReport, drain: bool, wait: float) -> None:
        if self._reconnected.is_set():
            self._reconnected.clear()
            since = self._link.connected_at  # batches sent on this connection are not lost
            for flight in self._inflight.values():  # sent before it: may be lost with the old
                if flight.sent_at < since:
                    flight.sent_at = float("-inf")
        self._due_in = None
        if self._link.connected:
            self._resend_overdue(report)
            self._fill_window(report, drain)
        self._take_events(report, until=time.monotonic() + wait)
        self._check_budget()

    def _next_wait(self) -> float:
        """Until the oldest waiting turn is due, an ack may be overdue, or the idle poll."""
        wait = min(IDLE_POLL, self._settings.sync.ack_timeout / 4)
        if self._due_in is not None:
            wait = min(wait, self._due_in)
        return max(wait, 0.005)

    def _fill_window(self, report: SyncReport, drain: bool) -> None:
        sync = self._settings.sync
        while len(self._inflight) < sync.max_inflight and self._link.connected:
            if time.monotonic() < self._paused_until:
                return
            if not drain and not self._batch_ready():
                return
            if not self._publish(None, report, resend=False):
                return
            self._due_in = None

    def _batch_ready(self) -> bool:
        sync = self._settings.sync
        usage = self._store.outbox_usage(with_bytes=False)
        oldest = usage["oldest_unclaimed_at"]
        self._due_in = None if oldest is None else oldest + sync.batch_max_age - time.time()
        if usage["unclaimed"] >= sync.batch_size:
            return True
        return self._due_in is not None and self._due_in <= 0

    def _publish(self, batch_id: str | None, report: SyncReport, resend: bool) -> bool:
        batch_id, turns = self._store.outbox_batch(self._settings.sync.batch_size, batch_id)
        if not turns:
            self._inflight.pop(batch_id, None)
            return False
        batch = TurnsBatch(
            device_id=self._device_id, batch_id=batch_id, turns=[_record(t) for t in turns]
        )
        self._link.publish(batch, self._device_id)
        self._inflight[batch_id] = _InFlight(batch_id, {t.seq for t in turns})
        report.batches_sent += 1
        report.turns_sent += len(turns)
        report.resends += int(resend)
        logger.debug("published batch %s (%d turns)", batch_id, len(turns))
        return True

    def _take_events(self, report: SyncReport, until: float) -> None:
        while True:
            remaining = until - time.monotonic()
            try:
                event = self._events.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                return
            if event is None:  # a wake-up: new turns, or a reconnect
                return
            if isinstance(event, Receipt):
                report.turns_dropped += self._refused(event)
                return
            report.turns_acked += self._store.mark_synced(event.ranges)
            self._settle(event)
            if self._on_ack is not None:
                self._on_ack(event.ranges)
            if self._events.empty():
                return  # back to the pump: the window has room again

    def _refused(self, receipt: Receipt) -> int:
        """The cloud refused these batches: for now (this bear is over its rate: send them
        again after ``retry_after``, and nothing new before), or for good (``drop``: shred
        them). Returns the turns dropped."""
        if not receipt.refused:
            return 0
        if receipt.drop:
            return self._drop(receipt)
        now = time.monotonic()
        self._paused_until = max(self._paused_until, now + receipt.retry_after)
        for batch_id in receipt.ids:
            flight = self._inflight.get(batch_id)
            if flight is not None:
                flight.sent_at = now + receipt.retry_after - self._settings.sync.ack_timeout
        logger.info("the cloud refused %d batches for now (%s); sending again in %.1f s",
                    len(receipt.ids), receipt.refused, receipt.retry_after)
        return 0

    def _drop(self, receipt: Receipt) -> int:
        for batch_id in receipt.ids:
            self._inflight.pop(batch_id, None)
        dropped = self._store.drop_batches(receipt.ids)
        logger.warning("the cloud will never store %d batches (%s); shredded their %d turns",
                       len(receipt.ids), receipt.refused, dropped)
        return dropped

    def _settle(self, ack: Ack) -> None:
        flight = self._inflight.get(ack.batch_id)
        if flight is not None and _covers(ack.ranges, flight.seqs):
            del self._inflight[ack.batch_id]
            return
        for batch_id, other in list(self._inflight.items()):
            other.seqs = {s for s in other.seqs if not _in_ranges(s, ack.ranges)}
            if not other.seqs and other.sent_at != float("-inf"):
                del self._inflight[batch_id]

    def _resend_overdue(self, report: SyncReport) -> None:
        now = time.monotonic()
        for batch_id, flight in list(self._inflight.items()):
            if not self._link.connected:
                return
            if now - flight.sent_at >= self._settings.sync.ack_timeout:
                if flight.sent_at != float("-inf"):
                    logger.info("batch %s not acked in %.1f s; sending it again", batch_id,
                                now - flight.sent_at)
                del self._inflight[batch_id]
                self._publish(batch_id, report, resend=True)

    # --- the outbox budget ---------------------------------------------------------------

    def _check_budget(self) -> None:
        now = time.monotonic()
        if now - self._budget_checked < BUDGET_CHECK_EVERY:
            return
        self._budget_checked = now
        budget = self._settings.sync.outbox_budget_bytes
        used = self._store.outbox_usage(with_bytes=True)["bytes"]
        if used >= budget and not self._over_budget:
            self._over_budget = True
            message = (f"unsynced turns take {used} bytes, over the {budget}-byte outbox budget "
                       "(sync.outbox_budget_bytes); every turn is kept and the oldest go first "
                       "— check the bear's network and the broker")
            if self._alerts is not None:
                self._alerts.raise_alert(BUDGET_ALERT, "warning", message,
                                         bytes=used, budget=budget)
            else:
                logger.warning("%s", message)
        elif used < budget and self._over_budget:
            self._over_budget = False
            if self._alerts is not None:
                self._alerts.clear_alert(BUDGET_ALERT, "the outbox is back under its budget",
                                         bytes=used, budget=budget)


def _in_ranges(seq: int, ranges: list[tuple[int, int]]) -> bool:
    return any(first <= seq <= last for first, last in ranges)


def _covers(ranges: list[tuple[int, int]], seqs: set[int]) -> bool:
    return all(_in_ranges(seq, ranges) for seq in seqs)


def _record(turn: OutboxTurn) -> TurnRecord:
    return TurnRecord(
        seq=turn.seq,
        conversation_id=turn.conversation_id,
        role=turn.role,
        text=turn.text,
        created_at=turn.created_at,
        action=turn.verdict["action"],
        categories=turn.verdict["categories"],
    )
