"""``teddy-cloud notify ...``: run the notifier, look at the delivery log.

Handlers take ``(args, settings)`` and return the exit code, like every CLI handler.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading

from config.settings import Settings

LOG_QUERY = """
SELECT d.id, a.device_id, a.kind, d.event, d.channel, d.status, d.attempts, d.last_error,
       d.created_at, d.delivered_at
FROM notification_deliveries d JOIN alerts a ON a.id = d.alert_id
WHERE (%(status)s::text IS NULL OR d.status = %(status)s)
ORDER BY d.id DESC LIMIT %(limit)s
"""


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``notify`` command to the ``teddy-cloud`` CLI."""
    notify = commands.add_parser("notify", help="send alert notifications; see the delivery log")
    sub = notify.add_subparsers(dest="action", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="fan alerts out to the configured channels until stopped")
    run.add_argument("--once", action="store_true", help="one round, then exit")
    run.set_defaults(func=_run)
    log = sub.add_parser("log", help="the latest deliveries as JSON lines")
    log.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    log.add_argument("--status", choices=["pending", "retrying", "delivered", "failed",
                                          "deduplicated", "rate_limited"],
                     help="only deliveries in this state")
    log.set_defaults(func=_log)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from contextlib import ExitStack

    from sync.cloud import db, family_keys
    from sync.cloud.fleet_metrics import FleetMetricsServer
    from sync.cloud.notify.dispatcher import Notifier

    family_keys.install(settings, create=False)  # opens the parents' sealed addresses
    with ExitStack() as stack:
        conn = stack.enter_context(db.connect(settings.cloud))
        if settings.notify.metrics_port is not None and not args.once:
            metrics = stack.enter_context(
                FleetMetricsServer(settings.cloud.pg_dsn.get_secret_value()))
            metrics.serve(settings.notify.metrics_port, settings.cloud.metrics_host)
        notifier = Notifier(settings.notify, conn)
        if args.once:
            counts = notifier.run_once()
            print(json.dumps(dict(sorted(counts.items()))))
            return 0
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        notifier.run(stop)
    return 0


def _log(args: argparse.Namespace, settings: Settings) -> int:
    from sync.cloud import db

    with db.connect(settings.cloud) as conn:
        rows = conn.execute(LOG_QUERY, {"status": args.status, "limit": args.limit}).fetchall()
    names = ("id", "device_id", "kind", "event", "channel", "status", "attempts", "last_error",
             "created_at", "delivered_at")
    for row in rows:
        print(json.dumps(dict(zip(names, row, strict=True)), default=str))
    return 0
