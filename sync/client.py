"""The one place a paho-mqtt client is built from config (MQTT v5, TLS, credentials, will).

Both ends use :class:`MqttLink`, and nothing else touches paho: :meth:`MqttLink.publish`
sends a protocol message on the topic, QoS and retain flag its class declares (its
``ROUTE``, :mod:`sync.protocol`); :meth:`MqttLink.subscribe` (or
:meth:`MqttLink.subscribe_to` for a message class) hands each message, as an
:class:`Inbound`, to a handler, and the link subscribes again after every reconnect.
Handlers are wrapped so an exception is logged with its traceback and counted instead of
vanishing inside paho's network thread. A link built with ``manual_ack=True`` PUBACKs a
message only when its owner calls :meth:`MqttLink.ack` (ingest: after the commit).

Reconnecting is ours, not paho's: paho's own retry doubles its delay without jitter, so a
fleet would come back in lockstep after a broker restart. The paho client is built with
``reconnect_on_failure=False``; when its network thread ends on a lost connection, a small
supervisor thread waits a full-jitter delay (:class:`sync.backoff.Backoff`) and reconnects.
"""

from __future__ import annotations

import functools
import logging
import math
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from config.errors import SyncError
from config.settings import SERVICE_ACCOUNT_PATTERN, MqttSettings
from sync.backoff import Backoff
from sync.protocol import Message, Route

logger = logging.getLogger(__name__)

HOSTNAME_MISMATCH = 62
"""OpenSSL's ``X509_V_ERR_HOSTNAME_MISMATCH``: the certificate is trusted but names another host."""


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

    @classmethod
    def of(cls, message: Message, device_id: str) -> LastWill:
        """``message`` as a will on its own route under ``device_id``."""
        route = message.route()
        return cls(route.topic(device_id), message.to_payload(), route.qos, route.retain)


@dataclass(frozen=True)
class Inbound:
    """One message as a handler receives it."""

    topic: str
    """The topic it arrived on."""
    payload: bytes
    """Its payload."""
    qos: int
    """The QoS it was delivered with."""
    retain: bool
    """Whether the broker sent it from its retained store."""
    mid: int
    """The MQTT message id (for :meth:`MqttLink.ack` on a ``manual_ack`` link)."""


Handler = Callable[[Inbound], None]
"""What a subscription calls, in the link's network thread, for each message."""


class Subscription:
    """One topic filter of a link and its handler; subscribed again after every connect."""

    def __init__(self, topic_filter: str, qos: int, handler: Handler) -> None:
        self.topic_filter = topic_filter
        """The filter (``$share/<group>/...`` for a shared subscription)."""
        self.qos = qos
        """The QoS asked for."""
        self.handler = handler
        """Called with each :class:`Inbound` message (guarded by the link)."""
        self.refused: str | None = None
        """The broker's reason when its last SUBACK refused the filter, else None."""
        self.active = True
        """Whether the link subscribes it (again after each reconnect); False once
        unsubscribed (messages already on their way still reach the handler)."""
        self._granted = threading.Event()

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for the broker's SUBACK (granted or refused)
        of the current connection; returns whether it came."""
        return self._granted.wait(timeout)

    @property
    def answered(self) -> bool:
        """Whether the broker has answered this subscription on the current connection."""
        return self._granted.is_set()

    @property
    def callback_filter(self) -> str:
        """The filter messages are matched with: a shared subscription's
        ``$share/<group>/`` is not part of the topics it delivers."""
        if self.topic_filter.startswith("$share/"):
            return self.topic_filter.split("/", 2)[2]
        return self.topic_filter


class Delivery:
    """A publication handed to the link: wait for the broker to take it (QoS >= 1)."""

    def __init__(self, info: Any, topic: str) -> None:
        self._info = info
        self.topic = topic
        """Where it was published."""

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for the PUBACK; False if it did not come or the
        message could not be sent (no connection, queue full)."""
        try:
            self._info.wait_for_publish(timeout)
            return bool(self._info.is_published())
        except (RuntimeError, ValueError) as exc:
            logger.debug("publication on %s not delivered: %s", self.topic, exc)
            return False


def service_client_id(settings: MqttSettings) -> str | None:
    """The client id a long-running cloud service (ingest) connects with: its account's own
    name, to which the broker binds ``svc.<name>`` ingest accounts; None when ``settings``
    log in as no service."""
    name = settings.username
    return name if name is not None and SERVICE_ACCOUNT_PATTERN.match(name) else None


