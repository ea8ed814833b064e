"""Settings section ``play``: when the bear plays. A parent sets bedtime (quiet hours, one
window for every day or one per weekday), a daily time limit, bonus time for today and
pause in the parent app; the fleet pushes them as desired config and the bear answers
kindly instead of playing outside them."""

from __future__ import annotations

import math
import re

from pydantic import Field, field_validator

from config.settings import Section

HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
WINDOW = re.compile(r"^(?P<start>\d\d:\d\d)-(?P<end>\d\d:\d\d)$")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
"""The order of :attr:`PlaySettings.weekly` (Python's ``date.weekday()``)."""
MAX_BONUS_MIN = 240
"""Most bonus minutes a parent may give for one day."""
LATEST_TIMESTAMP = 4_102_444_800.0
"""2100-01-01 UTC: no bonus is dated later."""
TIME_ERROR = "Choose a time between 00:00 and 23:59"
"""What a time that is not HH:MM within a day is refused with."""


def check_window(text: str, day: str = "") -> str:
    """``"19:30-07:00"`` (a window, may span midnight) or ``""`` (no quiet hours); a
    ValueError naming the fix otherwise."""
    found = WINDOW.match(text)
    where = f" ({day})" if day else ""
    if found is None or not (HHMM.match(found["start"]) and HHMM.match(found["end"])):
        raise ValueError(f"{TIME_ERROR}{where}: write quiet hours like 19:30-07:00, "
                         f"not {text[:20]!r}")
    return text


class PlaySettings(Section):
    """Quiet hours, a daily time limit, bonus time and pause, enforced by the bear itself."""

    quiet_from: str | None = None
    """Start of quiet hours, local time ``HH:MM`` (e.g. ``"19:30"``); None: no quiet hours."""
    quiet_until: str | None = None
    """End of quiet hours, local time ``HH:MM`` (e.g. ``"07:00"``); may be before
    ``quiet_from`` (the quiet hours then span midnight)."""
    weekly: list[str] | None = Field(default=None, min_length=7, max_length=7)
    """Quiet hours per weekday, Monday first: ``"19:30-07:00"`` (the window starts that
    evening and may end the next morning) or ``""`` (no quiet hours that day). None: the
    one window of ``quiet_from``/``quiet_until`` every day."""
    daily_limit_min: int = Field(default=0, ge=0, le=24 * 60)
    """Minutes of play a day (counted from the child's turns); 0: no limit."""
    bonus_min: int = Field(default=0, ge=0, le=MAX_BONUS_MIN)
    """Extra minutes of play on the day of ``bonus_at`` only (bear-local): bonus time
    expires at the bear's midnight."""
    bonus_at: float | None = Field(default=None, ge=0, le=LATEST_TIMESTAMP)
    """Unix time the bonus was given (its local date is the day it counts); None: none."""
    paused: bool = False
    """A parent paused the bear: it answers with a short friendly line until resumed."""

    @field_validator("quiet_from", "quiet_until")
    @classmethod
    def _hhmm(cls, value: str | None) -> str | None:
        if value is not None and value != "" and not HHMM.match(value):
            raise ValueError(f"{TIME_ERROR}: {value!r} is not a time HH:MM, e.g. 19:30")
        return value or None

    @field_validator("weekly")
    @classmethod
    def _weekly(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        return [check_window(text, day) if text else "" for text, day in zip(value, WEEKDAYS,
                                                                             strict=True)]

    @field_validator("bonus_at")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("bonus_at is not a time")
        return value
