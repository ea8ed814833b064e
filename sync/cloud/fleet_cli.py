"""``teddy-cloud fleet ...``: devices, show, send, config set, alerts, delete-data, unpair,
pair approve. Registered by :func:`register` from ``sync/cloud/cli.py``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from config.errors import CloudError
from config.settings import Settings
from sync.protocol import COMMAND_NAMES

Handler = Callable[[argparse.Namespace, Settings], int]

EXIT_REFUSED = 1
"""Exit code: the bear rejected the command or it failed."""
EXIT_NO_ANSWER = 3
"""Exit code: ``--wait`` ran out before the bear answered."""


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``fleet`` and its sub-commands to the ``teddy-cloud`` parser."""
    fleet = commands.add_parser("fleet", help="run the fleet: bears, commands, config, pairing")
    sub = fleet.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)
    sub.add_parser("devices", help="every bear: online, last seen, firmware, backlog, alerts"
                   ).set_defaults(func=_devices)
    show = sub.add_parser("show", help="one bear in detail")
    show.add_argument("device")
    show.set_defaults(func=_show)
    _add_send(sub)
    _add_config(sub)
    alerts = sub.add_parser("alerts", help="alerts of every bear, newest first")
    alerts.add_argument("--open", action="store_true", help="only alerts not cleared yet")
    alerts.set_defaults(func=_alerts)
    delete = sub.add_parser("delete-data", help="delete kept data in PostgreSQL and on the bear")
    target = delete.add_mutually_exclusive_group(required=True)
    target.add_argument("device", nargs="?", help="the bear")
    target.add_argument("--parent", metavar="EMAIL", help="exactly this parent's data: every "
                        "pairing their consent started, never another family's")
    delete.set_defaults(func=_delete_data)
    unpair = sub.add_parser("unpair", help="unpair a bear (it shreds its data and credentials)")
    unpair.add_argument("device")
    unpair.set_defaults(func=_unpair)
    _add_pair(sub)
    sub.add_parser("keygen", help="make the fleet's command-signing key (once, mode 0600)"
                   ).set_defaults(func=_keygen)
    sub.add_parser("serve", help="the fleet service: sign and send the parent app's requests "
                   "(settings, deletion, unpairing) over one long-lived link"
                   ).set_defaults(func=_serve)
    _add_export(sub)
    edges = sub.add_parser("edges", help="the edge brokers")
    edges_sub = edges.add_subparsers(dest="edges_command", metavar="ACTION", required=True)
    edges_sub.add_parser("check", help="account drift between the core and the edges (one line "
                         "per problem; exit 1 if any)").set_defaults(func=_edges_check)
    from sync.cloud.release_cli import register_rollout  # fleet rollout ... (issue 9)

    register_rollout(sub)


def _add_send(sub: argparse._SubParsersAction) -> None:
    send = sub.add_parser("send", help="send a signed command to a bear")
    send.add_argument("device")
    send.add_argument("name", choices=COMMAND_NAMES, metavar="COMMAND",
                      help=f"one of {', '.join(COMMAND_NAMES)}")
    send.add_argument("args", nargs="*", metavar="KEY=VALUE",
                      help="arguments (VALUE is JSON when it parses, else a string)")
    send.add_argument("--bundle", metavar="DIR",
                      help="update-content-pack: folder of content JSON files to sign and send")
    send.add_argument("--bundle-version", type=int, help="update-content-pack: its version")
    send.add_argument("--wait", action="store_true", help="wait for the bear's result")
    send.set_defaults(func=_send)


def _add_config(sub: argparse._SubParsersAction) -> None:
    config = sub.add_parser("config", help="desired config of a bear")
    config_sub = config.add_subparsers(dest="config_action", metavar="ACTION", required=True)
    config_set = config_sub.add_parser("set", help="set desired config KEY=VALUE (signed, "
                                       "retained); the bear validates, applies, reports")
    config_set.add_argument("device")
    config_set.add_argument("values", nargs="+", metavar="KEY=VALUE")
    config_set.add_argument("--wait", action="store_true", help="wait for the bear's report")
    config_set.set_defaults(func=_config_set)


