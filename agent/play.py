"""Bedtime and a daily time limit, set by a parent (``play`` settings, pushed by the parent
app as desired config): outside them the bear answers kindly instead of playing.

The clock is injectable (tests, and a bear whose clock the cloud sets). Play time is counted
from the child's turns: the time since the previous turn when it is short (the child kept
playing), else :data:`TURN_S`; the count starts again each local day (and at a restart).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date, datetime, time

from config.play import PlaySettings

TURN_S = 20.0
"""Seconds of play one turn counts when the previous one was long ago."""
GAP_S = 120.0
"""Turns closer than this are one stretch of play."""
QUIET_REPLY = ("It's quiet time now, so Teddy is resting. Let's have a cuddle and talk "
               "again tomorrow. Sleep well!")
LIMIT_REPLY = ("We've played a lot today! Teddy needs a rest now. Let's play again "
               "tomorrow.")

Clock = Callable[[], datetime]


def _at(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


class PlayLimits:
    """Decides, before each turn, whether the bear may play now."""

    def __init__(self, settings: PlaySettings, clock: Clock | None = None) -> None:
        self._settings = settings
        self._clock = clock or datetime.now
        self._lock = threading.Lock()
        self._day: date | None = None
        self._played_s = 0.0
        self._last: datetime | None = None

    def quiet_now(self, now: datetime) -> bool:
        """Whether ``now`` (local time) is within quiet hours."""
        start, end = self._settings.quiet_from, self._settings.quiet_until
        if not start or not end:
            return False
        t, a, b = now.time(), _at(start), _at(end)
        return a <= t < b if a <= b else (t >= a or t < b)

    def refusal(self) -> str | None:
        """The kind answer to give instead of playing now, or None to play (and count it)."""
        now = self._clock()
        if self.quiet_now(now):
            return QUIET_REPLY
        limit = self._settings.daily_limit_min
        with self._lock:
            if self._day != now.date():
                self._day, self._played_s, self._last = now.date(), 0.0, None
            if limit and self._played_s >= limit * 60:
                return LIMIT_REPLY
            gap = None if self._last is None else (now - self._last).total_seconds()
            self._played_s += gap if gap is not None and 0 <= gap < GAP_S else TURN_S
            self._last = now
        return None
