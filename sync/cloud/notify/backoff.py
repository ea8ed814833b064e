"""Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And
Jitter"): attempt n waits ``uniform(0, min(cap, base * 2**(n-1)))`` seconds."""

from __future__ import annotations

import random


def backoff_bound(attempt: int, base_s: float, cap_s: float) -> float:
    """The longest wait after failed attempt number ``attempt`` (1-based), seconds."""
    return min(cap_s, base_s * 2 ** max(0, attempt - 1))


def full_jitter(attempt: int, base_s: float, cap_s: float,
                rng: random.Random | None = None) -> float:
    """A random wait in ``[0, backoff_bound(attempt)]``, seconds."""
    return (rng or random).uniform(0.0, backoff_bound(attempt, base_s, cap_s))