def _add_pair(sub: argparse._SubParsersAction) -> None:
    pair = sub.add_parser("pair", help="pairing (stands in for the parent app's backend)")
    pair_sub = pair.add_subparsers(dest="pair_action", metavar="ACTION", required=True)
    approve = pair_sub.add_parser("approve", help="approve the bear that spoke CODE")
    approve.add_argument("--code", required=True, help="the 12-digit code the bear spoke")
    approve.add_argument("--parent-email", required=True, help="the consenting parent")
    approve.add_argument("--consent", default="keep,sync",
                         help="comma list of keep, sync, name (default: keep,sync)")
    approve.add_argument("--device", help="the bear's id, when the app knows it (a wrong code "
                         "then also counts against this bear's claim)")
    approve.add_argument("--requester", help="who asks (wrong codes are limited per requester;"
                         " default: the parent's e-mail)")
    approve.set_defaults(func=_pair_approve)


def _add_export(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser("export", help="a parent's transcripts, readable (the parent "
                            "app's export, for a parent asking the operator)")
    export.add_argument("--parent", metavar="EMAIL", required=True)
    export.set_defaults(func=_export)


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from sync.cloud import db, emails, family_keys
    from sync.cloud.portal.service import export_pairing

    family_keys.install(settings)
    with db.connect(settings.cloud) as conn:
        same, params = emails.matching(conn, args.parent)
        pairings = conn.execute(
            f"SELECT pairing_id::text, device_id FROM pairings WHERE {same}"
            " AND status IN ('approved', 'unpaired') ORDER BY approved_at", params).fetchall()
        data = [{"pairing_id": p, "device_id": d, **export_pairing(conn, p)}
                for p, d in pairings]
    if not data:
        print(f"teddy-cloud: no bear was ever paired by {args.parent} — check the address")
        return 1
    _print_json(data)
    return 0


def _fleet(settings: Settings):
    from sync.cloud import db
    from sync.cloud.fleet import Fleet

    _keyring(settings)
    return Fleet(settings, db.connect(settings.cloud))


def _keyring(settings: Settings) -> None:
    """Install the cloud key (never made here): parents' addresses in the fleet tables are
    found by its keyed hash and sealed under it (sync/cloud/emails.py)."""
    from config.errors import CloudError
    from sync.cloud import family_keys

    ring = family_keys.keyring() or family_keys.install(settings, create=False)
    if settings.portal.cloud_key_file is not None and not ring.ready():
        raise CloudError(f"the cloud key {settings.portal.cloud_key_file} cannot be read: "
                         "parents' addresses are found and sealed with it — run this as root "
                         "or unset TEDDY_PORTAL__CLOUD_KEY_FILE on a development set-up")


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=_json_default, sort_keys=True))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def _edges_check(args: argparse.Namespace, settings: Settings) -> int:
    from sync.cloud.broker_accounts import BrokerSet, DynsecAuth, broker_auth
    from sync.cloud.edge_drift import drift

    with broker_auth(settings) as auth:
        if isinstance(auth, BrokerSet):
            problems = auth.drift()
        elif isinstance(auth, DynsecAuth):  # no edges configured: are any bridged anyway?
            problems = drift(auth.list_accounts(), {})
        else:
            raise CloudError("fleet edges check knows only the dynamic-security brokers")
    for problem in problems:
        print(problem)
    if not problems:
        print(f"in step: the core and {len(settings.fleet.edge_brokers)} edges")
    return 1 if problems else 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import signal

    from sync.cloud import fleet_slots
    from sync.cloud.fleet_service import RequestService

    fleet_slots.use_group("serve")  # its private /tmp hides the operator's slot locks
    service = RequestService(settings)
    signal.signal(signal.SIGTERM, lambda *_: service.stop.set())
    signal.signal(signal.SIGINT, lambda *_: service.stop.set())
    service.run()
    return 0


def _keygen(args: argparse.Namespace, settings: Settings) -> int:
    import base64

    from sync.cloud.fleet import generate_signing_key, public_key_bytes, signing_key_path

    path = signing_key_path(settings)
    key = generate_signing_key(path)
    print(f"fleet signing key written to {path} (mode 0600); public key "
          f"{base64.b64encode(public_key_bytes(key)).decode()}")
    print("copy this file (not a new key) to every host that sends commands")
    return 0


def _devices(args: argparse.Namespace, settings: Settings) -> int:
    fleet = _fleet(settings)
    with fleet.conn:
        rows = fleet.devices()
    print(f"{'DEVICE':<24} {'ONLINE':<6} {'LAST SEEN':<20} {'FIRMWARE':<10} {'BACKLOG':>7} "
          f"{'ALERTS':>6}  {'PAIRING':<10} UPDATE")
    for d in rows:
        seen = d["last_seen"].strftime("%Y-%m-%d %H:%M:%S") if d["last_seen"] else "-"
        backlog = "-" if d["backlog"] is None else str(int(float(d["backlog"])))
        update = d["update_state"] or "-"
        if d["target_version"] and d["update_state"] != "current":
            update += f"->{d['target_version']}"
        print(f"{d['device_id']:<24} {'yes' if d['online'] else 'no':<6} {seen:<20} "
              f"{d['firmware'] or '-':<10} {backlog:>7} {d['open_alerts']:>6}  "
              f"{d['pairing'] or '-':<10} {update}")
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    fleet = _fleet(settings)
    with fleet.conn:
        _print_json(fleet.show(args.device))
    return 0


