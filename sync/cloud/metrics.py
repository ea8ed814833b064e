"""Prometheus metrics of one ingest process, on their own registry.

Served at ``http://<host>:<cloud.metrics_port>/metrics`` when the port is set. Each
:class:`IngestMetrics` owns a registry, so several ingestors in one process (tests, the
load generator) never collide.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

from config.errors import CloudError

logger = logging.getLogger(__name__)


class MetricsPortError(CloudError):
    """The ``/metrics`` endpoint cannot listen where it was told to."""


class MetricsEndpoint:
    """``/metrics`` for one registry over HTTP; stops with an idempotent :meth:`close`.

    Shared by the ingest's own counters and the notifier's fleet gauges, so both fail the
    same clear way when their port is taken.
    """

    def __init__(self, registry: Any, setting: str, label: str = "metrics") -> None:
        self._registry = registry
        self._setting = setting
        self._label = label
        self._server: Any = None
        self.port: int | None = None
        """Port served on, once :meth:`serve` ran."""
        self.address: str | None = None
        """Address actually listened on, once :meth:`serve` ran."""

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve on ``host``:``port`` (0: a free port); returns the port. Raises
        :class:`MetricsPortError` naming the setting when the address is taken."""
        from prometheus_client import start_http_server

        try:
            self._server, _thread = start_http_server(port, addr=host, registry=self._registry)
        except OSError as exc:
            raise MetricsPortError(_port_problem(exc, host, port, self._setting)) from exc
        self.address, self.port = self._server.server_address[:2]
        logger.info("%s on http://%s:%d/metrics", self._label, host, self.port)
        return self.port

    def close(self) -> None:
        """Stop serving. Idempotent."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _port_problem(exc: OSError, host: str, port: int, setting: str) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (f"metrics port {host}:{port} is already in use by another process — set "
                f"{setting} to a free port (ingest instances @N listen on "
                f"cloud.metrics_port + N; see docs/operations.md)")
    if exc.errno == errno.EADDRNOTAVAIL:
        return (f"metrics host {host!r} is not an address of this machine — set "
                f"cloud.metrics_host to one of its addresses (default 127.0.0.1)")
    return f"cannot serve metrics on {host}:{port}: {exc.strerror} — check {setting}"


class IngestMetrics:
    """Counters, a histogram and gauges of one ingestor."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        """The registry these metrics live in."""
        self.messages = Counter("teddy_ingest_messages", "MQTT messages committed, by kind",
                                ["kind"], registry=self.registry)
        """Messages committed (``turns``, ``status``, ``health``, ``alerts``, ``invalid``)."""
        self.rows = Counter("teddy_ingest_turn_rows", "Turn rows inserted (new ones only)",
                            registry=self.registry)
        """Turn rows inserted."""
        self.duplicates = Counter("teddy_ingest_duplicate_rows",
                                  "Turn rows already present (resends)", registry=self.registry)
        """Turn rows skipped by ``ON CONFLICT DO NOTHING``."""
        self.dead_letters = Counter("teddy_ingest_dead_letters", "Messages dead-lettered",
                                    registry=self.registry)
        """Messages kept in ``dead_letters``."""
        self.dead_letters_dropped = Counter(
            "teddy_ingest_dead_letters_dropped",
            "Dead letters counted but not kept, by why (rate, device_cap, total_cap)",
            ["reason"], registry=self.registry)
        """Dead letters over the per-device rate or a cap."""
        self.dead_letters_pruned = Counter("teddy_ingest_dead_letters_pruned",
                                           "Dead letters deleted after cloud.dead_letter_keep_days",
                                           registry=self.registry)
        """Expired dead letters deleted."""
        self.refused = Counter("teddy_ingest_refused",
                               "Messages refused because their bear was over its rate, by kind",
                               ["kind"], registry=self.registry)
        """Messages refused by the per-bear rate limit (the bear sends them again later)."""
        self.unheld = Counter("teddy_ingest_unheld_batches",
                              "Turn batches refused for good: their bear is held by no family",
                              registry=self.registry)
        """Turn batches of bears no family holds (never paired, or revoked): told to drop."""
        self.db_retries = Counter("teddy_ingest_db_retries",
                                  "Transactions retried after a PostgreSQL failure",
                                  registry=self.registry)
        """Transactions retried."""
        self.batch_seconds = Histogram(
            "teddy_ingest_batch_seconds", "Seconds from taking a batch to its commit",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry)
        """Transaction latency, seconds."""
        self.lag = Gauge("teddy_ingest_lag_seconds",
                         "Age of the oldest turn in the last commit (turn creation to commit)",
                         registry=self.registry)
        """Turn creation to commit, seconds, for the oldest turn of the last batch."""
        self.inbox = Gauge("teddy_ingest_inbox", "Messages received and not yet committed",
                           registry=self.registry)
        """Messages waiting in memory for their transaction."""
        self._endpoint = MetricsEndpoint(self.registry, "cloud.metrics_port")

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` on ``host``:``port`` (0: a free port); returns the port."""
        return self._endpoint.serve(port, host)

    @property
    def port(self) -> int | None:
        """Port the ``/metrics`` endpoint listens on, once served."""
        return self._endpoint.port

    @property
    def address(self) -> str | None:
        """Address actually listened on, once served."""
        return self._endpoint.address

    def close(self) -> None:
        """Stop serving. Idempotent."""
        self._endpoint.close()

    def render(self) -> bytes:
        """The exposition text, as ``/metrics`` would serve it."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
