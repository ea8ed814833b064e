"""The bear's side of ``down/receipt``: ``up/`` messages kept until the cloud has committed them.

A broker's PUBACK proves nothing about PostgreSQL (a subscriber that stole the share group,
an ingest that is down, a transaction rolled back). So an alert's raise or clear, a health
sample, a command result and a reported config are handed to :class:`PendingUplink`, which
publishes them (QoS 1) and keeps them until a :class:`~sync.protocol.Receipt` naming them
arrives; it sends them again every ``timeout`` seconds and after every reconnect. A receipt
with ``refused`` set (the bear is over its rate) postpones the resend by ``retry_after``;
one that also says ``drop`` (version 2: the bear is held by no family) ends the messages it
names without resending them. Receipts for turns are passed to a listener (the outbox sync,
which drops or postpones the batches they name).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from config.errors import ProtocolError
from sync.client import Inbound, MqttLink
from sync.protocol import Message, Receipt, receipt_id

logger = logging.getLogger(__name__)

MAX_PENDING = 2000
"""Most messages kept waiting for a receipt (the oldest health samples go first)."""
TICK_S = 0.5
"""Seconds between two looks for overdue messages."""


_BY_LINK: weakref.WeakKeyDictionary[MqttLink, PendingUplink] = weakref.WeakKeyDictionary()
_BY_LINK_LOCK = threading.Lock()


@dataclass
class _Pending:
    kind: str
    message: Message
    sent_at: float
    on_receipt: Callable[[], None] | None
    done: threading.Event


class PendingUplink:
    """Publishes ``up/`` messages and keeps them until the cloud's receipt. Thread-safe; a
    context manager whose :meth:`close` is idempotent. One per :class:`MqttLink`."""

    def __init__(self, link: MqttLink, device_id: str, timeout: float) -> None:
        self._link = link
        self._device_id = device_id
        self._timeout = timeout
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._listeners: dict[str, Callable[[Receipt], None]] = {}
        self._closing = threading.Event()
        self.receipts = 0
        """Receipts taken so far."""
        self._subscription = link.subscribe_to(Receipt, self._on_message, device_id=device_id)
        link.after_connect(self._on_connected)
        self._thread: threading.Thread | None = None  # started by the first send()

    @classmethod
    def of(cls, link: MqttLink, device_id: str, timeout: float = 10.0) -> PendingUplink:
        """The one :class:`PendingUplink` of ``link`` (made on first use)."""
        with _BY_LINK_LOCK:
            found = _BY_LINK.get(link)
            if found is None or found._closing.is_set():
                found = _BY_LINK[link] = cls(link, device_id, timeout)
            return found

    def __enter__(self) -> PendingUplink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop resending (what is pending stays unreceipted). Idempotent."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._link.drop(self._subscription)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)

    def listen(self, kind: str, callback: Callable[[Receipt], None]) -> None:
        """Call ``callback(receipt)`` for every receipt of ``kind`` (e.g. refused turns)."""
        self._listeners[kind] = callback

    def pending(self, kind: str | None = None) -> int:
        """Messages (of ``kind``) still waiting for their receipt."""
        with self._lock:
            return sum(1 for k, _ in self._pending if kind is None or k == kind)

    def send(self, message: Message, *, on_receipt: Callable[[], None] | None = None,
             latest_only: bool = False) -> threading.Event:
        """Publish ``message`` on its route (``up/<kind>``) until a receipt names it; the
        event is set when it does. Sending a message already pending only returns its event.
        ``latest_only``: a newer message of this kind replaces the ones still pending."""
        kind = message.route().name
        rid = receipt_id(kind, message)
        if rid is None:
            raise ProtocolError(f"up/{kind} messages are not receipted")
        key = (kind, rid)
        with self._lock:
            known = self._pending.get(key)
            if known is not None:
                return known.done
            if latest_only:
                for old in [k for k in self._pending if k[0] == kind]:
                    del self._pending[old]
            self._trim()
            entry = _Pending(kind, message, float("-inf"), on_receipt, threading.Event())
            self._pending[key] = entry
            if self._thread is None and not self._closing.is_set():
                self._thread = threading.Thread(target=self._run, name="teddy-receipts",
                                                daemon=True)
                self._thread.start()
        self._publish(entry)
        return entry.done

    def _trim(self) -> None:
        while len(self._pending) >= MAX_PENDING:
            victim = next((k for k in self._pending if k[0] == "health"),
                          next(iter(self._pending)))
            logger.warning("more than %d messages wait for the cloud's receipt; dropping the "
                           "oldest %s", MAX_PENDING, victim[0])
            del self._pending[victim]

    def _publish(self, entry: _Pending) -> None:
        if not self._link.connected:
            return
        entry.sent_at = time.monotonic()
        try:
            self._link.publish(entry.message, self._device_id)
        except (RuntimeError, ValueError, OSError) as exc:
            logger.info("publishing up/%s failed (%s); trying again", entry.kind, exc)

    def _on_connected(self) -> None:
        with self._lock:
            for entry in self._pending.values():
                entry.sent_at = float("-inf")  # may have been lost with the old connection

    def _run(self) -> None:
        while not self._closing.wait(TICK_S):
            now = time.monotonic()
            with self._lock:
                due = [e for e in self._pending.values() if now - e.sent_at >= self._timeout]
            for entry in due:
                self._publish(entry)

    def _on_message(self, message: Inbound) -> None:
        try:
            receipt = Receipt.from_payload(bytes(message.payload))
        except ProtocolError as exc:
            logger.error("ignored a malformed receipt on %s: %s", message.topic, exc)
            return
        try:
            self._take(receipt)
        except Exception:  # paho's network thread must live on; the message stays pending
            logger.exception("handling a receipt for up/%s failed", receipt.kind)

    def _take(self, receipt: Receipt) -> None:
        self.receipts += 1
        listener = self._listeners.get(receipt.kind)
        if listener is not None:
            listener(receipt)
        if receipt.drop:
            self._drop(receipt)
            return
        if receipt.refused:
            self._postpone(receipt)
            return
        for rid in receipt.ids:
            with self._lock:
                entry = self._pending.get((receipt.kind, rid))
            if entry is None:
                continue
            if entry.on_receipt is not None:
                entry.on_receipt()
            with self._lock:
                self._pending.pop((receipt.kind, rid), None)
            entry.done.set()

    def _drop(self, receipt: Receipt) -> None:
        """The cloud will never store these: forget them (no resend, no ``on_receipt``)."""
        logger.warning("the cloud will never store %d up/%s messages (%s); dropping them",
                       len(receipt.ids), receipt.kind, receipt.refused)
        for rid in receipt.ids:
            with self._lock:
                entry = self._pending.pop((receipt.kind, rid), None)
            if entry is not None:
                entry.done.set()

    def _postpone(self, receipt: Receipt) -> None:
        logger.info("the cloud refused %d up/%s messages for now (%s); again in %.1f s",
                    len(receipt.ids), receipt.kind, receipt.refused, receipt.retry_after)
        resend_at = time.monotonic() + receipt.retry_after - self._timeout
        with self._lock:
            for rid in receipt.ids:
                entry = self._pending.get((receipt.kind, rid))
                if entry is not None:
                    entry.sent_at = resend_at
