"""The broker's own figures for Prometheus: Mosquitto's ``$SYS`` tree, the edges' bridges
and when the TLS certificates clients see expire.

``teddy-cloud broker-metrics`` (unit ``teddy-cloud-broker-metrics``) logs in to the core
broker as a service account of role ``monitor`` (``$SYS/broker/#`` and ``teddy/edges/+/#``
only), keeps the last value of each topic, and serves them on ``/metrics``:

- ``teddy_broker_up``: 1 while connected and ``$SYS`` came within ``stale_s`` (the broker
  publishes it every ``sys_interval``, 10 s by default); 0 when the broker is down, refuses
  the account, or hangs. Mosquitto's clients, messages, drops and store from ``$SYS``.
- ``teddy_edge_bridge_up{edge}`` and ``teddy_edge_clients_connected{edge}``: each edge's
  bridge publishes its state to ``teddy/edges/<edge>/bridge`` (retained ``1``; ``0`` as its
  will when the link drops) and forwards its own ``$SYS/broker/clients/connected`` (the
  bears connected to that edge) and ``uptime`` (a heartbeat every ``sys_interval``) under
  ``teddy/edges/<edge>/`` (``config/examples/edge-broker.conf``). An edge heard of for no
  ``edge_stale_s`` counts as down even if its last word was ``1`` (a retained state that
  outlived a core restart while the edge was gone).
- ``teddy_cert_expiry_timestamp_seconds{source}``: the notAfter of the certificate a TLS
  endpoint presents (the broker's own when ``mqtt.tls`` is on, each ``mqtts://`` edge, any
  ``--tls-endpoint``) or a PEM file (``--cert-file``); ``teddy_cert_probe_ok{source}`` 0
  when it could not be read. Looked at once per ``cert_cache_s``.

Every payload is range-checked: a number that does not parse, is negative or not finite is
counted in ``teddy_broker_bad_payloads_total`` and ignored.
"""

from __future__ import annotations

import logging
import math
import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.settings import MqttSettings
from sync.cloud.metrics import MetricsEndpoint

logger = logging.getLogger(__name__)

SYS_FILTER = "$SYS/broker/#"
"""Mosquitto's own figures."""
EDGE_ROOT = "teddy/edges"
"""Where the edges' bridges report (``config/examples/edge-broker.conf``)."""
EDGE_FILTER = f"{EDGE_ROOT}/+/#"
EDGE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
DEFAULT_PORT = 9430
"""Where ``teddy-cloud broker-metrics`` serves by default (``cloud.metrics_host``)."""


@dataclass(frozen=True)
class SysFigure:
    """One ``$SYS`` topic exported as one metric."""

    name: str
    """The metric's name (a counter's without ``_total``)."""
    help: str
    """Its help text."""
    counter: bool = False
    """Whether it only ever grows (while the broker runs)."""


SYS_FIGURES = {
    "$SYS/broker/uptime": SysFigure("teddy_broker_uptime_seconds", "Seconds the broker has run"),
    "$SYS/broker/clients/connected": SysFigure("teddy_broker_clients_connected",
                                               "Clients connected to the broker now"),
    "$SYS/broker/clients/maximum": SysFigure("teddy_broker_clients_maximum",
                                             "Most clients connected at once since start"),
    "$SYS/broker/messages/received": SysFigure(
        "teddy_broker_messages_received", "MQTT packets received since start", counter=True),
    "$SYS/broker/messages/sent": SysFigure(
        "teddy_broker_messages_sent", "MQTT packets sent since start", counter=True),
    "$SYS/broker/publish/messages/dropped": SysFigure(
        "teddy_broker_messages_dropped",
        "PUBLISH messages dropped (a client's queue full: max_queued_messages)", counter=True),
    "$SYS/broker/store/messages/count": SysFigure(
        "teddy_broker_stored_messages", "Messages held in the broker's store (retained, queued)"),
    "$SYS/broker/subscriptions/count": SysFigure("teddy_broker_subscriptions",
                                                 "Subscriptions on the broker"),
}
"""The ``$SYS`` topics exported; every other one is ignored."""


def parse_figure(payload: bytes) -> float | None:
    """The number at the start of a ``$SYS`` payload (``"3054 seconds"``, ``"12"``); None if
    it is not a finite, non-negative number."""
    try:
        value = float(payload.decode("ascii").split(" ", 1)[0])
    except (UnicodeDecodeError, ValueError, IndexError):
        return None
    return value if math.isfinite(value) and value >= 0 else None


