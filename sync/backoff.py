"""Retry delays: exponential backoff with full jitter.

After a broker restart a whole fleet of bears loses its connection at the same moment; a
plain doubling delay would bring them back in lockstep. Full jitter (AWS architecture blog,
"Exponential Backoff And Jitter") draws each delay uniformly between zero and the current
ceiling, and the ceiling doubles per failure up to a maximum, so retries spread over the
whole window: attempt n waits ``uniform(0, min(cap, base * 2**(n-1)))`` seconds.

:class:`Backoff` counts the failures itself (MQTT reconnects); :func:`full_jitter` serves
callers that count their own attempts (notification deliveries).
"""

from __future__ import annotations

import random

_MAX_DOUBLINGS = 32
"""Doublings beyond this change nothing but could overflow a float."""


def backoff_bound(attempt: int, base_s: float, cap_s: float) -> float:
    """The longest wait after failed attempt number ``attempt`` (1-based), seconds."""
    return min(cap_s, base_s * 2 ** min(max(0, attempt - 1), _MAX_DOUBLINGS))


def full_jitter(attempt: int, base_s: float, cap_s: float,
                rng: random.Random | None = None) -> float:
    """A random wait in ``[0, backoff_bound(attempt)]``, seconds."""
    return (rng or random).uniform(0.0, backoff_bound(attempt, base_s, cap_s))


class Backoff:
    """Delays for successive reconnect attempts; :meth:`reset` after a success."""

    def __init__(self, minimum: float, maximum: float, rng: random.Random | None = None) -> None:
        if minimum <= 0 or maximum < minimum:
            raise ValueError(f"backoff needs 0 < minimum <= maximum, got {minimum}, {maximum}")
        self.minimum = minimum
        """Ceiling of the first delay, seconds."""
        self.maximum = maximum
        """Largest ceiling, seconds."""
        self.failures = 0
        """Attempts failed since the last success."""
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        """The current ceiling: ``minimum * 2**failures``, capped at ``maximum``, seconds."""
        return backoff_bound(self.failures + 1, self.minimum, self.maximum)

    def next_delay(self) -> float:
        """A delay drawn uniformly from ``[0, ceiling]`` seconds; the ceiling then doubles."""
        delay = full_jitter(self.failures + 1, self.minimum, self.maximum, self._rng)
        self.failures += 1
        return delay

    def reset(self) -> None:
        """A connection succeeded: start again from the smallest ceiling."""
        self.failures = 0
