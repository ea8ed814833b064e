"""``teddy-sim``: a load generator of simulated bears, outside the bear and the cloud."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from config.cli_runner import new_parser, run
from config.errors import ConfigError
from config.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    """The ``teddy-sim`` argument parser."""
    parser, commands = new_parser(
        "teddy-sim", "Simulated bears (real stores, real sync clients) against a broker.")
    fleet = commands.add_parser(
        "fleet", help="many simulated bears over real MQTT connections, and what arrived")
    fleet.add_argument("--devices", type=int, required=True, help="simulated bears")
    fleet.add_argument("--turns", type=int, required=True, help="turns per bear")
    fleet.add_argument("--rate", type=float,
                       help="offered turns per second over the whole fleet (default: at once)")
    fleet.add_argument("--timeout", type=float, default=300.0,
                       help="seconds to wait for every ack (default 300)")
    fleet.add_argument("--workdir", type=Path,
                       help="where the bears keep their stores (default: a temporary folder)")
    fleet.add_argument("--prefix", default="sim",
                       help="device id prefix (default sim): ids are PREFIX-00000...")
    fleet.add_argument("--no-count", action="store_true",
                       help="do not count the rows in PostgreSQL (cloud.pg_dsn)")
    fleet.set_defaults(func=_fleet)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``teddy-sim``; returns the exit code."""
    return run(build_parser(), argv)


def _fleet(args: argparse.Namespace, settings: Settings) -> int:
    from fleetsim.fleet import count_in_database, run_fleet

    if args.devices < 1 or args.turns < 0:
        raise ConfigError(f"--devices {args.devices} / --turns {args.turns}: devices must be "
                          "at least 1 and turns at least 0")
    with tempfile.TemporaryDirectory(prefix="teddy-sim-") as scratch:
        workdir = args.workdir or Path(scratch)
        report = run_fleet(settings, workdir, args.devices, args.turns, args.rate,
                           args.timeout, args.prefix)
    if not args.no_count:
        count_in_database(settings, args.prefix, report)
    for line in report.lines():
        print(line)
    complete = report.left_unacked == 0 and (
        report.in_database is None or report.distinct_in_database == report.in_database)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
