"""``teddy-cloud portal``: serve the parent app; ``portal retention``: the daily sweep (and
the monthly ``turns`` partitions: made ahead, dropped whole past every retention)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from config.errors import CloudError
from config.settings import Settings

logger = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``portal`` to the ``teddy-cloud`` parser."""
    portal = commands.add_parser("portal", help="the parent web app (serve, retention)")
    portal.set_defaults(func=_serve)
    sub = portal.add_subparsers(dest="portal_action", metavar="ACTION")
    sub.add_parser("serve", help="serve the app on portal.host:portal.port (the default)"
                   ).set_defaults(func=_serve)
    sub.add_parser("retention", help="make the turns partitions of the months ahead, drop"
                   " the ones past every retention, delete transcripts older than each"
                   " family's retention").set_defaults(func=_retention)
    keygen = sub.add_parser("keygen", help="make the cloud key that seals every family's "
                            "transcripts (once, before ingest and the app first start)")
    keygen.add_argument("--out", type=Path, default=None,
                        help="where to write it (default: portal.cloud_key_file)")
    keygen.set_defaults(func=_keygen)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    try:
        import uvicorn

        from sync.cloud.portal.app import create_app
    except ImportError as exc:
        raise CloudError(f"the parent app needs the cloud extra ({exc.name} is missing) — "
                         "run: pip install 'teddy[cloud]'") from None

    app = create_app(settings)
    logger.info("parent app on http://%s:%d", settings.portal.host, settings.portal.port)
    print(f"parent app listening on http://{settings.portal.host}:{settings.portal.port}",
          flush=True)
    import threading

    from sync.cloud.portal.undo import run_forever

    stop = threading.Event()  # deletions past their undo window, also with no page open
    worker = threading.Thread(target=run_forever, args=(settings, stop), daemon=True,
                              name="due-deletions")
    worker.start()
    try:
        uvicorn.run(app, host=settings.portal.host, port=settings.portal.port,
                    log_level="warning", proxy_headers=False, server_header=False)
    finally:
        stop.set()
        worker.join(5)
    return 0


def _retention(args: argparse.Namespace, settings: Settings) -> int:
    from sync.cloud import db, partitions
    from sync.cloud.portal.service import retention_sweep

    with db.connect(settings.cloud) as conn:
        made = partitions.make_ahead(conn)
        cutoff = partitions.retention_cutoff(conn, settings.portal.retention_days)
        dropped = partitions.drop_expired(conn, cutoff)
        deleted = retention_sweep(conn, settings.portal.retention_days)
    print(f"retention: made partitions [{', '.join(made)}]; dropped partitions past every"
          f" retention (before {cutoff:%Y-%m-%d %H:%M} UTC) [{', '.join(dropped)}]")
    print(f"retention: deleted {deleted} transcript turns past their family's retention")
    return 0


def _keygen(args: argparse.Namespace, settings: Settings) -> int:
    from config.keyfile import load_key_file
    from sync.cloud.family_keys import FileWrapper

    path = args.out or FileWrapper(settings).path
    if path.exists():
        raise CloudError(f"cloud key {path} already exists — keep it: every family's "
                         "transcripts are sealed under it (a new one would lock them out)")
    load_key_file(path, create=True)
    print(f"cloud key written to {path} (0600); give it to the parent app and every ingest "
          "instance as the credential portal-cloud.key")
    return 0
