"""``teddy-cloud backup ...``: take, check, list and restore backups (pgBackRest)."""

from __future__ import annotations

import argparse
import json
from datetime import datetime

from config.errors import ConfigError
from config.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``backup`` and its actions to the ``teddy-cloud`` parser."""
    backup = commands.add_parser("backup", help="back up and restore the cloud database "
                                 "(pgBackRest, point-in-time recovery)")
    sub = backup.add_subparsers(dest="backup_command", metavar="ACTION", required=True)
    sub.add_parser("init", help="create the backup stanza (once, after archive_command is set)"
                   ).set_defaults(func=_init)
    take = sub.add_parser("take", help="take a backup now and record it")
    take.add_argument("--type", choices=["full", "diff", "incr"], default="full",
                      help="full (default), diff (since the last full) or incr")
    take.set_defaults(func=_take)
    sub.add_parser("check", help="check the repository and that WAL archiving works"
                   ).set_defaults(func=_check)
    listing = sub.add_parser("list", help="backups in the repository, oldest first")
    listing.add_argument("--json", action="store_true", help="one JSON object a line")
    listing.set_defaults(func=_list)
    restore = sub.add_parser("restore", help="restore the (stopped) cluster, to a time or "
                             "as far as the WAL archive goes")
    restore.add_argument("--to", metavar="TIME",
                         help="ISO time with zone, e.g. 2026-01-31T09:30:00+00:00; commits "
                              "up to it are kept, later ones are not")
    restore.add_argument("--delta", action="store_true",
                         help="reuse the files already in the data directory (faster)")
    restore.set_defaults(func=_restore)


def _backups(settings: Settings):
    from sync.cloud.backup import Backups

    return Backups(settings.backup, settings.cloud)


def _init(args: argparse.Namespace, settings: Settings) -> int:
    with _backups(settings) as backups:
        backups.init()
    print(f"stanza {settings.backup.stanza} ready")
    return 0


def _take(args: argparse.Namespace, settings: Settings) -> int:
    with _backups(settings) as backups:
        done = backups.take(args.type)
    seconds = (done.stopped - done.started).total_seconds()
    print(f"backup {done.label} ({done.kind}) done in {seconds:.0f} s: "
          f"{done.size} bytes, {done.repo_size} in the repository")
    return 0


def _check(args: argparse.Namespace, settings: Settings) -> int:
    with _backups(settings) as backups:
        backups.check()
    print(f"stanza {settings.backup.stanza}: repository and WAL archiving ok")
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from sync.cloud.backup import info_as_dicts

    with _backups(settings) as backups:
        found = backups.list()
    if args.json:
        for item in info_as_dicts(found):
            print(json.dumps(item))
        return 0
    print(f"{'LABEL':<26} {'TYPE':<5} {'FINISHED (UTC)':<20} {'SIZE':>12} {'IN REPO':>12}")
    for b in found:
        print(f"{b.label:<26} {b.kind:<5} {b.stopped:%Y-%m-%d %H:%M:%S}  {b.size:>12} "
              f"{b.repo_size:>12}")
    return 0


def _restore(args: argparse.Namespace, settings: Settings) -> int:
    target = None
    if args.to:
        try:
            target = datetime.fromisoformat(args.to)
        except ValueError:
            raise ConfigError(f"--to {args.to!r} is not an ISO time — e.g. "
                              "2026-01-31T09:30:00+00:00") from None
        if target.tzinfo is None:
            raise ConfigError(f"--to {args.to!r} has no time zone — add one, e.g. +00:00")
    with _backups(settings) as backups:
        backups.restore(target, delta=args.delta)
    where = f"to {target.isoformat()}" if target else "to the end of the WAL archive"
    print(f"restored {where}; start PostgreSQL: it replays WAL, then promotes")
    return 0
