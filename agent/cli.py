"""``teddy``: the bear's command line, a thin layer over the library.

Every command reads the same settings (``--config FILE``, ``TEDDY_CONFIG``, and
``TEDDY_<SECTION>__<KEY>`` overrides) and fails with one line naming what is wrong.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from agent.store.cli import consent_revoke
from config.cli_runner import new_parser, run
from config.errors import ConfigError, TeddyError
from config.settings import Settings, format_validation_error, load_settings

logger = logging.getLogger(__name__)

def build_parser() -> argparse.ArgumentParser:
    """The ``teddy`` argument parser with every sub-command."""
    parser, commands = new_parser(
        "teddy", "Teddy, the talking bear: run it, talk to it, look after it.")
    _add_chat(commands)
    _add_consent(commands)
    _add_sync(commands)
    _add_config(commands)
    for register in _plugin_registrars():
        register(commands)
    return parser


def _plugin_registrars() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Sub-commands that live beside the code they drive (safety, voice...)."""
    from agent.health.cli import register as health
    from agent.pairing_cli import register as pairing
    from agent.safety.cli import register as safety
    from agent.store.cli import register as store
    from agent.update.cli import register as update
    from agent.voice.cli import register as voice

    return [store, safety, voice, health, update, pairing]


def _add_chat(commands: argparse._SubParsersAction) -> None:
    chat = commands.add_parser(
        "chat", help="talk to the bear: one utterance a line on stdin, its answer on stdout"
    )
    chat.add_argument("--speak", action="store_true",
                      help="also say each answer aloud (pyttsx3) when audio is available")
    chat.add_argument("--online", action="store_true",
                      help="join the cloud as the appliance does: pair first if needed (the "
                           "code is printed), then sync and take commands while chatting")
    chat.set_defaults(func=_chat)


def _add_consent(commands: argparse._SubParsersAction) -> None:
    consent = commands.add_parser("consent", help="parental consent to keep and sync turns")
    sub = consent.add_subparsers(dest="action", metavar="ACTION", required=True)
    grant = sub.add_parser("grant", help="record a local consent (development and demos)")
    grant.add_argument("--parent", required=True, help="name or e-mail of the consenting parent")
    grant.add_argument("--scopes", default="keep,sync",
                       help="comma list of keep, sync, name (default: keep,sync)")
    grant.set_defaults(func=_consent_grant)
    revoke = sub.add_parser("revoke", help="stop keeping new turns (--delete: and shred the kept)")
    revoke.add_argument("--delete", action="store_true",
                        help="also crypto-shred every kept conversation (unrecoverable)")
    revoke.set_defaults(func=consent_revoke)
    show = sub.add_parser("show", help="print the consent in force as JSON")
    show.set_defaults(func=_consent_show)


def _add_sync(commands: argparse._SubParsersAction) -> None:
    sync = commands.add_parser("sync", help="send kept turns to the cloud over MQTT")
    sync.add_argument("--once", action="store_true",
                      help="send the outbox, wait for the cloud's acks, and exit")
    sync.add_argument("--timeout", type=float, help="seconds to wait for acks (sync.once_timeout)")
    sync.set_defaults(func=_sync)


def _add_config(commands: argparse._SubParsersAction) -> None:
    config = commands.add_parser("config", help="check the configuration")
    sub = config.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="print every invalid field; exit 1 if any")
    check.set_defaults(func=_config_check, raw_config=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``teddy``; returns the exit code."""
    return run(build_parser(), argv)


# --- handlers ---------------------------------------------------------------------------


def _chat(args: argparse.Namespace, settings: Settings) -> int:
    from agent.health.recorder import recording_alerts
    from agent.runtime import open_bear

    if getattr(args, "online", False):
        from agent.terminal_bear import chat_online

        return chat_online(settings, sys.stdin, lambda text: print(text, flush=True))
    speaker = _open_speaker(settings) if args.speak else None
    try:
        with open_bear(settings) as bear, recording_alerts(settings, bear.alerts,
                                                           bear.store is not None):
            for line in sys.stdin:
                if not line.strip():
                    continue
                result = bear.respond(line)
                print(result.reply, flush=True)
                if speaker is not None:
                    speaker.say(result.reply)
    finally:
        if speaker is not None:
            speaker.close()
    return 0


def _open_speaker(settings: Settings):
    """The speech adapter for ``--speak``; None (with a warning) when audio is unavailable."""
    from agent.voice.speech import open_speech

    try:
        return open_speech(settings)
    except TeddyError as exc:
        print(f"teddy: warning: not speaking aloud: {exc}", file=sys.stderr)
        return None


def _consent_grant(args: argparse.Namespace, settings: Settings) -> int:
    from agent.identity import device_id
    from agent.store import ConversationStore, parse_scopes

    scopes = parse_scopes(args.scopes)
    with ConversationStore.open(settings.store, create=True) as store:
        consent = store.grant_consent(args.parent, scopes)
    device_id(settings, create=True)
    print(f"consent recorded: {','.join(s.value for s in consent.scopes)}")
    return 0


def _consent_show(args: argparse.Namespace, settings: Settings) -> int:
    from agent.store import ConversationStore

    consent = None
    if ConversationStore.exists(settings.store):
        with ConversationStore.open(settings.store) as store:
            consent = store.consent()
    shown = None if consent is None else {
        "parent": consent.parent, "scopes": [s.value for s in consent.scopes],
        "granted_at": consent.granted_at, "source": consent.source,
    }
    print(json.dumps(shown))
    return 0


def _sync(args: argparse.Namespace, settings: Settings) -> int:
    from agent.identity import device_id
    from agent.runtime import FIRMWARE
    from agent.store import ConversationStore
    from agent.uplink import broker_settings
    from sync.device import DeviceSync

    if not ConversationStore.exists(settings.store):
        print("nothing to sync: no consent, nothing kept")
        return 0
    settings = broker_settings(settings)  # the bear's own login once paired
    with ConversationStore.open(settings.store) as store:
        if args.once and store.outbox_depth() == 0 and not store.unacked_batches():
            print("nothing to sync: the outbox is empty")
            return 0
        with DeviceSync(settings, store, device_id(settings), FIRMWARE) as link:
            link.connect()
            if args.once:
                report = link.sync_once(args.timeout)
                print(f"synced {report.turns_acked} turns in {report.batches_sent} batches "
                      f"({report.resends} resent); {report.left} waiting")
                return 0
            return _sync_forever(link, settings)


def _sync_forever(link, settings: Settings) -> int:
    import signal
    import threading

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    report = link.run(stop)  # batches by count and age; reconnects with jittered backoff
    print(f"synced {report.turns_acked} turns; {report.left} waiting")
    return 0


def _config_check(args: argparse.Namespace, settings: None) -> int:
    from config.files import tls_file_problems

    try:
        lines = tls_file_problems(load_settings(args.config).mqtt.tls)
    except ConfigError as exc:
        cause = exc.__cause__
        lines = format_validation_error(cause) if isinstance(cause, ValidationError) else [str(exc)]
    for line in lines:
        print(f"invalid: {line}", file=sys.stderr)
    if lines:
        return 1
    print("config ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
