"""Idle bears: thousands of real MQTT connections served by one network thread.

A bear that is switched on but not talking costs the broker one authenticated connection,
its subscription to ``down/#`` and a keepalive ping now and then. :class:`IdleFleet` holds
many such connections in one process: every bear is a paho client run through paho's
external-loop interface (``loop_read``/``loop_write``/``loop_misc``) from one ``selectors``
loop, instead of a network thread (and ``select()``, capped at descriptor 1024) per bear.

Each idle bear logs in as itself, subscribes to its ``down/#``, and sends one probe turn
(``up/turns``, QoS 1) that the cloud must commit and ack (``down/ack``) back through the
broker — so "connected" means the whole way to PostgreSQL and back, not just a TCP socket.
The probe is made here, not by a store: the bears that measure throughput are the senders
(:class:`fleetsim.simulation.Simulation`, real stores and ``DeviceSync``).

paho is used directly here on purpose: this is a load tool outside the bear and the cloud,
and the bear's ``MqttLink`` owns one network thread per connection by design.
"""

from __future__ import annotations

import logging
import random
import selectors
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from config.errors import ProtocolError
from config.settings import MqttSettings
from sync.protocol import Ack, TurnRecord, TurnsBatch, down_topic, up_topic

logger = logging.getLogger(__name__)

CONNECT_WINDOW = 32
"""Connections a process has opened and not yet seen acknowledged (CONNACK) at once: the
fleet connects at the pace the broker accepts, not as one burst past its listen backlog."""
MISC_EVERY = 1.0
"""Seconds between keepalive checks (``loop_misc``) of every connection."""


@dataclass
class IdleReport:
    """What one process of idle bears saw."""

    devices: int = 0
    """Idle bears in the process."""
    connected: int = 0
    """Connected right now (or when the report was taken)."""
    probes_acked: int = 0
    """Bears whose probe turn the cloud committed and acked."""
    drops: int = 0
    """Connections lost after :meth:`IdleFleet.mark` (the measured window)."""


class IdleBear:
    """One idle bear's connection (paho client, no thread of its own)."""

    def __init__(self, device_id: str, password: str, mqtt: MqttSettings,
                 fleet: IdleFleet) -> None:
        import paho.mqtt.client as paho

        self.device_id = device_id
        """Its device id (and broker user name)."""
        self.connected = False
        """Whether the broker acknowledged its connection and it is still up."""
        self.acked = False
        """Whether the cloud acked its probe turn."""
        self.reconnect_at: float | None = None
        """When to try again after a refused or lost connection (monotonic seconds)."""
        self._mqtt = mqtt
        self._fleet = fleet
        self._batch = TurnsBatch(device_id=device_id, batch_id=uuid.uuid4().hex, turns=[
            TurnRecord(seq=1, conversation_id=uuid.uuid4().hex, role="bear",
                       text="probe", created_at=time.time(), action="allow")]).to_payload()
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"teddy-{device_id}",
                             protocol=paho.MQTTv5)
        client.username_pw_set(device_id, password)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        fleet.attach(client)
        self.client = client
        """Its paho client, driven by the fleet's loop."""

    def connect(self) -> None:
        """Open the connection (CONNECT is queued; the fleet's loop does the rest)."""
        self.reconnect_at = None
        try:
            self.client.connect(self._mqtt.host, self._mqtt.port, self._mqtt.keepalive)
        except OSError as exc:
            logger.debug("idle bear %s could not connect: %s", self.device_id, exc)
            self._retry_later()

    def _retry_later(self) -> None:
        self.reconnect_at = time.monotonic() + random.uniform(0.5, 3.0)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            logger.warning("idle bear %s refused: %s", self.device_id, reason)
            return
        self.connected = True
        client.subscribe(down_topic(self.device_id, "#"), qos=1)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any,
                      properties: Any) -> None:
        if any(reason.is_failure for reason in reasons):
            logger.warning("idle bear %s may not read its down/#: %s", self.device_id, reasons)
        if not self.acked:  # sent again on every reconnect until acked, same batch id
            client.publish(up_topic(self.device_id, "turns"), self._batch, qos=1)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if message.topic != down_topic(self.device_id, "ack"):
            return
        try:
            Ack.from_payload(message.payload)
        except ProtocolError as exc:
            logger.error("idle bear %s ignored a malformed ack: %s", self.device_id, exc)
            return
        self.acked = True

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        if self._fleet.stopping:  # our own goodbye, not a lost connection
            self.connected = False
            return
        if self.connected:
            self._fleet.dropped()
        self.connected = False
        self._retry_later()


