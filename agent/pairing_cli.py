"""``teddy pair`` and ``teddy factory-reset``: the paw's two long holds, from a shell.

On a laptop (the simulated twin) there is no paw to hold: ``teddy pair`` runs the same
pairing as a 5-second hold and prints the code it would speak (``--speak`` also says it);
``teddy factory-reset --yes`` is the 15-second hold.
"""

from __future__ import annotations

import argparse
import sys

from config.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``pair`` and ``factory-reset`` to the ``teddy`` parser."""
    pair = commands.add_parser("pair", help="pair this bear (what holding the paw 5 s does)")
    pair.add_argument("--speak", action="store_true", help="also speak the code aloud")
    pair.set_defaults(func=_pair)
    reset = commands.add_parser(
        "factory-reset", help="crypto-shred keys, credentials and data (the paw held 15 s)")
    reset.add_argument("--yes", action="store_true", required=True,
                       help="confirm: everything kept becomes unreadable, for good")
    reset.set_defaults(func=_reset)


class _PrintedLed:
    """The LED of a bear without pins: states go to stderr."""

    def show(self, state: str) -> None:
        print(f"[LED: {state}]", file=sys.stderr, flush=True)


def _pair(args: argparse.Namespace, settings: Settings) -> int:
    from agent.identity import device_id
    from agent.pairing import Pairing

    voice = None
    if args.speak:
        from agent.voice.speech import open_speech

        voice = open_speech(settings)

    def say(text: str) -> None:
        print(text, flush=True)
        if voice is not None:
            voice.say(text)

    pairing = Pairing(settings, device_id(settings), _PrintedLed(), say)
    try:
        pairing.start()
        outcome = pairing.wait(settings.pairing.code_ttl_s + 30)
    finally:
        pairing.close()
        if voice is not None:
            voice.close()
    if outcome is not None and outcome.status == "approved":
        print(f"paired as {outcome.device_id}")
        return 0
    reason = outcome.reason if outcome is not None else "no outcome"
    print(f"teddy: error: pairing {outcome.status if outcome else 'failed'}: {reason}",
          file=sys.stderr)
    return 1


def _reset(args: argparse.Namespace, settings: Settings) -> int:
    from agent.factory_reset import factory_reset
    from agent.pairing import keep_release_notice

    keep_release_notice(settings)
    report = factory_reset(settings)
    print(f"factory reset: {len(report.keys)} keys and {len(report.files)} files shredded")
    return 0
