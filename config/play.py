"""Settings section ``play``: when the bear plays. A parent sets bedtime (quiet hours) and a
daily time limit in the parent app; the fleet pushes them as desired config and the bear
answers kindly instead of playing outside them."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from config.settings import Section

HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class PlaySettings(Section):
    """Quiet hours and a daily time limit, enforced by the bear itself."""

    quiet_from: str | None = None
    """Start of quiet hours, local time ``HH:MM`` (e.g. ``"19:30"``); None: no quiet hours."""
    quiet_until: str | None = None
    """End of quiet hours, local time ``HH:MM`` (e.g. ``"07:00"``); may be before
    ``quiet_from`` (the quiet hours then span midnight)."""
    daily_limit_min: int = Field(default=0, ge=0, le=24 * 60)
    """Minutes of play a day (counted from the child's turns); 0: no limit."""

    @field_validator("quiet_from", "quiet_until")
    @classmethod
    def _hhmm(cls, value: str | None) -> str | None:
        if value is not None and value != "" and not HHMM.match(value):
            raise ValueError(f"{value!r} is not a time HH:MM, e.g. 19:30")
        return value or None
