"""``teddy store ...`` and ``teddy keys ...``: what a parent (or an operator) can see and do
with what the bear keeps. The same operations are library calls on ConversationStore, for
the fleet command handlers.
"""

from __future__ import annotations

import argparse
import json
import sys

from agent.store.store import ConversationStore
from config.errors import StoreError, TeddyError
from config.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``store`` and ``keys`` commands to the ``teddy`` CLI."""
    store = commands.add_parser("store", help="look at and look after what the bear keeps")
    sub = store.add_subparsers(dest="action", metavar="ACTION", required=True)
    stats = sub.add_parser("stats", help="conversations, turns, bytes, unsynced, oldest (no text)")
    stats.set_defaults(func=_stats)
    _add_export(sub)
    _add_delete(sub)
    verify = sub.add_parser("verify", help="integrity and decryption checks; exit 1 on a problem")
    verify.set_defaults(func=_verify)
    sweep = sub.add_parser("sweep", help="crypto-shred conversations past store.retention_days now")
    sweep.set_defaults(func=_sweep)
    keys = commands.add_parser("keys", help="the device key-encryption key")
    keys_sub = keys.add_subparsers(dest="action", metavar="ACTION", required=True)
    rotate = keys_sub.add_parser(
        "rotate", help="re-wrap every data key under a new key (safe to interrupt)")
    rotate.set_defaults(func=_keys_rotate)


def _add_export(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser("export", help="a readable transcript with safety verdicts")
    export.add_argument("--conversation", metavar="ID", help="only this conversation")
    export.add_argument("--format", choices=["json", "text"], default="json",
                        help="json (default) or text")
    export.set_defaults(func=_export)


def _add_delete(sub: argparse._SubParsersAction) -> None:
    delete = sub.add_parser("delete", help="crypto-shred conversations: unrecoverable")
    which = delete.add_mutually_exclusive_group(required=True)
    which.add_argument("--conversation", metavar="ID", help="one conversation")
    which.add_argument("--child", metavar="CHILD_ID", help="every conversation of one child")
    which.add_argument("--all", action="store_true", help="everything kept")
    delete.add_argument("--yes", action="store_true", help="confirm --all")
    delete.set_defaults(func=_delete)


def _stats(args: argparse.Namespace, settings: Settings) -> int:
    if not ConversationStore.exists(settings.store):
        print(json.dumps({"conversations": 0, "turns": 0, "unsynced": 0, "bytes": 0}))
        return 0
    with ConversationStore.open(settings.store) as store:
        print(json.dumps(store.stats()))
    return 0


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from agent.store.export import export_data, render_json, render_text

    if not ConversationStore.exists(settings.store):
        data = {"version": 1, "conversations": []}
    else:
        with ConversationStore.open(settings.store) as store:
            data = export_data(store, args.conversation)
    print(render_text(data) if args.format == "text" else render_json(data), end="")
    if args.format == "json":
        print()
    return 0


def _delete(args: argparse.Namespace, settings: Settings) -> int:
    if args.all and not args.yes:
        print("teddy: error: --all deletes every kept conversation for good — add --yes",
              file=sys.stderr)
        return 2
    if not ConversationStore.exists(settings.store):
        print("nothing is kept; nothing to delete")
        return 0
    with ConversationStore.open(settings.store) as store:
        if args.conversation:
            report = store.delete_conversation(args.conversation)
        elif args.child:
            report = store.delete_child(args.child)
        else:
            report = store.delete_all()
    print(f"deleted {report.conversations} conversations ({report.turns} turns, "
          f"{report.unsynced} never synced); keys destroyed"
          f"{', key-encryption key rotated' if report.key_rotated else ''}")
    return 0


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from agent.store.verify import verify

    if not ConversationStore.exists(settings.store):
        print(json.dumps({"ok": True, "conversations": 0, "turns": 0, "problems": []}))
        return 0
    try:
        with ConversationStore.open(settings.store) as store:
            report = verify(store)
    except TeddyError as exc:
        print(json.dumps({"ok": False, "problems": [str(exc)]}))
        return 1
    print(json.dumps({"ok": report.ok, "conversations": report.conversations,
                      "turns": report.turns, "problems": report.problems}))
    return 0 if report.ok else 1


def _sweep(args: argparse.Namespace, settings: Settings) -> int:
    if not ConversationStore.exists(settings.store):
        print("nothing is kept")
        return 0
    with ConversationStore.open(settings.store) as store:
        report = store.enforce_retention()
    print(f"retention {settings.store.retention_days} days: shredded "
          f"{len(report.shredded)} conversations, kept {len(report.kept_unsynced)} unsynced")
    return 0


def _keys_rotate(args: argparse.Namespace, settings: Settings) -> int:
    if not ConversationStore.exists(settings.store):
        raise StoreError(f"no store at {settings.store.db_path} — there are no keys to rotate")
    with ConversationStore.open(settings.store) as store:
        key_id = store.rotate_key()
        count = store.stats()["conversations"]
    print(f"key-encryption key rotated (key id {key_id[:8]}); {count} data keys re-wrapped")
    return 0


def consent_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """``teddy consent revoke [--delete]``: stop keeping turns; with --delete, shred them."""
    if not ConversationStore.exists(settings.store):
        print("no consent on record; nothing is kept")
        return 0
    delete = getattr(args, "delete", False)
    with ConversationStore.open(settings.store) as store:
        had = store.revoke_consent(delete=delete)
    message = "consent revoked; new turns are not kept" if had else "no consent was in force"
    print(message + ("; everything kept was deleted" if delete else ""))
    return 0
