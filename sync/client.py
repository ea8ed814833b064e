"""The one place a paho-mqtt client is built from config (MQTT v5, TLS, credentials, will).

Both ends use :class:`MqttLink`. Callbacks installed through :meth:`MqttLink.on` are
wrapped so an exception is logged with its traceback and counted instead of vanishing
inside paho's network thread.
"""

from __future__ import annotations

import functools
import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from config.errors import SyncError
from config.settings import MqttSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LastWill:
    """What the broker publishes for us if we vanish."""

    topic: str
    """Topic of the will message."""
    payload: bytes
    """Payload of the will message."""
    qos: int = 1
    """QoS of the will message."""
    retain: bool = True
    """Whether the broker retains it."""


class MqttLink:
    """A paho ``Client`` built from config, with its connect options. A context manager."""

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        *,
        clean_start: bool = True,
        session_expiry: int = 0,
        will: LastWill | None = None,
        manual_ack: bool = False,
    ) -> None:
        import paho.mqtt.client as mqtt

        self.settings = settings
        """The broker settings this link was built from."""
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
        )
        """The underlying paho client."""
        self.callback_errors = 0
        """How many callback invocations raised (each was logged with its traceback)."""
        self._clean_start = clean_start
        self._session_expiry = session_expiry
        self._connected = threading.Event()
        self._connect_answered = threading.Event()
        self._connect_hooks: list[Callable[[], None]] = []
        self._last_connect_reason: Any = None
        self._closed = False
        self._configure(will)

    def _configure(self, will: LastWill | None) -> None:
        settings, client = self.settings, self.client
        if settings.username is not None:
            password = settings.password.get_secret_value() if settings.password else None
            client.username_pw_set(settings.username, password)
        if settings.tls.enabled:
            client.tls_set(
                ca_certs=str(settings.tls.ca_file),
                certfile=str(settings.tls.cert_file) if settings.tls.cert_file else None,
                keyfile=str(settings.tls.key_file) if settings.tls.key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        if will is not None:
            client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.on_connect = self._guard(self._on_connect)
        client.on_disconnect = self._guard(self._on_disconnect)

    def on(self, event: str, callback: Callable[..., Any]) -> None:
        """Install a paho callback (``"message"``, ``"subscribe"``...), guarded."""
        setattr(self.client, f"on_{event}", self._guard(callback))

    def _guard(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(callback)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return callback(*args, **kwargs)
            except Exception:
                self.callback_errors += 1
                logger.exception("MQTT callback %s failed", getattr(callback, "__name__", "?"))
                return None

        return guarded

    @property
    def connected(self) -> bool:
        """Whether the broker has accepted our connection and it is still up."""
        return self._connected.is_set()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._last_connect_reason = reason
        if not reason.is_failure:
            self._connected.set()
            logger.info("connected to MQTT broker %s:%s", self.settings.host, self.settings.port)
        self._connect_answered.set()
        for hook in self._connect_hooks:
            hook()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()
        if not self._closed:
            logger.warning("disconnected from MQTT broker: %s", reason)

    def after_connect(self, hook: Callable[[], None]) -> None:
        """Run ``hook()`` after every successful (re)connect, e.g. to subscribe again."""
        self._connect_hooks.append(hook)

    def connect(self) -> None:
        """Connect, start the network thread, and wait for CONNACK.

        Raises :class:`SyncError` naming the broker and the reason.
        """
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        settings = self.settings
        where = f"{settings.host}:{settings.port}"
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self._session_expiry
        self._connect_answered = threading.Event()
        try:
            self.client.connect(settings.host, settings.port, settings.keepalive,
                                clean_start=self._clean_start, properties=properties)
        except OSError as exc:
            raise SyncError(
                f"cannot reach the MQTT broker at {where}: {exc} — check TEDDY_MQTT__HOST and "
                "TEDDY_MQTT__PORT and that the broker runs"
            ) from None
        self.client.loop_start()
        if not self._connect_answered.wait(settings.connect_timeout):
            self.close()
            raise SyncError(f"no answer from the MQTT broker at {where} within "
                            f"{settings.connect_timeout:g} s — check the broker and the network")
        reason = self._last_connect_reason
        if reason.is_failure:
            self.close()
            raise SyncError(
                f"the MQTT broker at {where} refused the connection: {reason} — check "
                "TEDDY_MQTT__USERNAME/PASSWORD and the broker's ACL"
            )

    def close(self) -> None:
        """Disconnect cleanly and stop the network thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
            self._connected.clear()

    def __enter__(self) -> MqttLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
