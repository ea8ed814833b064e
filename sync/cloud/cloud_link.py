"""A short-lived MQTT connection for one fleet operation (send a command, approve a pairing).

Built on :class:`sync.client.MqttLink` with the cloud's credentials. :meth:`expect`
subscribes and waits for the broker's SUBACK before returning, so an answer published
right after our own message can never be missed.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import socket
import threading
from typing import TYPE_CHECKING, Any

from config.errors import CloudError
from config.settings import Settings
from sync.client import MqttLink

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

logger = logging.getLogger(__name__)

SUBACK_TIMEOUT_S = 10.0
"""Seconds to wait for the broker to confirm a subscription."""
PUBACK_TIMEOUT_S = 10.0
"""Seconds to wait for the broker to take a QoS 1 publication."""


class CloudLink:
    """One fleet operation's MQTT connection. A context manager."""

    def __init__(self, settings: Settings, purpose: str = "fleet") -> None:
        client_id = f"{purpose}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._link = MqttLink(settings.mqtt, client_id=client_id)
        self._subacks: dict[int, threading.Event] = {}
        self._link.on("subscribe", self._on_subscribe)
        self._link.on("message", lambda *args: None)

    def __enter__(self) -> CloudLink:
        self._link.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect; idempotent."""
        self._link.close()

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, *rest: Any) -> None:
        event = self._subacks.setdefault(mid, threading.Event())
        event.set()

    def expect(self, topic_filter: str, qos: int = 1) -> queue.Queue[tuple[str, bytes]]:
        """Subscribe to ``topic_filter``; ``(topic, payload)`` of each message lands in the
        returned queue (retained ones first)."""
        inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        client = self._link.client
        client.message_callback_add(
            topic_filter, lambda c, u, m: inbox.put((m.topic, bytes(m.payload))))
        result, mid = client.subscribe(topic_filter, qos=qos)
        if mid is None:
            raise CloudError(f"could not subscribe to {topic_filter} ({result}) — connect first")
        event = self._subacks.setdefault(mid, threading.Event())
        if not event.wait(SUBACK_TIMEOUT_S):
            raise CloudError(f"the broker did not confirm the subscription to {topic_filter} "
                             f"within {SUBACK_TIMEOUT_S:g} s — check the cloud user's ACL")
        return inbox

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Publish with QoS 1 and wait until the broker has it."""
        info = self._link.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=PUBACK_TIMEOUT_S)
        if not info.is_published():
            raise CloudError(f"the broker did not take the message on {topic} within "
                             f"{PUBACK_TIMEOUT_S:g} s — check the broker and the cloud user's ACL")
