"""``teddy-cloud``: the cloud's command line, a thin layer over ``sync.cloud``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
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
