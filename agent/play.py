"""Bedtime, a daily time limit, bonus time and pause, set by a parent (``play`` settings,
pushed by the parent app as desired config): outside them the bear answers kindly instead
of playing.

Quiet hours are one window for every day (``quiet_from``/``quiet_until``) or one per
weekday (``weekly``); a window that spans midnight belongs to the evening it starts on, so
Friday's 21:00-08:00 keeps Saturday morning quiet until 08:00 whatever Saturday's says.
Bonus minutes count only on the bear-local day they were given (they expire at midnight).

The clock is injectable (tests, and a bear whose clock the cloud sets). Play time is counted
from the child's turns: the time since the previous turn when it is short (the child kept
playing), else :data:`TURN_S`; the count starts again each local day. With a state file
the day's count survives a restart (switching the bear off and on is no way round a
parent's limit): only the date and the seconds played are kept, written atomically (the
health sampler reads it back as ``play_today_min`` for the parent's dashboard).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
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
PAUSE_REPLY = "Teddy is having a little rest right now. Let's talk again soon!"
STATE_FILE = "play.json"
"""The day's play count, in the bear's data dir."""

Clock = Callable[[], datetime]


def _at(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


class PlayLimits:
    """Decides, before each turn, whether the bear may play now."""

    def __init__(self, settings: PlaySettings, clock: Clock | None = None,
                 state_file: Path | None = None,
                 name: Callable[[], str | None] | None = None) -> None:
        self._settings = settings
        self._name = name
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

    def window(self, day: date) -> tuple[time, time] | None:
        """The quiet hours that start on ``day`` (the weekday's, or the every-day window)."""
        weekly = self._settings.weekly
        if weekly is not None:
            text = weekly[day.weekday()]
            if not text:
                return None
            start, end = text.split("-")
        else:
            start, end = self._settings.quiet_from or "", self._settings.quiet_until or ""
            if not start or not end:
                return None
        return _at(start), _at(end)

    def quiet_now(self, now: datetime) -> bool:
        """Whether ``now`` (local time) is within quiet hours: today's window, or the end of
        yesterday's when it spans midnight."""
        t = now.time()
        today = self.window(now.date())
        if today is not None and (today[0] <= t < today[1] if today[0] <= today[1]
                                  else t >= today[0]):
            return True
        yesterday = self.window(now.date() - timedelta(days=1))
        return yesterday is not None and yesterday[0] > yesterday[1] and t < yesterday[1]

    def limit_s(self, now: datetime) -> float:
        """Seconds of play allowed on ``now``'s day: the daily limit plus today's bonus
        (0: no limit)."""
        limit = self._settings.daily_limit_min
        if not limit:
            return 0.0
        bonus, given = self._settings.bonus_min, self._settings.bonus_at
        if bonus and given is not None and datetime.fromtimestamp(given).date() == now.date():
            limit += bonus
        return limit * 60.0

    def _kind(self, reply: str) -> str:
        name = self._name() if self._name is not None else None
        if not name:
            return reply
        first, _, rest = reply.partition(". ")
        return f"{first}, {name}. {rest}" if rest else reply

    def refusal(self) -> str | None:
        """The kind answer to give instead of playing now, or None to play (and count it)."""
        now = self._clock()
        if self._settings.paused:
            return self._kind(PAUSE_REPLY)
        if self.quiet_now(now):
            return self._kind(QUIET_REPLY)
        limit_s = self.limit_s(now)
        with self._lock:
            if self._day != now.date():
                self._day, self._played_s, self._last = now.date(), 0.0, None
            if limit_s and self._played_s >= limit_s:
                return self._kind(LIMIT_REPLY)
            gap = None if self._last is None else (now - self._last).total_seconds()
            self._played_s += gap if gap is not None and 0 <= gap < GAP_S else TURN_S
            self._last = now
            _save(self._state_file, self._day, self._played_s)
        return None


def played_today_min(path: Path, today: date | None = None) -> float | None:
    """Minutes played on ``today`` (local) from the state file; 0 when it is of another day,
    None when there is none."""
    day, played_s = _load(path) if path.exists() else (None, 0.0)
    if day is None:
        return None
    return round(played_s / 60, 1) if day == (today or date.today()) else 0.0


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
