"""``teddy-cloud simulate``: argument parsing and output of the fleet load generator."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from config.errors import ConfigError
from config.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``simulate`` to the ``teddy-cloud`` sub-commands."""
    simulate = commands.add_parser(
        "simulate", help="a load generator: many simulated bears over real MQTT connections")
    simulate.add_argument("--devices", type=int, required=True, help="simulated bears")
    simulate.add_argument("--turns", type=int, required=True, help="turns per bear")
    simulate.add_argument("--rate", type=float,
                          help="offered turns per second over the whole fleet (default: at once)")
    simulate.add_argument("--timeout", type=float, default=300.0,
                          help="seconds to wait for every ack (default 300)")
    simulate.add_argument("--workdir", type=Path,
                          help="where the bears keep their stores (default: a temporary folder)")
    simulate.add_argument("--prefix", default="sim",
                          help="device id prefix (default sim): ids are PREFIX-00000...")
    simulate.add_argument("--no-count", action="store_true",
                          help="do not count the rows in PostgreSQL (cloud.pg_dsn)")
    simulate.set_defaults(func=_simulate)


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from sync.cloud.simulate import count_in_database, run_fleet

    if args.devices < 1 or args.turns < 0:
        raise ConfigError("--devices must be at least 1 and --turns at least 0")
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