def _send(args: argparse.Namespace, settings: Settings) -> int:
    from sync.cloud.fleet import parse_assignment

    fleet = _fleet(settings)
    command_args = dict(parse_assignment(a) for a in args.args)
    if args.name == "update-content-pack":
        command_args["bundle"] = _bundle(fleet, args)
    with fleet.conn:
        sent = fleet.send(args.device, args.name, command_args, wait=args.wait)
    if not args.wait:
        print(f"sent {args.name} to {args.device} (command {sent.command.id})")
        return 0
    if sent.result is None:
        print(f"teddy-cloud: no answer from {args.device} within "
              f"{fleet.answer_within_s(args.name):g} s to command {sent.command.id} — it stays "
              "valid until it expires")
        return EXIT_NO_ANSWER
    _print_json(sent.result.model_dump())
    return 0 if sent.result.ok else EXIT_REFUSED


def _bundle(fleet: Any, args: argparse.Namespace) -> dict[str, Any]:
    from pathlib import Path

    from sync.cloud.fleet import FleetError
    from sync.protocol import ContentBundle

    if not args.bundle or not args.bundle_version:
        raise FleetError("update-content-pack needs --bundle DIR and --bundle-version N")
    folder = Path(args.bundle)
    files = {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.json"))}
    if not files:
        raise FleetError(f"{args.bundle} holds no *.json content files")
    bundle = ContentBundle(version=args.bundle_version, files=files)
    return bundle.signed_with(fleet.signing_key).model_dump()


def _config_set(args: argparse.Namespace, settings: Settings) -> int:
    from sync.cloud.fleet import parse_assignment

    fleet = _fleet(settings)
    values = dict(parse_assignment(a) for a in args.values)
    with fleet.conn:
        desired, report = fleet.set_config(args.device, values, wait=args.wait)
    if not args.wait:
        print(f"desired config version {desired.version} of {args.device} published")
        return 0
    if report is None:
        print(f"teddy-cloud: {args.device} did not report config version {desired.version} "
              f"within {settings.fleet.wait_s:g} s — it applies it when it next connects")
        return EXIT_NO_ANSWER
    _print_json(report.model_dump())
    return 0 if not report.rejected else EXIT_REFUSED


def _alerts(args: argparse.Namespace, settings: Settings) -> int:
    fleet = _fleet(settings)
    with fleet.conn:
        rows = fleet.alerts(open_only=args.open)
    for a in rows:
        state = "open" if a["cleared_at"] is None else "cleared"
        print(f"{a['raised_at']:%Y-%m-%d %H:%M:%S}  {a['device_id']:<20} {a['severity']:<8} "
              f"{state:<7} {a['kind']}: {a['message']}")
    if not rows:
        print("no alerts")
    return 0


def _delete_data(args: argparse.Namespace, settings: Settings) -> int:
    fleet = _fleet(settings)
    with fleet.conn:
        if args.parent:
            reports = fleet.delete_parent_data(args.parent)
        else:
            reports = [fleet.delete_data(args.device)]
    _print_json(reports)
    return 0 if all(r["confirmed"] for r in reports) else EXIT_NO_ANSWER


def _unpair(args: argparse.Namespace, settings: Settings) -> int:
    fleet = _fleet(settings)
    with fleet.conn:
        report = fleet.unpair(args.device)
    _print_json(report)
    done = report["bear"] is not None and report["bear"]["status"] == "done"
    return 0 if done else EXIT_NO_ANSWER


def _pair_approve(args: argparse.Namespace, settings: Settings) -> int:
    from sync.cloud import db
    from sync.cloud.pairing import approve
    from sync.protocol.consent import parse_scopes

    scopes = tuple(s.value for s in parse_scopes(args.consent))
    _keyring(settings)
    with db.connect(settings.cloud) as conn:
        approved = approve(settings, conn, args.code, args.parent_email, scopes, args.device,
                           requester=args.requester)
    print(f"paired {approved.device_id} with {args.parent_email} "
          f"(consent: {','.join(approved.scopes)}; pairing {approved.pairing_id})")
    return 0
