"""GPIO through gpiozero: the pin factory and the paw button (the LED is hardware/led.py).

The pin factory comes from settings (``pins.factory``), like gpiozero's own
``GPIOZERO_PIN_FACTORY``: ``mock`` is the simulated twin (gpiozero's MockFactory, whose
pins a test or the ``wav`` bear drives by hand), ``lgpio`` and ``native`` are the Pi.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from config.pins import PinsSettings
from hardware.errors import PinError

logger = logging.getLogger(__name__)


def make_pin_factory(settings: PinsSettings) -> Any:
    """The gpiozero pin factory named by ``settings.factory``."""
    try:
        if settings.factory == "mock":
            from gpiozero.pins.mock import MockFactory, MockPWMPin

            return MockFactory(pin_class=MockPWMPin)
        if settings.factory == "lgpio":
            from gpiozero.pins.lgpio import LGPIOFactory

            return LGPIOFactory()
        from gpiozero.pins.native import NativeFactory

        return NativeFactory()
    except ImportError as exc:
        raise PinError(
            f"pin factory {settings.factory!r} is not installed ({exc}) — pip install "
            "gpiozero lgpio, or set TEDDY_PINS__FACTORY=mock"
        ) from None
    except Exception as exc:
        raise PinError(
            f"pin factory {settings.factory!r} cannot start ({exc}) — run on a Raspberry Pi "
            "or set TEDDY_PINS__FACTORY=mock"
        ) from None


class PawButton:
    """The paw: a push button to ground on ``pins.paw_pin`` with the internal pull-up.

    ``on_press`` and ``on_release`` run in gpiozero's thread (the caller's, on the mock).
    """

    def __init__(
        self,
        settings: PinsSettings,
        factory: Any,
        on_press: Callable[[], None] | None = None,
        on_release: Callable[[], None] | None = None,
    ) -> None:
        from gpiozero import Button

        self.pin_number = settings.paw_pin
        """BCM number of the paw's pin."""
        self._factory = factory
        self._button = Button(
            settings.paw_pin, pull_up=True, bounce_time=settings.paw_bounce_s,
            pin_factory=factory,
        )
        self._button.when_pressed = on_press
        self._button.when_released = on_release
        self._closed = False

    @property
    def is_pressed(self) -> bool:
        """Whether the paw is held now."""
        return bool(self._button.is_pressed)

    def close(self) -> None:
        """Release the pin; idempotent."""
        if not self._closed:
            self._closed = True
            self._button.close()

    def __enter__(self) -> PawButton:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class MockPaw:
    """Hands for the simulated twin: press and release the paw on a MockFactory pin."""

    def __init__(self, factory: Any, pin_number: int) -> None:
        self._pin = factory.pin(pin_number)

    def press(self) -> None:
        """Squeeze the paw (the pin goes low)."""
        self._pin.drive_low()

    def release(self) -> None:
        """Let go of the paw (the pin goes high)."""
        self._pin.drive_high()
