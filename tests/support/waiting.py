"""The one polling loop of the tests: wait for a condition, with a deadline, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, what: str | Callable[[], str],
               interval: float = 0.02) -> T:
    """Poll ``condition()`` until it returns something true; returns that value.

    After ``timeout`` seconds raises :class:`TimeoutError` naming ``what`` was awaited (a
    callable ``what`` is called only then, e.g. to show a log) and the last value seen.
    """
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() >= deadline:
            described = what() if callable(what) else what
            raise TimeoutError(f"timed out after {timeout} s waiting for {described} "
                               f"(last saw {value!r})")
        time.sleep(interval)
    return value
