"""The one place a paho-mqtt client is built from config (MQTT v5, TLS, credentials, will).

Both ends use :class:`MqttLink`. Callbacks installed through :meth:`MqttLink.on` are
wrapped so an exception is logged with its traceback and counted instead of vanishing
inside paho's network thread.

Reconnecting is ours, not paho's: paho's own retry doubles its delay without jitter, so a
fleet would come back in lockstep after a broker restart. The paho client is built with
``reconnect_on_failure=False``; when its network thread ends on a lost connection, a small
supervisor thread waits a full-jitter delay (:class:`sync.backoff.Backoff`) and reconnects.
"""

from __future__ import annotations

import functools
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from config.errors import SyncError
from config.settings import SERVICE_ACCOUNT_PATTERN, MqttSettings
from sync.backoff import Backoff

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


def service_client_id(settings: MqttSettings) -> str | None:
    """The client id a long-running cloud service (ingest) connects with: its account's own
    name, to which the broker binds ``svc.<name>`` ingest accounts; None when ``settings``
    log in as no service."""
    name = settings.username
    return name if name is not None and SERVICE_ACCOUNT_PATTERN.match(name) else None


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
        backoff: Backoff | None = None,
        retry_log_level: int = logging.INFO,
    ) -> None:
        import paho.mqtt.client as mqtt

        self.settings = settings
        """The broker settings this link was built from."""
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
            reconnect_on_failure=False,
        )
        """The underlying paho client."""
        self.callback_errors = 0
        """How many callback invocations raised (each was logged with its traceback)."""
        self.connects = 0
        """Successful connections (CONNACK accepted) since the link was built."""
        self.backoff = backoff or Backoff(0.5, 60.0)
        """Delays between reconnect attempts (full jitter)."""
        self._clean_start = clean_start
        self._session_expiry = session_expiry
        self._connected = threading.Event()
        self._connect_answered = threading.Event()
        self._lost = threading.Event()
        self._closing = threading.Event()
        self._connect_hooks: list[Callable[[], None]] = []
        self._last_connect_reason: Any = None
        self._supervisor: threading.Thread | None = None
        self._attempt_at: float | None = None
        self._retry_log_level = retry_log_level
        self._configure(will)

    def _configure(self, will: LastWill | None) -> None:
        settings, client = self.settings, self.client
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

    def wait_connected(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a live connection; returns whether there is one."""
        return self._connected.wait(timeout)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._last_connect_reason = reason
        if not reason.is_failure:
            self.connects += 1
            self._attempt_at = None
            self.backoff.reset()
            self._connected.set()
            logger.info("connected to MQTT broker %s:%s", self.settings.host, self.settings.port)
            for hook in self._connect_hooks:
                hook()
        self._connect_answered.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                       props: Any) -> None:
        self._connected.clear()
        if not self._closing.is_set():
            logger.warning("disconnected from MQTT broker: %s", reason)
            self._lost.set()

    def after_connect(self, hook: Callable[[], None]) -> None:
        """Run ``hook()`` after every successful (re)connect, e.g. to subscribe again."""
        self._connect_hooks.append(hook)

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
            self.client.connect(settings.host, settings.port, settings.keepalive,
                                clean_start=self._clean_start,
                                properties=self._connect_properties())
        except ssl.SSLCertVerificationError as exc:
            raise SyncError(self._untrusted(exc)) from None
        except OSError as exc:
            raise SyncError(
                f"cannot reach the MQTT broker at {self._where()}: {exc} — check "
                "TEDDY_MQTT__HOST and TEDDY_MQTT__PORT and that the broker runs"
            ) from None
        self.client.loop_start()
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
        self.client.connect_async(settings.host, settings.port, settings.keepalive,
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
                self.client.reconnect()
            except ssl.SSLCertVerificationError as exc:
                logger.warning("%s", self._untrusted(exc))
                continue
            except OSError as exc:
                logger.log(self._retry_log_level, "MQTT broker at %s unreachable: %s — "
                           "trying again", self._where(), exc)
                continue
            self.client.loop_start()
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
            self.client.loop_stop()
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
                self.client.disconnect()
        finally:
            self._stop_network_thread()
            if self._supervisor is not None and self._supervisor is not threading.current_thread():
                self._supervisor.join(5)
            self._connected.clear()

    def __enter__(self) -> MqttLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_tls_files(settings: MqttSettings) -> None:
    """Raise :class:`SyncError` naming the first TLS file that is missing or unusable."""
    from config.files import tls_file_problems

    problems = tls_file_problems(settings.tls)
    if problems:
        raise SyncError(problems[0])
