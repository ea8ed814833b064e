"""``teddy-cloud provision`` and ``teddy-cloud broker-init``: argument parsing and output."""

from __future__ import annotations

import argparse
from pathlib import Path

from config.settings import Settings

SERVICE_ROLES = ("edge", "fleet", "ingest", "monitor")
"""Roles of ``provision --service`` (as :data:`sync.cloud.broker_accounts.SERVICE_ACLS`)."""


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``provision`` and ``broker-init`` to the ``teddy-cloud`` sub-commands."""
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
