"""Bedtime and a daily time limit, set by a parent (``play`` settings, pushed by the parent
app as desired config): outside them the bear answers kindly instead of playing.

The clock is injectable (tests, and a bear whose clock the cloud sets). Play time is counted
from the child's turns: the time since the previous turn when it is short (the child kept
playing), else :data:`TURN_S`; the count starts again each local day. With a state file
the day's count survives a restart (switching the bear off and on is no way round a
parent's limit): only the date and the seconds played are kept, written atomically.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import date, datetime, time
from pathlib import Path

from config.play import PlaySettings

logger = logging.getLogger(__name__)

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

    def __init__(self, settings: PlaySettings, clock: Clock | None = None,
                 state_file: Path | None = None) -> None:
        self._settings = settings
        self._clock = clock or datetime.now
        self._lock = threading.Lock()
        self._state_file = state_file
        self._day: date | None = None
        self._played_s = 0.0
        self._last: datetime | None = None
        self._day, self._played_s = _load(state_file)

    @property
    def played_s(self) -> float:
        """Seconds of play counted today so far."""
        return self._played_s

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
            if limit:
                _save(self._state_file, self._day, self._played_s)
        return None


def _load(path: Path | None) -> tuple[date | None, float]:
    """The day and seconds played kept in ``path``; nothing when absent or unreadable."""
    if path is None or not path.exists():
        return None, 0.0
    try:
        state = json.loads(path.read_text())
        played_s = float(state["played_s"])
        if not 0 <= played_s <= 86_400:
            raise ValueError(f"played_s {played_s} is not within a day")
        return date.fromisoformat(state["day"]), played_s
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("play time in %s unreadable (%s); counting today from 0", path, exc)
        return None, 0.0


def _save(path: Path | None, day: date | None, played_s: float) -> None:
    """Write the day's count atomically (temporary file, fsync, rename); a failure only logs."""
    if path is None or day is None or not path.parent.is_dir():
        return
    temporary = path.with_name(path.name + ".tmp")
    try:
        with temporary.open("w") as handle:
            json.dump({"day": day.isoformat(), "played_s": round(played_s, 1)}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        logger.warning("cannot keep play time in %s (%s)", path, exc)