class MqttLink:
    """One MQTT v5 connection built from config: publish protocol messages, subscribe
    handlers (kept across reconnects), reconnect with jitter. A context manager; its paho
    client is private."""

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        *,
        clean_start: bool = True,
        session_expiry: int = 0,
        will: LastWill | None = None,
        manual_ack: bool = False,
        backoff: Backoff | None = None,
        retry_log_level: int = logging.INFO,
    ) -> None:
        import paho.mqtt.client as mqtt

        self.settings = settings
        """The broker settings this link was built from."""
        self._client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
            reconnect_on_failure=False,
        )
        self.callback_errors = 0
        """How many callback invocations raised (each was logged with its traceback)."""
        self.connects = 0
        """Successful connections (CONNACK accepted) since the link was built."""
        self.connected_at = float("-inf")
        """``time.monotonic()`` when the current (or last) connection was accepted: what was
        published before it may have been lost with the previous one."""
        self.backoff = backoff or Backoff(0.5, 60.0)
        """Delays between reconnect attempts (full jitter)."""
        self._clean_start = clean_start
        self._session_expiry = session_expiry
        self._connected = threading.Event()
        self._connect_answered = threading.Event()
        self._lost = threading.Event()
        self._closing = threading.Event()
        self._connect_hooks: list[Callable[[], None]] = []
        self._subscriptions: list[Subscription] = []
        self._suback_waiting: dict[int, list[Subscription]] = {}
        self._subs_lock = threading.RLock()
        self._last_connect_reason: Any = None
        self._supervisor: threading.Thread | None = None
        self._attempt_at: float | None = None
        self._retry_log_level = retry_log_level
        self._configure(will)

    def _configure(self, will: LastWill | None) -> None:
        settings, client = self.settings, self._client
        if settings.username is not None:
            password = settings.password.get_secret_value() if settings.password else None
            client.username_pw_set(settings.username, password)
        if settings.tls.enabled:
            _check_tls_files(settings)
            client.tls_set(
                ca_certs=str(settings.tls.ca_file),
                certfile=str(settings.tls.cert_file) if settings.tls.cert_file else None,
                keyfile=str(settings.tls.key_file) if settings.tls.key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        if will is not None:
            client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        client.on_connect = self._guard(self._on_connect)
        client.on_disconnect = self._guard(self._on_disconnect)
        client.on_subscribe = self._guard(self._on_subscribe)

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

    def wait_connected(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a live connection; returns whether there is one."""
        return self._connected.wait(timeout)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._last_connect_reason = reason
        if not reason.is_failure:
            self.connects += 1
            self._attempt_at = None
            self.backoff.reset()
            with self._subs_lock:
                self.connected_at = time.monotonic()
                self._connected.set()
                subscriptions = [s for s in self._subscriptions if s.active]
            logger.info("connected to MQTT broker %s:%s", self.settings.host, self.settings.port)
            for subscription in subscriptions:
                self._send_subscribe(subscription)
            for hook in self._connect_hooks:
                hook()
        self._connect_answered.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                       props: Any) -> None:
        self._connected.clear()
        with self._subs_lock:  # a new connection's SUBACKs are what count now
            for subscription in self._subscriptions:
                subscription._granted.clear()
        if not self._closing.is_set():
            logger.warning("disconnected from MQTT broker: %s", reason)
            self._lost.set()

    def after_connect(self, hook: Callable[[], None]) -> None:
        """Run ``hook()`` after every successful (re)connect, once the link's subscriptions
        are sent again (e.g. to announce ``online``)."""
        self._connect_hooks.append(hook)

    # --- subscriptions -----------------------------------------------------------------

    def subscribe(self, topic_filter: str, handler: Handler, *, qos: int = 1) -> Subscription:
        """Hand every message matching ``topic_filter`` to ``handler``; subscribed now if the
        link is up, and again after every reconnect. Call before :meth:`connect` or any time.
        """
        subscription = Subscription(topic_filter, qos, self._guard(handler))
        with self._subs_lock:
            self._subscriptions.append(subscription)
            self._install(subscription.callback_filter)
            connected = self._connected.is_set()
        if connected:
            self._send_subscribe(subscription)
        return subscription

    def subscribe_to(self, message: type[Message], handler: Handler, *,
                     device_id: str | None = None, share_group: str | None = None) -> Subscription:
        """Subscribe to ``message``'s route (its topic and QoS): under ``device_id``'s root,
        as ingest's shared ``share_group``, or (neither) under every bear's root."""
        route: Route = message.route()
        if device_id is not None:
            topic_filter = route.topic(device_id)
        elif share_group is not None:
            topic_filter = route.shared(share_group)
        else:
            topic_filter = route.every_device()
        return self.subscribe(topic_filter, handler, qos=route.qos)

    def wait_subscribed(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds until the broker has answered every subscription
        of this link on the current connection; returns whether it has."""
        deadline = time.monotonic() + timeout
        with self._subs_lock:
            subscriptions = [s for s in self._subscriptions if s.active]
        return all(s.wait(max(deadline - time.monotonic(), 0.0)) for s in subscriptions)

    def drop(self, subscription: Subscription) -> None:
        """Stop handling ``subscription`` and subscribing it again; the broker keeps it (a
        persistent session still queues its messages for the next connection)."""
        with self._subs_lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)
            self._install(subscription.callback_filter)

    def unsubscribe(self, subscription: Subscription) -> None:
        """Tell the broker to stop sending ``subscription`` and do not subscribe it again;
        messages already on their way still reach its handler (:meth:`drop` stops that)."""
        subscription.active = False
        if self._connected.is_set():
            self._client.unsubscribe(subscription.topic_filter)

    def _install(self, callback_filter: str) -> None:
        """(Re)install paho's callback for ``callback_filter``: it fans each message out
        to every subscription of that filter (under ``_subs_lock``)."""
        if any(s.callback_filter == callback_filter for s in self._subscriptions):
            def dispatch(client: Any, userdata: Any, message: Any) -> None:
                self._dispatch(callback_filter, message)

            self._client.message_callback_add(callback_filter, dispatch)
        else:
            self._client.message_callback_remove(callback_filter)

    def _dispatch(self, callback_filter: str, message: Any) -> None:
        inbound = Inbound(message.topic, bytes(message.payload), message.qos,
                          bool(message.retain), message.mid)
        with self._subs_lock:
            handlers = [s.handler for s in self._subscriptions
                        if s.callback_filter == callback_filter]
        for handler in handlers:  # each guarded: one failing handler never stops the rest
            handler(inbound)

    def _send_subscribe(self, subscription: Subscription) -> None:
        with self._subs_lock:  # the SUBACK (network thread) waits until its mid is known
            subscription._granted.clear()
            result, mid = self._client.subscribe(subscription.topic_filter, qos=subscription.qos)
            if result == 0 and mid is not None:
                self._suback_waiting.setdefault(mid, []).append(subscription)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any,
                      props: Any) -> None:
        with self._subs_lock:
            subscriptions = self._suback_waiting.pop(mid, [])
        for subscription, reason in zip(subscriptions, reasons, strict=False):
            subscription.refused = str(reason) if reason.is_failure else None
            if subscription.refused:
                logger.error("the broker refused the subscription to %s: %s — check this "
                             "account's ACL", subscription.topic_filter, subscription.refused)
            subscription._granted.set()

    # --- publishing --------------------------------------------------------------------

    def publish(self, message: Message, device_id: str, *,
                expiry_s: float | None = None) -> Delivery:
        """Publish ``message`` on its route under ``device_id``'s root, with the QoS and
        retain flag its class declares. ``expiry_s``: the broker drops it (retained or
        queued) after that many seconds (MQTT v5 message expiry)."""
        route = message.route()
        return self._publish(route.topic(device_id), message.to_payload(), route.qos,
                             route.retain, expiry_s)

    def clear_retained(self, message: type[Message], device_id: str) -> Delivery:
        """Remove the retained ``message`` of ``device_id`` from the broker (an empty
        retained payload on its route)."""
        route = message.route()
        return self._publish(route.topic(device_id), b"", route.qos, True, None)

    def publish_raw(self, topic: str, payload: bytes | str, *, qos: int = 1,
                    retain: bool = False) -> Delivery:
        """Publish bytes on a topic outside the Teddy protocol (the broker's own control
        API, ``$CONTROL/...``). Teddy messages go through :meth:`publish`."""
        return self._publish(topic, payload, qos, retain, None)

    def _publish(self, topic: str, payload: bytes | str, qos: int, retain: bool,
                 expiry_s: float | None) -> Delivery:
        properties = _expiring(expiry_s) if expiry_s is not None else None
        info = self._client.publish(topic, payload, qos=qos, retain=retain,
                                    properties=properties)
        return Delivery(info, topic)

    def ack(self, mid: int, qos: int) -> None:
        """PUBACK message ``mid`` (a ``manual_ack`` link's messages wait for this)."""
        if qos > 0:
            self._client.ack(mid, qos)

    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _connect_properties(self) -> Any:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self._session_expiry
        return properties

    def connect(self) -> None:
        """Connect, start the network thread, and wait for CONNACK.

        Later losses are reconnected in the background with jittered backoff. Raises
        :class:`SyncError` naming the broker and the reason if this first attempt fails.
        """
        settings = self.settings
        self._connect_answered.clear()
        try:
            self._client.connect(settings.host, settings.port, settings.keepalive,
                                clean_start=self._clean_start,
                                properties=self._connect_properties())
        except ssl.SSLCertVerificationError as exc:
            raise SyncError(self._untrusted(exc)) from None
        except OSError as exc:
            raise SyncError(
                f"cannot reach the MQTT broker at {self._where()}: {exc} — check "
                "TEDDY_MQTT__HOST and TEDDY_MQTT__PORT and that the broker runs"
            ) from None
        self._client.loop_start()
        self._start_supervisor()
        if not self._connect_answered.wait(settings.connect_timeout):
            self.close()
            raise SyncError(f"no answer from the MQTT broker at {self._where()} within "
                            f"{settings.connect_timeout:g} s — check the broker and the network")
        reason = self._last_connect_reason
        if reason.is_failure:
            self.close()
            raise SyncError(
                f"the MQTT broker at {self._where()} refused the connection: {reason} — check "
                "TEDDY_MQTT__USERNAME/PASSWORD and the broker's ACL"
            )

    def start(self) -> None:
        """Connect in the background: retry with jittered backoff until it works. Never raises
        for an unreachable broker (the bear keeps its outbox and tries again)."""
        settings = self.settings
        self._client.connect_async(settings.host, settings.port, settings.keepalive,
                                  clean_start=self._clean_start,
                                  properties=self._connect_properties())
        self._lost.set()  # the supervisor makes the first attempt at once
        self._start_supervisor(first_now=True)

    def _start_supervisor(self, first_now: bool = False) -> None:
        self._supervisor = threading.Thread(
            target=self._supervise, args=(first_now,), name="mqtt-reconnect", daemon=True
        )
        self._supervisor.start()

    def _supervise(self, first_now: bool) -> None:
        while not self._closing.is_set():
            self._lost.wait(1.0)
            if self._attempt_stalled():
                logger.info("no CONNACK from %s within %g s; trying again", self._where(),
                            self.settings.connect_timeout)
            elif not self._lost.is_set() or self._closing.is_set():
                continue
            self._lost.clear()
            self._stop_network_thread()  # the old one has ended or ends now
            self._reconnect(immediately=first_now)
            first_now = False

    def _reconnect(self, immediately: bool) -> None:
        while not self._closing.is_set():
            if not immediately:
                delay = self.backoff.next_delay()
                logger.info("reconnecting to %s in %.2f s", self._where(), delay)
                if self._closing.wait(delay):
                    return
            immediately = False
            self._attempt_at = time.monotonic()
            try:
                self._client.reconnect()
            except ssl.SSLCertVerificationError as exc:
                logger.warning("%s", self._untrusted(exc))
                continue
            except OSError as exc:
                logger.log(self._retry_log_level, "MQTT broker at %s unreachable: %s — "
                           "trying again", self._where(), exc)
                continue
            self._client.loop_start()
            return

    def _untrusted(self, exc: ssl.SSLCertVerificationError) -> str:
        """One line for a broker certificate that TLS verification refused."""
        if exc.verify_code == HOSTNAME_MISMATCH:
            return (f"the broker's certificate at {self._where()} does not name host "
                    f"{self.settings.host!r} ({exc.verify_message}) — set TEDDY_MQTT__HOST to "
                    "a name the certificate carries")
        return (f"the broker's certificate at {self._where()} is not signed by the CA in "
                f"mqtt.tls.ca_file {self.settings.tls.ca_file} ({exc.verify_message}) — set "
                "TEDDY_MQTT__TLS__CA_FILE to the CA that signed the broker's certificate")

    def _stop_network_thread(self) -> None:
        # paho's network thread clears ``client._thread`` as it ends; if that happens between
        # loop_stop()'s None check and its join(), loop_stop raises AttributeError.
        try:
            self._client.loop_stop()
        except AttributeError:
            logger.debug("paho's network thread ended by itself during loop_stop()")

    def _attempt_stalled(self) -> bool:
        """An attempt that neither connected nor reported a loss in ``connect_timeout``
        (paho's network thread can end silently, e.g. on a socket it cannot select)."""
        attempt_at = self._attempt_at  # once: paho's thread clears it on CONNACK meanwhile
        if self._connected.is_set() or attempt_at is None or self._closing.is_set():
            return False
        return time.monotonic() - attempt_at > self.settings.connect_timeout

    def close(self) -> None:
        """Disconnect cleanly and stop the network threads. Idempotent."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._lost.set()  # wakes the supervisor, which sees the closing and ends
        try:
            if self._connected.is_set():
                self._client.disconnect()
        finally:
            self._stop_network_thread()
            if self._supervisor is not None and self._supervisor is not threading.current_thread():
                self._supervisor.join(5)
            self._connected.clear()

    def __enter__(self) -> MqttLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _expiring(seconds: float) -> Any:
    """MQTT v5 PUBLISH properties: the broker drops the message after ``seconds``."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    properties = Properties(PacketTypes.PUBLISH)
    properties.MessageExpiryInterval = max(1, math.ceil(seconds))
    return properties


def _check_tls_files(settings: MqttSettings) -> None:
    """Raise :class:`SyncError` naming the first TLS file that is missing or unusable."""
    from config.files import tls_file_problems

    problems = tls_file_problems(settings.tls)
    if problems:
        raise SyncError(problems[0])
