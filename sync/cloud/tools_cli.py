"""``teddy-cloud provision`` and ``teddy-cloud simulate``: argument parsing and output."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from config.errors import ConfigError
from config.settings import Settings

SERVICE_ROLES = ("edge", "fleet", "ingest")
"""Roles of ``provision --service`` (as :data:`sync.cloud.broker_accounts.SERVICE_ACLS`)."""


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``provision`` and ``simulate`` to the ``teddy-cloud`` sub-commands."""
    provision = commands.add_parser(
        "provision", help="manufacture a bear (register it, create its broker account, write its "
                          "bundle: id, login, the cloud's public keys) or create a cloud service "
                          "account")
    provision.add_argument("name", metavar="DEVICE_ID|svc.NAME",
                           help="the bear's device id, or with --service the service account")
    provision.add_argument("--service", choices=sorted(SERVICE_ROLES),
                           help="a cloud service account svc.NAME with this role instead")
    provision.add_argument("--out", type=Path, default=Path("."),
                           help="folder for NAME.toml, the account's config fragment (mode 0600)")
    provision.add_argument("--rotate", action="store_true",
                           help="give an existing account a new password")
    provision.set_defaults(func=_provision)

    init = commands.add_parser(
        "broker-init", help="create the broker's dynamic-security file with its administrator")
    init.add_argument("--dynsec-file", type=Path,
                      default=Path("/var/lib/mosquitto/dynamic-security.json"),
                      help="the plugin's plugin_opt_config_file (must not exist yet)")
    init.add_argument("--admin-password-file", type=Path,
                      default=Path("/etc/teddy/credentials/broker-admin-password"),
                      help="where the administrator's password goes (mode 0600); "
                           "fleet.broker_admin_password_file")
    init.add_argument("--admin", default="svc.admin", help="administrator account (svc.NAME)")
    init.add_argument("--owner", default="mosquitto",
                      help="user the broker runs as, who must own its file (default mosquitto)")
    init.set_defaults(func=_broker_init)

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
    from sync.cloud.broker_accounts import broker_auth
    from sync.cloud.provision import check_name, provision

    role = args.service or "bear"
    check_name(args.name, role)
    bear = role == "bear"
    from sync.cloud.identity import bundle_keys, bundle_toml, register

    conn = _database(settings) if bear else None  # reachable before anything is made
    try:
        with broker_auth(settings) as auth:
            done = provision(auth, args.name, role=role, fragment_dir=args.out,
                             rotate=args.rotate)
        if conn is not None:
            register(conn, done.username)
    finally:
        if conn is not None:
            conn.close()
    if bear and done.fragment is not None:
        with open(done.fragment, "a") as handle:
            handle.write(bundle_toml(bundle_keys(settings)))
    verb = "created" if done.created else "rotated the password of"
    print(f"{verb} {done.role} account {done.username}; config fragment {done.fragment}")
    return 0


def _database(settings: Settings):
    """The system of record, where a bear is registered as manufactured (only registered
    bears can be claimed)."""
    from sync.cloud import db

    return db.connect(settings.cloud)


def _broker_init(args: argparse.Namespace, settings: Settings) -> int:
    from sync.cloud.broker_init import init_broker

    done = init_broker(args.dynsec_file, args.admin_password_file, args.admin, args.owner)
    print(f"made {done.dynsec_file} with administrator {done.admin}; its password is in "
          f"{done.password_file} (set fleet.broker_admin_password_file to it), then (re)start "
          "Mosquitto with config/examples/mosquitto.conf")
    return 0


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
