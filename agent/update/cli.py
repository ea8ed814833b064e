"""``teddy update ...``: apply a release, finish or inspect an update, check health."""

from __future__ import annotations

import argparse
import json

from config.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``update`` command to the ``teddy`` CLI."""
    update = commands.add_parser("update", help="signed over-the-air releases (A/B, rollback)")
    sub = update.add_subparsers(dest="action", metavar="ACTION", required=True)
    apply = sub.add_parser("apply", help="fetch, verify, install, switch to a release URL")
    apply.add_argument("release_url", help="URL of a published release directory")
    apply.set_defaults(func=_apply)
    finish = sub.add_parser("finish", help="restart into the pending release; confirm or "
                                           "roll back (run by systemd after a switch)")
    finish.set_defaults(func=_finish)
    status = sub.add_parser("status", help="running version, pending update, floor (JSON)")
    status.set_defaults(func=_status)
    health = sub.add_parser("health", help="post-update checks of this release; exit 1 if any "
                                           "fails")
    health.add_argument("--json", action="store_true", help="one JSON line (default)")
    health.set_defaults(func=_health)


def _apply(args: argparse.Namespace, settings: Settings) -> int:
    from agent.update import Updater

    with Updater(settings) as updater:
        result = updater.apply(args.release_url)
    print(json.dumps({"version": result.version, "outcome": result.outcome,
                      "reason": result.reason, "running": result.running}))
    return 0 if result.outcome in ("installed", "already_current", "switching") else 1


def _finish(args: argparse.Namespace, settings: Settings) -> int:
    from agent.update import Updater
    from agent.update.service import SystemdService

    service = None
    if settings.update.service == "systemd":
        service = SystemdService(settings.update.unit, settings.update.root)
    with Updater(settings, service=service) as updater:
        result = updater.finish()
    print(json.dumps({"version": result.version, "outcome": result.outcome,
                      "reason": result.reason, "running": result.running}))
    return 0 if result.outcome == "installed" else 1


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from agent.update import Updater

    with Updater(settings) as updater:
        print(json.dumps(updater.status(), default=str))
    return 0


def _health(args: argparse.Namespace, settings: Settings) -> int:
    from agent.update.health import collect

    report = collect(settings)
    print(json.dumps(report))
    return 0 if report["ok"] else 1
