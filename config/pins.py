"""Settings section for the bear's GPIO pins: ``pins`` (the paw button and the RGB LED).

Environment overrides follow the house rule, e.g. ``TEDDY_PINS__FACTORY=lgpio``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from config.settings import Section


class PinsSettings(Section):
    """GPIO: the paw button and the RGB LED (BCM numbering)."""

    factory: Literal["mock", "lgpio", "native"] = "mock"
    """gpiozero pin factory: ``mock`` (simulated twin), ``lgpio`` (Pi 5 / Bookworm), ``native``."""
    paw_pin: int = Field(default=17, ge=0, le=53)
    """BCM pin of the paw button (to ground, internal pull-up)."""
    paw_bounce_s: float | None = Field(default=0.02, ge=0, le=1)
    """Debounce time of the paw button, seconds; None: no debounce."""
    led_red_pin: int = Field(default=22, ge=0, le=53)
    """BCM pin of the LED's red channel."""
    led_green_pin: int = Field(default=27, ge=0, le=53)
    """BCM pin of the LED's green channel."""
    led_blue_pin: int = Field(default=24, ge=0, le=53)
    """BCM pin of the LED's blue channel."""
