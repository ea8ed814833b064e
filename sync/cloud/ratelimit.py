"""Token buckets, one per key: how ingest keeps one bear (or one flood of bad messages)
from taking what belongs to everyone."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBuckets:
    """A token bucket per key: ``rate`` tokens a second, at most ``burst`` saved up.

    Not thread-safe: ingest's one writer thread is its only user. Keys idle long enough
    to be full again are forgotten, so memory follows the active keys only.
    """

    def __init__(self, rate: float, burst: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        """Tokens added per second."""
        self.burst = max(burst, 1.0)
        """Most tokens a bucket holds."""
        self._clock = clock
        self._buckets: dict[object, tuple[float, float]] = {}
        self._swept = clock()

    def _level(self, key: object, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def take(self, key: object, cost: float = 1.0) -> float:
        """Take ``cost`` tokens for ``key``: 0.0 if granted, else the seconds until they would
        be (nothing is taken then). A cost above ``burst`` is granted from a full bucket and
        leaves it in debt, so a big but legitimate batch is slowed, never refused forever."""
        now = self._clock()
        self._sweep(now)
        level = self._level(key, now)
        if level >= min(cost, self.burst):
            self._buckets[key] = (level - cost, now)
            return 0.0
        self._buckets[key] = (level, now)
        need = min(cost, self.burst) - level
        return need / self.rate if self.rate > 0 else float("inf")

    def _sweep(self, now: float) -> None:
        if now - self._swept < 60.0 or self.rate <= 0:
            return
        self._swept = now
        full_after = self.burst / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}