class BrokerState:
    """The last figures heard from the broker and the edges; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sys: dict[str, float] = {}
        """Last value of each exported ``$SYS`` topic."""
        self.bridges: dict[str, float] = {}
        """Edge name -> 1.0 (bridge up) or 0.0."""
        self.edge_clients: dict[str, float] = {}
        """Edge name -> clients connected to that edge."""
        self.bad_payloads = 0
        """Payloads refused (not a number, negative, not finite, or a bad edge name)."""
        self.last_sys_at = float("-inf")
        """``time.monotonic()`` of the last ``$SYS`` message."""
        self.edge_seen: dict[str, float] = {}
        """Edge name -> ``time.monotonic()`` of its last report."""

    def take(self, topic: str, payload: bytes) -> None:
        """Record one message (called in the MQTT thread)."""
        with self._lock:
            if topic.startswith("$SYS/"):
                self.last_sys_at = time.monotonic()
                if topic in SYS_FIGURES:
                    self._store(self.sys, topic, payload)
                return
            parts = topic.split("/")
            if len(parts) < 4 or not EDGE_NAME.fullmatch(parts[2]):
                self.bad_payloads += 1
                return
            edge, rest = parts[2], "/".join(parts[3:])
            self.edge_seen[edge] = time.monotonic()
            if rest == "bridge":
                self._store(self.bridges, edge, payload, allowed={0.0, 1.0})
            elif rest == "clients/connected":
                self._store(self.edge_clients, edge, payload)

    def _store(self, into: dict[str, float], key: str, payload: bytes,
               allowed: set[float] | None = None) -> None:
        value = parse_figure(payload)
        if value is None or (allowed is not None and value not in allowed):
            self.bad_payloads += 1
            logger.warning("broker metrics: ignored a bad payload for %s", key)
            return
        into[key] = value

    def snapshot(self) -> tuple[dict[str, float], dict[str, float], dict[str, float], int, float]:
        """Copies of the figures, the bad-payload count and the last ``$SYS`` time."""
        with self._lock:
            return (dict(self.sys), dict(self.bridges), dict(self.edge_clients),
                    self.bad_payloads, self.last_sys_at)

    def edges_silent(self, stale_s: float) -> set[str]:
        """Edges not heard of for over ``stale_s`` seconds."""
        now = time.monotonic()
        with self._lock:
            return {edge for edge, seen in self.edge_seen.items() if now - seen > stale_s}


def peer_certificate_expiry(host: str, port: int, timeout: float = 5.0) -> float:
    """Unix time the certificate served at ``host``:``port`` expires. The chain is not
    verified here (an expired certificate must still be read); OSError if none is served."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise OSError(f"{host}:{port} served no certificate")
    return pem_expiry(ssl.DER_cert_to_PEM_cert(der))


def pem_expiry(pem: str) -> float:
    """Unix time a PEM certificate expires (read by ``openssl x509``); OSError if unreadable."""
    result = subprocess.run(["openssl", "x509", "-noout", "-enddate"], input=pem, text=True,
                            capture_output=True, timeout=10)
    if result.returncode != 0 or "=" not in result.stdout:
        raise OSError(f"not a PEM certificate: {result.stderr.strip()[:200]}")
    return float(ssl.cert_time_to_seconds(result.stdout.strip().split("=", 1)[1]))


class CertificateProbe:
    """When each watched certificate expires, looked at once per ``cache_s``."""

    def __init__(self, endpoints: Sequence[tuple[str, int]], files: Sequence[Path],
                 cache_s: float = 300.0) -> None:
        self._endpoints = list(endpoints)
        self._files = list(files)
        self._cache_s = cache_s
        self._at = float("-inf")
        self._expiry: dict[str, float | None] = {}
        self._lock = threading.Lock()

    def expiry(self) -> dict[str, float | None]:
        """Source (``host:port`` or a path) -> Unix expiry time, None where unreadable."""
        with self._lock:
            if time.monotonic() - self._at >= self._cache_s:
                self._expiry = self._look()
                self._at = time.monotonic()
            return dict(self._expiry)

    def _look(self) -> dict[str, float | None]:
        found: dict[str, float | None] = {}
        for host, port in self._endpoints:
            found[f"{host}:{port}"] = _or_none(lambda h=host, p=port: peer_certificate_expiry(h, p),
                                               f"{host}:{port}")
        for path in self._files:
            found[str(path)] = _or_none(lambda p=path: pem_expiry(p.read_text()), str(path))
        return found


