"""``teddy-cloud notify ...``: run the notifier, look at the delivery log.

Handlers take ``(args, settings)`` and return the exit code, like every CLI handler.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading

from config.errors import CloudError
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

    from sync.cloud import db, emails, family_keys
    from sync.cloud.fleet_metrics import FleetMetricsServer
    from sync.cloud.notify.dispatcher import Notifier

    with ExitStack() as stack:
        conn = stack.enter_context(db.connect(settings.cloud))
        if settings.notify.metrics_port is not None and not args.once:
            metrics = stack.enter_context(
                FleetMetricsServer(settings.cloud.pg_dsn.get_secret_value()))
            metrics.serve(settings.notify.metrics_port, settings.cloud.metrics_host)
        ring = family_keys.install(settings, create=False)  # parents' addresses: sealed
        if settings.portal.cloud_key_file is not None and not ring.ready():
            raise CloudError(f"the cloud key {settings.portal.cloud_key_file} cannot be read: "
                             "parents' e-mail addresses are sealed under it — give it to the "
                             "notifier (LoadCredential=portal-cloud.key)")
        emails.migrate(conn)
        notifier = Notifier(settings.notify, conn)
        if args.once:
            told = _tell_release_requests(settings, conn)
            counts = notifier.run_once()
            if told:
                counts["release_requests_told"] = told
            print(json.dumps(dict(sorted(counts.items()))))
            return 0
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        threading.Thread(target=_release_rounds, args=(settings, stop), daemon=True).start()
        notifier.run(stop)
    return 0


def _tell_release_requests(settings: Settings, conn) -> int:
    """Mail the holding families of release requests the keyless fleet service opened
    (:func:`sync.cloud.custody.tell_pending`); how many were told."""
    from sync.cloud import custody
    from sync.cloud.portal.auth import send_mail

    if not settings.portal.mail_channel:
        return 0
    return custody.tell_pending(conn, lambda to, subject, body: send_mail(settings, to, subject,
                                                                          body))


def _release_rounds(settings: Settings, stop: threading.Event) -> None:
    """:func:`_tell_release_requests` every poll interval, on a connection of its own."""
    import logging

    from sync.cloud import db

    conn = None
    while not stop.wait(settings.notify.poll_interval_s):
        try:
            conn = conn or db.connect(settings.cloud)
            _tell_release_requests(settings, conn)
        except Exception:  # one bad round never stops the notifier
            logging.getLogger(__name__).exception("telling families of release requests "
                                                  "failed; trying again next interval")
            if conn is not None:
                conn.close()
            conn = None
    if conn is not None:
        conn.close()


def _log(args: argparse.Namespace, settings: Settings) -> int:
    from sync.cloud import db

    with db.connect(settings.cloud) as conn:
        rows = conn.execute(LOG_QUERY, {"status": args.status, "limit": args.limit}).fetchall()
    names = ("id", "device_id", "kind", "event", "channel", "status", "attempts", "last_error",
             "created_at", "delivered_at")
    for row in rows:
        print(json.dumps(dict(zip(names, row, strict=True)), default=str))
    return 0
