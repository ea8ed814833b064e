"""Fleet-level gauges for Prometheus, read from PostgreSQL at scrape time (cached).

What the alert rules in ``config/examples/prometheus/teddy-rules.yml`` and the Grafana
dashboards need beyond each process's own counters: bears online (by firmware), open alerts
by kind, notification deliveries by state, wellbeing alerts a parent has not been told of,
the age of the last good backup, and WAL archiving (``pg_stat_archiver``: what a
point-in-time restore can reach). A handful of indexed aggregate queries, run at most
once per ``cache_s`` however often Prometheus scrapes; if PostgreSQL cannot be read,
``teddy_fleet_db_up`` is 0 and the last values are not repeated.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from sync.cloud.metrics import MetricsEndpoint

logger = logging.getLogger(__name__)

QUERIES = {
    "firmware": "SELECT firmware, online, count(*) FROM devices GROUP BY firmware, online",
    "alerts": "SELECT kind, severity, count(*) FROM alerts WHERE cleared_at IS NULL "
              "GROUP BY kind, severity",
    "deliveries": "SELECT channel, status, count(*) FROM notification_deliveries "
                  "GROUP BY channel, status",
    "undelivered": """
        SELECT count(*) FROM alerts a
        WHERE a.kind LIKE 'wellbeing.%%' AND a.raised_at > now() - interval '1 day'
          AND a.raised_at < now() - make_interval(secs => %(grace)s)
          AND NOT EXISTS (SELECT 1 FROM notification_deliveries d WHERE d.alert_id = a.id
                          AND d.event = 'raised' AND d.status IN ('delivered', 'deduplicated'))
    """,
    "backup": "SELECT extract(epoch FROM max(finished_at)) FROM backup_runs WHERE ok",
    "backup_failed": "SELECT extract(epoch FROM max(finished_at)) FROM backup_runs WHERE NOT ok",
    "archiver": "SELECT archived_count, failed_count, extract(epoch FROM last_archived_time), "
                "extract(epoch FROM last_failed_time), current_setting('archive_mode') "
                "FROM pg_stat_archiver",
}
LIVE_STATES = ("pending", "retrying")
"""Delivery states that are a current backlog (a gauge); the others only ever grow."""


class FleetCollector:
    """A ``prometheus_client`` collector of fleet gauges from one PostgreSQL DSN."""

    def __init__(self, dsn: str, cache_s: float = 15.0, undelivered_grace_s: float = 300.0):
        self._dsn = dsn
        self._cache_s = cache_s
        self._grace = undelivered_grace_s
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._rows: dict[str, list[tuple]] | None = None
        self._conn: Any = None

    def _read(self) -> dict[str, list[tuple]] | None:
        import psycopg

        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=5)
            params = {"grace": self._grace}
            return {name: self._conn.execute(sql, params if "%(" in sql else None).fetchall()
                    for name, sql in QUERIES.items()}
        except psycopg.Error as exc:
            logger.warning("fleet gauges: cannot read PostgreSQL (%s)", type(exc).__name__)
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            return None

    def rows(self) -> dict[str, list[tuple]] | None:
        """The query results, at most ``cache_s`` old; None when PostgreSQL failed."""
        with self._lock:
            if time.monotonic() - self._at >= self._cache_s:
                self._rows = self._read()
                self._at = time.monotonic()
            return self._rows

    def close(self) -> None:
        """Close the connection. Idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def collect(self) -> Iterator[Any]:
        """The metric families (called by the registry on every scrape)."""
        from prometheus_client.core import GaugeMetricFamily

        rows = self.rows()
        up = GaugeMetricFamily("teddy_fleet_db_up",
                               "1 if the fleet gauges could read PostgreSQL at the last look")
        up.add_metric([], 0.0 if rows is None else 1.0)
        yield up
        if rows is None:
            return
        yield from _fleet_families(rows)
        yield from _notify_families(rows)
        yield from _backup_families(rows)
        yield from _archiver_families(rows)


