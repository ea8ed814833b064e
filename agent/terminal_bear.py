"""``teddy chat --online``: the bear in a terminal, joined to its cloud.

What the appliance does without a microphone: a bear that is not paired yet pairs first
(it prints the code it would speak, a new one each time a code expires), then it answers
each line on stdin while the uplink runs beside it as on the appliance (:mod:`agent.uplink`:
sync of what the parent allowed, the fleet's signed commands, config). ``teddy-cloud dev``
runs it. SIGTERM or the end of stdin stops it cleanly (the uplink says ``offline``).
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable, Iterable

from config.settings import Settings

logger = logging.getLogger(__name__)


class _PrintedLed:
    """The LED of a bear without pins: states go to stderr."""

    def show(self, state: str) -> None:
        """Print the LED state."""
        print(f"[LED: {state}]", file=sys.stderr, flush=True)


def pair_until_paired(settings: Settings, say: Callable[[str], object]) -> bool:
    """Pair, again with a fresh code each time one expires; True once paired."""
    from agent.credentials import CredentialVault
    from agent.identity import device_id
    from agent.pairing import Pairing

    while not CredentialVault(settings.store).exists():
        pairing = Pairing(settings, device_id(settings), _PrintedLed(), say)
        try:
            pairing.start()
            outcome = pairing.wait(settings.pairing.code_ttl_s + 30)
        finally:
            pairing.close()
        if outcome is not None and outcome.status == "approved":
            say("Paired! Talk to me: type a line and press Enter.")
            return True
        reason = outcome.reason if outcome is not None else "no answer"
        say(f"Pairing did not work ({reason}); here is a new code.")
    return True


def chat_online(settings: Settings, lines: Iterable[str], say: Callable[[str], object]) -> int:
    """Pair if needed, then answer ``lines`` with the uplink running; returns 0."""
    from agent.health import HealthMonitor
    from agent.identity import device_id
    from agent.runtime import open_bear
    from agent.uplink import Uplink

    signal.signal(signal.SIGTERM, _exit_quietly)
    try:
        pair_until_paired(settings, say)
        with open_bear(settings) as bear:
            monitor = None  # as the appliance: alerts (wellbeing too) journaled and published
            if bear.store is not None:
                monitor = HealthMonitor(settings, bear.alerts, device_id(settings))
                monitor.start()
            uplink = Uplink(settings, bear, monitor, announce=say)  # "paused" said at once
            uplink.start()
            try:
                for line in lines:
                    if line.strip():
                        say(bear.respond(line).reply)
            finally:
                uplink.close()
                if monitor is not None:
                    monitor.close()
    except (KeyboardInterrupt, SystemExit):
        logger.info("the terminal bear stops")
    return 0


def _exit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(0)
