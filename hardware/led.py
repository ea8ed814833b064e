"""The paw's RGB LED and THE table of what it shows in every state of the bear.

:data:`LED_PATTERNS` is the one place a state's colour and effect are decided; every part
of the bear (the voice loop, pairing, health alerts, factory reset) names a state and the
LED adapter shows it. :class:`StatusLed` drives a gpiozero ``RGBLED`` on the pin factory
it is given (gpiozero's MockFactory with PWM pins is the simulated twin).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Literal, Protocol

logger = logging.getLogger(__name__)

Colour = tuple[float, float, float]
Effect = Literal["solid", "pulse", "blink"]


@dataclass(frozen=True)
class LedPattern:
    """How the LED shows one state."""

    colour: Colour
    """Red, green, blue, each 0..1."""
    effect: Effect = "solid"
    """``solid``, ``pulse`` (fade in and out) or ``blink`` (on/off)."""
    period_s: float = 0.0
    """One pulse or blink cycle, seconds (0 for solid)."""


OFF: Colour = (0.0, 0.0, 0.0)
BLUE: Colour = (0.0, 0.0, 1.0)
GREEN: Colour = (0.0, 1.0, 0.0)
RED: Colour = (1.0, 0.0, 0.0)
AMBER: Colour = (1.0, 0.6, 0.0)

LED_PATTERNS: dict[str, LedPattern] = {
    "off": LedPattern(OFF),
    "listening": LedPattern(BLUE),
    "thinking": LedPattern(AMBER),
    "speaking": LedPattern(GREEN),
    "pairing": LedPattern(BLUE, "pulse", 2.0),
    "paired": LedPattern(GREEN),
    "offline": LedPattern(AMBER, "blink", 2.0),
    "low_battery": LedPattern(RED, "pulse", 4.0),
    "error": LedPattern(RED),
    "alert": LedPattern(RED, "blink", 1.0),
    "factory_reset": LedPattern(RED, "blink", 0.4),
}
"""Every state the LED can show. ``pairing`` pulses blue, ``paired`` is green, a factory
reset blinks red (then the LED goes ``off``)."""

LED_COLOURS: dict[str, Colour] = {name: p.colour for name, p in LED_PATTERNS.items()}
"""The colour of each state, for LEDs that cannot pulse or blink."""


class StatusLight(Protocol):
    """Anything that shows a state of the bear by its name (:class:`StatusLed`; a test's
    recorder): what pairing and the voice loop need of the LED."""

    def show(self, state: str) -> None:
        """Show ``state`` (a key of :data:`LED_PATTERNS`)."""


def pattern_for(state: str) -> LedPattern:
    """The pattern of ``state``; a one-line error naming the known states otherwise."""
    try:
        return LED_PATTERNS[state]
    except KeyError:
        from hardware.errors import PinError

        raise PinError(f"LED state {state!r} is not in hardware/led.py's table — use one of "
                       f"{', '.join(LED_PATTERNS)}") from None


class StatusLed:
    """An RGB LED (common cathode) showing the states of :data:`LED_PATTERNS`.

    A context manager; :meth:`close` is idempotent. ``show`` is thread-safe.
    """

    def __init__(self, red_pin: int, green_pin: int, blue_pin: int, factory: Any) -> None:
        from gpiozero import RGBLED

        self._led = RGBLED(red_pin, green_pin, blue_pin, pwm=True, pin_factory=factory)
        self._lock = threading.Lock()
        self._state = "off"
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Any, factory: Any) -> StatusLed:
        """The LED on the pins of a :class:`config.pins.PinsSettings`."""
        return cls(settings.led_red_pin, settings.led_green_pin, settings.led_blue_pin, factory)

    @property
    def state(self) -> str:
        """The state shown now."""
        return self._state

    @property
    def colour(self) -> Colour:
        """The colour lit at this instant (a pulse or blink changes it over time)."""
        return tuple(self._led.color)

    @property
    def animating(self) -> bool:
        """Whether a pulse or blink is running."""
        return self._led._blink_thread is not None

    def show(self, state: str) -> None:
        """Show ``state`` (a key of :data:`LED_PATTERNS`)."""
        pattern = pattern_for(state)
        with self._lock:
            if self._closed:
                return
            self._state = state
            if pattern.effect == "pulse":
                half = pattern.period_s / 2
                self._led.pulse(fade_in_time=half, fade_out_time=half, on_color=pattern.colour)
            elif pattern.effect == "blink":
                half = pattern.period_s / 2
                self._led.blink(on_time=half, off_time=half, on_color=pattern.colour)
            else:
                self._led.off()  # stops any animation
                self._led.color = pattern.colour
        logger.debug("LED shows %s", state)

    def close(self) -> None:
        """Switch off and release the pins; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._state = "off"
            self._led.close()

    def __enter__(self) -> StatusLed:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