def _fleet_families(rows: dict[str, list[tuple]]) -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily

    bears = GaugeMetricFamily("teddy_fleet_bears", "Bears known to the cloud, by online state",
                              labels=["state"])
    online = GaugeMetricFamily("teddy_fleet_bears_online",
                               "Bears online now, by firmware version", labels=["firmware"])
    totals = {"online": 0, "offline": 0}
    by_firmware: dict[str, int] = {}
    for firmware, is_online, count in rows["firmware"]:
        totals["online" if is_online else "offline"] += count
        if is_online:
            by_firmware[firmware or "unknown"] = by_firmware.get(firmware or "unknown", 0) + count
    for state, count in totals.items():
        bears.add_metric([state], count)
    for firmware, count in sorted(by_firmware.items()):
        online.add_metric([firmware], count)
    alerts = GaugeMetricFamily("teddy_fleet_open_alerts", "Alerts raised and not cleared",
                               labels=["kind", "severity"])
    for kind, severity, count in rows["alerts"]:
        alerts.add_metric([kind, severity], count)
    yield from (bears, online, alerts)


def _notify_families(rows: dict[str, list[tuple]]) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    backlog = GaugeMetricFamily("teddy_notify_deliveries_pending",
                                "Deliveries waiting to be sent or retried", labels=["channel"])
    done = CounterMetricFamily("teddy_notify_deliveries",
                               "Deliveries that reached a final state, by channel and state",
                               labels=["channel", "status"])
    pending: dict[str, int] = {}
    for channel, status, count in rows["deliveries"]:
        if status in LIVE_STATES:
            pending[channel] = pending.get(channel, 0) + count
        else:
            done.add_metric([channel, status], count)
    for channel, count in sorted(pending.items()):
        backlog.add_metric([channel], count)
    undelivered = GaugeMetricFamily(
        "teddy_notify_wellbeing_undelivered",
        "Wellbeing alerts of the last day raised over 5 minutes ago that no parent channel "
        "has delivered")
    undelivered.add_metric([], rows["undelivered"][0][0])
    yield from (backlog, done, undelivered)


def _backup_families(rows: dict[str, list[tuple]]) -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily

    last = GaugeMetricFamily("teddy_backup_last_success_timestamp_seconds",
                             "Unix time the last good backup finished (0: none yet)")
    last.add_metric([], float(rows["backup"][0][0] or 0.0))
    failed = GaugeMetricFamily("teddy_backup_last_failure_timestamp_seconds",
                               "Unix time the last failed backup finished (0: none)")
    failed.add_metric([], float(rows["backup_failed"][0][0] or 0.0))
    yield from (last, failed)


def _archiver_families(rows: dict[str, list[tuple]]) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    archived, failed, last_ok, last_failed, mode = rows["archiver"][0]
    done = CounterMetricFamily("teddy_pg_wal_archived", "WAL segments archived since the "
                               "statistics were reset (pg_stat_archiver)")
    done.add_metric([], archived)
    failures = CounterMetricFamily("teddy_pg_wal_archive_failed",
                                   "Failed archive_command runs (pg_stat_archiver)")
    failures.add_metric([], failed)
    ok_at = GaugeMetricFamily("teddy_pg_wal_last_archived_timestamp_seconds",
                              "Unix time the last WAL segment was archived (0: never)")
    ok_at.add_metric([], float(last_ok or 0.0))
    failed_at = GaugeMetricFamily("teddy_pg_wal_last_failed_timestamp_seconds",
                                  "Unix time archive_command last failed (0: never)")
    failed_at.add_metric([], float(last_failed or 0.0))
    mode_on = GaugeMetricFamily("teddy_pg_archive_mode_on",
                                "1 if archive_mode is on (point-in-time restore possible)")
    mode_on.add_metric([], 1.0 if mode in ("on", "always") else 0.0)
    yield from (done, failures, ok_at, failed_at, mode_on)


class FleetMetricsServer:
    """``/metrics`` with the fleet gauges on its own registry; a context manager."""

    def __init__(self, dsn: str, cache_s: float = 15.0) -> None:
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry()
        """The registry the collector is in."""
        self.collector = FleetCollector(dsn, cache_s)
        """The fleet collector."""
        self.registry.register(self.collector)
        self._endpoint = MetricsEndpoint(self.registry, "notify.metrics_port",
                                         "fleet metrics")

    def __enter__(self) -> FleetMetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` on ``host``:``port`` (0: a free one); returns the port. Loopback
        unless told otherwise: the endpoint has no authentication."""
        return self._endpoint.serve(port, host)

    @property
    def port(self) -> int | None:
        """Port served on, once :meth:`serve` ran."""
        return self._endpoint.port

    def close(self) -> None:
        """Stop serving and close the connection. Idempotent."""
        self._endpoint.close()
        self.collector.close()
