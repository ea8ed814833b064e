"""A short-lived MQTT connection for one fleet operation (send a command, approve a pairing).

Built on :class:`sync.client.MqttLink` with the cloud's credentials. :meth:`expect`
subscribes and waits for the broker's SUBACK before returning, so an answer published
right after our own message can never be missed. Topics, QoS and retain flags come from
the message classes (their ``ROUTE``, :mod:`sync.protocol`).
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import socket

from config.errors import CloudError, SyncError
from config.settings import Settings
from sync.client import Delivery, Inbound, MqttLink
from sync.protocol import Message

logger = logging.getLogger(__name__)

SUBACK_TIMEOUT_S = 10.0
"""Seconds to wait for the broker to confirm a subscription."""
PUBACK_TIMEOUT_S = 10.0
"""Seconds to wait for the broker to take a QoS 1 publication."""


class CloudLink:
    """One fleet operation's MQTT connection. A context manager."""

    def __init__(self, settings: Settings, purpose: str = "fleet") -> None:
        from sync.client import service_client_id
        from sync.cloud import fleet_slots

        mqtt = settings.mqtt
        self._slot: fleet_slots.Slot | None = None
        self._legacy = MqttLink(mqtt, client_id=_own_client_id(purpose))
        """The same login with a client id of ours: an account made before the pool."""
        base = service_client_id(mqtt)
        if base is not None:  # a service account: one of its pool, bound to its client id
            self._slot = fleet_slots.take(base, mqtt.host, mqtt.port, mqtt.connect_timeout)
            self._link = MqttLink(mqtt.model_copy(update={"username": self._slot.username}),
                                  client_id=self._slot.username)
        else:  # no account (a development broker): any client id of ours
            self._link = self._legacy

    def __enter__(self) -> CloudLink:
        try:
            self._connect()
        except BaseException:
            self.close()  # the slot goes back to the pool
            raise
        return self

    def _connect(self) -> None:
        try:
            self._link.connect()
        except SyncError as exc:
            if self._slot is None or "Not authorized" not in str(exc):
                raise
            # no pool account on this broker: the account was provisioned before the pool
            # (unbound, so the broker takes any client id); ours works until it is re-made
            logger.warning("broker account %s is not there: %s was provisioned before its pool"
                           " of bound client ids — run teddy-cloud provision --service fleet "
                           "%s --rotate", self._slot.username, self._legacy.settings.username,
                           self._legacy.settings.username)
            self._slot.close()
            self._slot = None
            self._link = self._legacy
            self._link.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect; idempotent."""
        self._link.close()
        if self._slot is not None:
            self._slot.close()
            self._slot = None

    def expect(self, message: type[Message],
               device_id: str | None = None) -> queue.Queue[tuple[str, bytes]]:
        """Subscribe to ``message``'s route of ``device_id`` (of every bear when None);
        ``(topic, payload)`` of each message lands in the returned queue (retained ones
        first)."""
        inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()

        def take(inbound: Inbound) -> None:
            inbox.put((inbound.topic, inbound.payload))

        subscription = self._link.subscribe_to(message, take, device_id=device_id)
        if not subscription.wait(SUBACK_TIMEOUT_S):
            raise CloudError(f"the broker did not confirm the subscription to "
                             f"{subscription.topic_filter} within {SUBACK_TIMEOUT_S:g} s — "
                             "check the cloud user's ACL")
        return inbox

    def send(self, message: Message, device_id: str) -> None:
        """Publish ``message`` on its route to ``device_id`` and wait until the broker has it."""
        self._confirm(self._link.publish(message, device_id))

    def clear_retained(self, message: type[Message], device_id: str) -> None:
        """Remove ``device_id``'s retained ``message`` from the broker."""
        self._confirm(self._link.clear_retained(message, device_id))

    def _confirm(self, delivery: Delivery) -> None:
        if not delivery.wait(PUBACK_TIMEOUT_S):
            raise CloudError(f"the broker did not take the message on {delivery.topic} within "
                             f"{PUBACK_TIMEOUT_S:g} s — check the broker and the cloud user's ACL")


def _own_client_id(purpose: str) -> str:
    return f"{purpose}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
