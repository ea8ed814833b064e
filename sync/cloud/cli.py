"""``teddy-cloud``: the cloud's command line, a thin layer over ``sync.cloud``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from config.cli_runner import new_parser, run
from config.errors import ConfigError
from config.settings import Settings

if TYPE_CHECKING:
    from sync.cloud.family_keys import Keyring

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The ``teddy-cloud`` argument parser with every sub-command."""
    parser, commands = new_parser(
        "teddy-cloud", "Teddy's cloud: the system of record and the fleet.")
    migrate = commands.add_parser("migrate", help="create or update the PostgreSQL schema")
    migrate.set_defaults(func=_migrate)
    ingest = commands.add_parser(
        "ingest", help="take bears' turns from MQTT into PostgreSQL, ack after commit"
    )
    ingest.set_defaults(func=_ingest)
    broker = commands.add_parser(
        "broker-metrics", help="serve the broker's $SYS figures, the edges' bridges and "
        "certificate expiry to Prometheus (issue 23)")
    broker.add_argument("--port", type=int, default=None,
                        help="port of /metrics on cloud.metrics_host (default 9430)")
    broker.add_argument("--tls-endpoint", action="append", default=[], metavar="HOST:PORT",
                        help="also watch the certificate served here (repeatable)")
    broker.add_argument("--cert-file", action="append", default=[], type=Path, metavar="PEM",
                        help="also watch this certificate file (repeatable)")
    broker.add_argument("--edge-stale-s", type=float, default=60.0, metavar="SECONDS",
                        help="an edge heard of for no longer than this counts as down "
                        "(default 60; edges report every sys_interval, 10 s)")
    broker.set_defaults(func=_broker_metrics)
    from sync.cloud.provision_cli import register as register_provision  # issue 6

    register_provision(commands)
    from sync.cloud.fleet_cli import register as register_fleet  # fleet ... (issue 7)

    register_fleet(commands)
    from sync.cloud.release_cli import register as register_release  # release ... (issue 9)

    register_release(commands)
    from sync.cloud.notify.cli import register as register_notify  # notify ... (issue 10)

    register_notify(commands)
    from sync.cloud.backup_cli import register as register_backup  # backup ... (issue 15)

    register_backup(commands)
    from sync.cloud.portal.cli import register as register_portal  # portal ... (issue 14)

    register_portal(commands)
    from sync.cloud.dev import register as register_dev  # dev (issue 22)

    register_dev(commands)
    from sync.cloud.setup_cli import register as register_setup  # setup, doctor (issue 23)

    register_setup(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``teddy-cloud``; returns the exit code."""
    return run(build_parser(), argv)


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from sync.cloud import db
    from sync.cloud.migrate import migrate

    with db.connect(settings.cloud) as conn:
        applied = migrate(conn)
    print(f"applied {len(applied)} migrations: {', '.join(applied)}" if applied
          else "schema is up to date")
    return 0


def instance_settings(settings: Settings) -> Settings:
    """``settings`` with this instance's metrics port: ``cloud.metrics_port + cloud.instance``
    (port 0, "any free port", stays 0)."""
    cloud = settings.cloud
    if cloud.instance is None or not cloud.metrics_port:
        return settings
    port = cloud.metrics_port + cloud.instance
    if port > 65535:
        raise ConfigError(f"cloud.metrics_port {cloud.metrics_port} + cloud.instance "
                          f"{cloud.instance} is past 65535 — lower cloud.metrics_port")
    logger.info("instance %d: metrics on port %d", cloud.instance, port)
    return settings.model_copy(update={"cloud": cloud.model_copy(update={"metrics_port": port})})


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from sync.cloud import family_keys
    from sync.cloud.ingest import Ingestor

    settings = instance_settings(settings)
    ring = family_keys.install(settings, create=False)  # portal (issue 14): seal per family
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if not _wait_for_cloud_key(settings, ring, stop):
        return 0
    with Ingestor(settings, keyring=ring) as ingestor:
        signal.signal(signal.SIGTERM, lambda *_: ingestor.stop())
        signal.signal(signal.SIGINT, lambda *_: ingestor.stop())
        ingestor.run()
    return 0


def _broker_metrics(args: argparse.Namespace, settings: Settings) -> int:
    import os
    import socket

    from config.fleet import edge_address
    from sync.cloud.broker_metrics import DEFAULT_PORT, BrokerMetrics

    port = DEFAULT_PORT if args.port is None else args.port
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a port — give one from 0 to 65535")
    if not 1.0 <= args.edge_stale_s <= 86400.0:
        raise ConfigError(f"--edge-stale-s {args.edge_stale_s:g} is out of range — give 1 to "
                          "86400 seconds (edges report every sys_interval, 10 s by default)")
    endpoints = [_host_port(text) for text in args.tls_endpoint]
    endpoints += [(host, edge_port) for host, edge_port, tls in
                  map(edge_address, settings.fleet.edge_brokers) if tls]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    client_id = f"monitor-{socket.gethostname()}-{os.getpid()}"
    with BrokerMetrics(settings.mqtt, client_id, tls_endpoints=endpoints,
                       cert_files=args.cert_file, edge_stale_s=args.edge_stale_s) as exporter:
        exporter.start(port, settings.cloud.metrics_host)
        stop.wait()
    return 0


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigError(f"--tls-endpoint {text!r} is not HOST:PORT — write it e.g. as "
                          "mqtt.example.com:8883")
    return host, int(port)


def _wait_for_cloud_key(settings: Settings, ring: Keyring, stop: threading.Event) -> bool:
    """Wait, as for a broker that is not up yet, until a configured cloud key can be read
    (the parent app makes it at its first start, or ``portal keygen``): ingest never stores
    a family's transcripts unsealed because of it. Returns False if stopped first."""
    from config.errors import CloudError
    from sync.cloud import family_keys

    attempt = 0
    while True:
        try:
            family_keys.require_configured_key(settings, ring)
            return True
        except CloudError as exc:
            if attempt % 12 == 0:  # once a minute
                logger.warning("%s; waiting for it", exc)
        attempt += 1
        if stop.wait(5.0):
            return False


if __name__ == "__main__":
    sys.exit(main())