class IdleFleet:
    """Idle bears of one process on one selector, served by :meth:`serve` in one thread."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self.bears: list[IdleBear] = []
        """Every idle bear, in connection order."""
        self.stopping = False
        """Set by :meth:`serve`'s stop: lost connections are not retried any more."""
        self._drops = 0
        self._counting = False

    def attach(self, client: Any) -> None:
        """Have ``client`` tell this fleet's selector about its socket."""
        client.on_socket_open = self._opened
        client.on_socket_close = self._closed
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._wrote

    def add(self, mqtt: MqttSettings, device_ids: list[str],
            password: Callable[[str], str]) -> None:
        """Make one idle bear per device id, logging in as itself on ``mqtt``'s broker."""
        self.bears.extend(IdleBear(device_id, password(device_id), mqtt, self)
                          for device_id in device_ids)

    def mark(self) -> None:
        """From now on, count lost connections (the measured window begins)."""
        self._counting = True

    def dropped(self) -> None:
        """One connection was lost."""
        if self._counting:
            self._drops += 1

    def report(self) -> IdleReport:
        """What the bears look like now (safe to call from another thread)."""
        return IdleReport(devices=len(self.bears),
                          connected=sum(bear.connected for bear in self.bears),
                          probes_acked=sum(bear.acked for bear in self.bears),
                          drops=self._drops)

    def ready(self) -> bool:
        """Every bear connected and its probe acked."""
        return all(bear.connected and bear.acked for bear in self.bears)

    def serve(self, stop: threading.Event) -> None:
        """Connect every bear (paced), then keep serving them until ``stop``; disconnects."""
        waiting = list(reversed(self.bears))
        next_misc = time.monotonic() + MISC_EVERY
        while not stop.is_set():
            if waiting:
                self._connect_more(waiting)
            for key, mask in self._selector.select(timeout=0.2):
                client = key.data
                if mask & selectors.EVENT_READ:
                    client.loop_read()
                if mask & selectors.EVENT_WRITE and client.socket() is not None:
                    client.loop_write()
            now = time.monotonic()
            if now >= next_misc:
                next_misc = now + MISC_EVERY
                self._misc(now)
        self._disconnect_all()

    def _connect_more(self, waiting: list[IdleBear]) -> None:
        opening = sum(1 for bear in self.bears
                      if bear.client.socket() is not None and not bear.connected)
        while waiting and opening < CONNECT_WINDOW:
            waiting.pop().connect()
            opening += 1

    def _misc(self, now: float) -> None:
        for bear in self.bears:
            if bear.client.socket() is not None:
                bear.client.loop_misc()
            elif bear.reconnect_at is not None and now >= bear.reconnect_at:
                bear.reconnect_at = None
                try:
                    bear.client.reconnect()
                except OSError:
                    bear.reconnect_at = now + random.uniform(0.5, 3.0)

    def _disconnect_all(self) -> None:
        self.stopping = True
        for bear in self.bears:
            if bear.client.socket() is not None:
                bear.client.disconnect()
                if bear.client.socket() is not None and bear.client.want_write():
                    bear.client.loop_write()
        self._selector.close()

    # --- paho's external-loop callbacks ------------------------------------------------

    def _opened(self, client: Any, userdata: Any, sock: Any) -> None:
        self._selector.register(sock, selectors.EVENT_READ, client)

    def _closed(self, client: Any, userdata: Any, sock: Any) -> None:
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass  # never registered, or the selector is closed

    def _want_write(self, client: Any, userdata: Any, sock: Any) -> None:
        try:
            self._selector.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, client)
        except (KeyError, ValueError):
            pass  # closed meanwhile

    def _wrote(self, client: Any, userdata: Any, sock: Any) -> None:
        try:
            self._selector.modify(sock, selectors.EVENT_READ, client)
        except (KeyError, ValueError):
            pass  # closed meanwhile