def _or_none(read: Any, source: str) -> float | None:
    try:
        return float(read())
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        logger.warning("certificate of %s unreadable: %s", source, exc)
        return None


class BrokerCollector:
    """A ``prometheus_client`` collector over a :class:`BrokerState` and a
    :class:`CertificateProbe`."""

    def __init__(self, state: BrokerState, connected: Any, certificates: CertificateProbe,
                 stale_s: float = 30.0, edge_stale_s: float = 60.0) -> None:
        self._state = state
        self._connected = connected
        self._certificates = certificates
        self._stale_s = stale_s
        self._edge_stale_s = edge_stale_s

    def collect(self) -> Iterator[Any]:
        """The metric families (called by the registry on every scrape)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        sys_values, bridges, edge_clients, bad, last_sys = self._state.snapshot()
        fresh = self._connected() and time.monotonic() - last_sys <= self._stale_s
        up = GaugeMetricFamily("teddy_broker_up", "1 if connected to the broker and its $SYS "
                               "tree is fresh (within stale_s)")
        up.add_metric([], 1.0 if fresh else 0.0)
        yield up
        for topic, figure in SYS_FIGURES.items():
            family = (CounterMetricFamily if figure.counter else GaugeMetricFamily)(
                figure.name, figure.help)
            if fresh and topic in sys_values:
                family.add_metric([], sys_values[topic])
            yield family
        bridge = GaugeMetricFamily("teddy_edge_bridge_up",
                                   "1 while the edge's bridge to the core is connected",
                                   labels=["edge"])
        silent = self._state.edges_silent(self._edge_stale_s)
        for edge, value in sorted(bridges.items()):
            bridge.add_metric([edge], 0.0 if edge in silent else value)
        clients = GaugeMetricFamily("teddy_edge_clients_connected",
                                    "Clients (bears) connected to the edge, from its $SYS",
                                    labels=["edge"])
        for edge, value in sorted(edge_clients.items()):
            clients.add_metric([edge], value)
        refused = CounterMetricFamily("teddy_broker_bad_payloads",
                                      "$SYS or edge payloads ignored as out of range")
        refused.add_metric([], bad)
        yield from (bridge, clients, refused)
        yield from self._certificate_families()

    def _certificate_families(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        expiry = GaugeMetricFamily("teddy_cert_expiry_timestamp_seconds",
                                   "Unix time the certificate expires", labels=["source"])
        probe = GaugeMetricFamily("teddy_cert_probe_ok",
                                  "1 if the certificate could be read at the last look",
                                  labels=["source"])
        for source, when in sorted(self._certificates.expiry().items()):
            probe.add_metric([source], 0.0 if when is None else 1.0)
            if when is not None:
                expiry.add_metric([source], when)
        yield from (expiry, probe)


class BrokerMetrics:
    """The exporter: one MQTT link to the broker, its collector and ``/metrics``. A context
    manager; :meth:`close` is idempotent."""

    def __init__(self, mqtt: MqttSettings, client_id: str, *,
                 tls_endpoints: Sequence[tuple[str, int]] = (), cert_files: Sequence[Path] = (),
                 stale_s: float = 30.0, edge_stale_s: float = 60.0,
                 cert_cache_s: float = 300.0) -> None:
        from prometheus_client import CollectorRegistry

        from sync.client import MqttLink

        self.state = BrokerState()
        """What was heard."""
        self._link = MqttLink(mqtt, client_id=client_id)
        endpoints = list(tls_endpoints)
        if mqtt.tls.enabled:
            endpoints.insert(0, (mqtt.host, mqtt.port))
        self.registry = CollectorRegistry()
        """The registry served."""
        self.registry.register(BrokerCollector(
            self.state, lambda: self._link.connected,
            CertificateProbe(endpoints, cert_files, cert_cache_s), stale_s, edge_stale_s))
        self._endpoint = MetricsEndpoint(self.registry, "broker-metrics --port",
                                         "broker metrics")
        for topic_filter in (SYS_FILTER, EDGE_FILTER):
            self._link.subscribe(topic_filter, self._take, qos=0)

    def _take(self, inbound: Any) -> None:
        self.state.take(inbound.topic, inbound.payload)

    def __enter__(self) -> BrokerMetrics:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` (0: a free port) and connect to the broker in the background
        (retrying while it is down: that is what ``teddy_broker_up`` 0 reports). Returns the
        port served on."""
        served = self._endpoint.serve(port, host)
        self._link.start()
        return served

    def close(self) -> None:
        """Stop serving and disconnect. Idempotent."""
        self._endpoint.close()
        self._link.close()
