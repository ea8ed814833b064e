"""``teddy listen`` and ``teddy run``: the bear's ears and voice on the command line."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from config.settings import Settings

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add ``listen`` and ``run`` to the ``teddy`` command line."""
    listen = subparsers.add_parser(
        "listen", help="hear one utterance from a WAV file; print and speak the answer",
        description="Hear one utterance from FILE.wav (VAD, Vosk), answer it through the "
        "bear's pipeline, print the answer, and speak it (or write it with --reply-wav).",
    )
    listen.add_argument("file", metavar="FILE.wav", type=Path, help="16-bit PCM WAV, any rate")
    listen.add_argument("--reply-wav", metavar="OUT.wav", type=Path,
                        help="write the spoken answer here instead of playing it")
    listen.set_defaults(func=listen_command)
    run = subparsers.add_parser(
        "run", help="the appliance: paw, microphone, speaker; stops cleanly on SIGTERM",
        description="Run the bear: listen while the paw is held (or after the wake phrase), "
        "answer aloud. SIGTERM or Ctrl-C finishes the current turn, then exits.",
    )
    run.set_defaults(func=run_command)


def listen_command(args: argparse.Namespace, settings: Settings) -> int:
    """``teddy listen FILE.wav [--reply-wav OUT.wav]``."""
    from agent.runtime import open_bear
    from agent.voice.appliance import build_ears
    from agent.voice.ears import hear_pcm, reply_for
    from agent.voice.speech import Synthesizer, Voice, open_speech
    from hardware.wav import read_wav

    pcm, rate = read_wav(args.file)
    heard = hear_pcm(build_ears(settings), pcm, rate, settings.audio.sample_rate)
    del pcm  # raw audio goes as soon as the transcript exists
    with open_bear(settings) as bear:
        reply = reply_for(heard, settings.voice, lambda text: bear.respond(text).reply)
    print(reply, flush=True)
    if args.reply_wav is not None:
        Voice(Synthesizer(settings.voice), None).to_wav(reply, args.reply_wav)
        return 0
    with open_speech(settings) as voice:
        voice.say(reply)
    return 0


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """``teddy run``: the appliance until SIGTERM / SIGINT (see :mod:`agent.lifecycle`)."""
    import threading

    from agent.lifecycle import STOP_SIGNALS, Lifecycle
    from agent.runtime import open_bear
    from agent.voice.appliance import open_appliance

    early_stop = threading.Event()  # a stop while the model loads: don't start at all
    previous = {sig: signal.signal(sig, lambda *_: early_stop.set()) for sig in STOP_SIGNALS}
    try:
        with open_bear(settings) as bear:
            def respond(text: str) -> str:
                return bear.respond(text).reply

            with open_appliance(settings, respond, bear.alerts.raise_alert) as appliance:
                loop = appliance.loop
                for sig in STOP_SIGNALS:  # from now on a stop ends the loop after its turn
                    signal.signal(sig, lambda *_: loop.request_stop())
                if early_stop.is_set():
                    return 0
                print("teddy: running; squeeze the paw to talk", file=sys.stderr, flush=True)
                Lifecycle(settings, bear, appliance.loop, args.config, appliance=appliance).serve()
        print("teddy: stopped", file=sys.stderr, flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
