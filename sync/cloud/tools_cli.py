"""``teddy-cloud provision`` and ``teddy-cloud simulate``: argument parsing and output."""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
from pathlib import Path

from config.errors import ConfigError
from config.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``provision`` and ``simulate`` to the ``teddy-cloud`` sub-commands."""
    provision = commands.add_parser(
        "provision", help="manufacture a bear: register it, create its broker account and "
        "write its provisioning bundle (id, login, the cloud's public keys)")
    provision.add_argument("device_id", metavar="DEVICE_ID", help="the bear (its broker user)")
    provision.add_argument("--password-file", type=Path,
                           help="Mosquitto password file (cloud.broker_password_file)")
    provision.add_argument("--acl-file", type=Path,
                           help="Mosquitto ACL file (cloud.broker_acl_file)")
    provision.add_argument("--out", type=Path, default=Path("."),
                           help="folder for DEVICE_ID.toml, the bear's config fragment (mode 0600)")
    provision.add_argument("--ingest", action="store_true",
                           help="a cloud ingest service account (reads every bear) instead")
    provision.add_argument("--rotate", action="store_true",
                           help="give an existing account a new password")
    provision.add_argument("--reload-pid", type=int, metavar="PID",
                           help="send SIGHUP to this Mosquitto so it rereads both files")
    provision.set_defaults(func=_provision)

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


def _provision(args: argparse.Namespace, settings: Settings) -> int:
    from sync.cloud.provision import provision

    bear = not args.ingest
    from sync.cloud.identity import bundle_keys, bundle_toml, register

    conn = _database(settings) if bear else None  # reachable before anything is made
    try:
        done = provision(
            args.device_id,
            args.password_file or settings.cloud.broker_password_file,
            args.acl_file or settings.cloud.broker_acl_file,
            role="ingest" if args.ingest else "bear",
            fragment_dir=args.out,
            rotate=args.rotate,
        )
        if conn is not None:
            register(conn, done.username)
    finally:
        if conn is not None:
            conn.close()
    if bear and done.fragment is not None:
        with open(done.fragment, "a") as handle:
            handle.write(bundle_toml(bundle_keys(settings)))
    if args.reload_pid:
        os.kill(args.reload_pid, signal.SIGHUP)
    verb = "created" if done.created else "rotated the password of"
    print(f"{verb} {done.role} account {done.username}; config fragment {done.fragment}")
    return 0


def _database(settings: Settings):
    """The system of record, where a bear is registered as manufactured (only registered
    bears can be claimed)."""
    from sync.cloud import db

    return db.connect(settings.cloud)


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
