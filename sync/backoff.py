"""Reconnect delays: exponential backoff with full jitter.

After a broker restart a whole fleet of bears loses its connection at the same moment; a
plain doubling delay would bring them back in lockstep. Full jitter draws each delay
uniformly between zero and the current ceiling, and the ceiling doubles per failure up to
a maximum, so reconnects spread over the whole window.
"""

from __future__ import annotations

import random


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
        return min(self.maximum, self.minimum * (2 ** min(self.failures, 32)))

    def next_delay(self) -> float:
        """A delay drawn uniformly from ``[0, ceiling]`` seconds; the ceiling then doubles."""
        delay = self._rng.uniform(0.0, self.ceiling())
        self.failures += 1
        return delay

    def reset(self) -> None:
        """A connection succeeded: start again from the smallest ceiling."""
        self.failures = 0
