"""``teddy-cloud setup`` and ``teddy-cloud doctor``: thin commands over
:mod:`sync.cloud.setup` and :mod:`sync.cloud.doctor`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from config.settings import Settings

DEFAULT_SITE = "/etc/teddy/cloud-site.toml"


def register(commands: Any) -> None:
    """Add ``setup`` and ``doctor`` to the ``teddy-cloud`` parser."""
    for name, helptext, func in (
            ("setup", "install this cloud host from its site file, idempotently: database and "
                      "replica roles, broker TLS and accounts, keys, credentials, units, "
                      "backups; one line per step", _setup),
            ("doctor", "check a running cloud host: one line per problem naming the fix; "
                       "exit 1 if any", _doctor)):
        parser = commands.add_parser(name, help=helptext)
        parser.add_argument("--site", "--config", dest="site", type=Path,
                            default=Path(DEFAULT_SITE),
                            help=f"the site file (default {DEFAULT_SITE}; example: "
                                 "config/examples/cloud-site.toml)")
        parser.add_argument("--root", type=Path, default=None,
                            help="install under this folder instead of / (tests, images)")
        parser.set_defaults(func=func, raw_config=True)  # the site file, not settings


def _site(args: argparse.Namespace):
    from dataclasses import replace

    from sync.cloud.setup_site import load_site

    site = load_site(args.site)
    return replace(site, root=args.root) if args.root is not None else site


def _setup(args: argparse.Namespace, settings: Settings | None) -> int:
    from sync.cloud.setup import run_setup

    results = run_setup(_site(args))
    changed = sum(result.changed for result in results)
    print(f"setup: {changed} of {len(results)} steps changed something"
          if changed else "setup: nothing to change")
    return 0


def _doctor(args: argparse.Namespace, settings: Settings | None) -> int:
    from sync.cloud.doctor import run_doctor

    report = run_doctor(_site(args))
    for note in report.notes:
        print(f"ok: {note}")
    for problem in report.problems:
        print(problem)
    print(f"doctor: {len(report.problems)} problems" if report.problems
          else "doctor: everything is in order")
    return 1 if report.problems else 0
