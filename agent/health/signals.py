"""The agent's own signals: what the rest of the bear tells the health monitor.

Three shapes, each name declared once in :data:`SIGNALS` (a typo is an error, not a
silently ignored metric):

- gauges, set to the current value (``broker_connected``, ``outbox_depth``...);
- events, counted over ``health.event_window_s`` (``audio_overflows``, ``store_errors``...);
- observations, summarised as a 95th percentile over the window (recognition latency).

Parts that already raise alerts need not call anything: :meth:`Signals.on_alert` maps alert
kinds to event counts (``store.*`` -> ``store_errors``, ``wellbeing.escalation`` ->
``safety_escalations``...). Thread-safe.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from fnmatch import fnmatchcase

from agent.alerts import Alert
from config.errors import TeddyError

GAUGES = {
    "broker_connected": "1 while the MQTT link is up, 0 while it is down",
    "outbox_depth": "turns waiting for the cloud's ack, count",
    "oldest_unsynced_age_s": "age of the oldest turn waiting for the cloud, seconds",
}
EVENTS = {
    "audio_overflows": "microphone input overflows (samples lost), count in the window",
    "audio_device_errors": "microphone/speaker device losses, count in the window",
    "speech_errors": "speech output failures, count in the window",
    "store_errors": "conversation store failures, count in the window",
    "safety_escalations": "wellbeing escalations by the safety filter, count in the window",
}
OBSERVATIONS = {
    "recognition_latency": "end of speech to final transcript, seconds (reported as p95)",
}
SIGNALS = {**GAUGES, **EVENTS, **OBSERVATIONS}
"""Every signal the registry accepts, with its unit."""

ALERT_EVENTS: tuple[tuple[str, str], ...] = (
    ("audio.device_lost", "audio_device_errors"),
    ("audio.overflow*", "audio_overflows"),
    ("audio.speaker_failed", "speech_errors"),
    ("voice.speech_failed", "speech_errors"),
    ("store.*", "store_errors"),
    ("wellbeing.escalation", "safety_escalations"),
)
"""Alert kinds (fnmatch patterns) counted as events when raised directly by a part."""


class UnknownSignalError(TeddyError, LookupError):
    """A part fed a signal name the registry does not declare."""


def _check(name: str, table: dict[str, str]) -> None:
    if name not in table:
        raise UnknownSignalError(
            f"unknown health signal {name!r} — use one of: {', '.join(sorted(table))}"
        )


class Signals:
    """The registry other parts feed; :meth:`snapshot` turns it into metrics."""

    def __init__(self, window_s: float = 600.0, clock: Callable[[], float] = time.time) -> None:
        self.window_s = window_s
        """Events and observations older than this are forgotten, seconds."""
        self._clock = clock
        self._lock = threading.Lock()
        self._gauges: dict[str, float | None] = dict.fromkeys(GAUGES)
        self._events: dict[str, deque[tuple[float, int]]] = {n: deque() for n in EVENTS}
        self._totals: dict[str, int] = {}
        self._observed: dict[str, deque[tuple[float, float]]] = {n: deque() for n in OBSERVATIONS}

    def set(self, name: str, value: float | bool | None) -> None:
        """Set a gauge (None: unknown, e.g. no broker configured)."""
        _check(name, GAUGES)
        with self._lock:
            self._gauges[name] = None if value is None else float(value)

    def count(self, name: str, n: int = 1, at: float | None = None) -> None:
        """Count ``n`` events of ``name`` now (or at Unix time ``at``)."""
        _check(name, EVENTS)
        if n <= 0:
            return
        with self._lock:
            self._events[name].append((self._clock() if at is None else at, n))

    def total(self, name: str, running_total: int) -> None:
        """Feed a cumulative counter (e.g. ``MicStats.overflows``); counts its increase."""
        _check(name, EVENTS)
        with self._lock:
            previous = self._totals.get(name)
            self._totals[name] = running_total
        if previous is not None and running_total > previous:
            self.count(name, running_total - previous)

    def observe(self, name: str, value: float, at: float | None = None) -> None:
        """Record one observation (e.g. a recognition latency in seconds)."""
        _check(name, OBSERVATIONS)
        with self._lock:
            self._observed[name].append((self._clock() if at is None else at, float(value)))

    def on_alert(self, alert: Alert) -> None:
        """AlertSink listener: count directly raised alerts as events."""
        if alert.cleared or alert.rule is not None:
            return
        for pattern, event in ALERT_EVENTS:
            if fnmatchcase(alert.kind, pattern):
                self.count(event, at=alert.raised_at)
                return

    def snapshot(self, now: float | None = None) -> dict[str, float | None]:
        """Current metrics: gauges, event counts in the window, observation p95s."""
        now = self._clock() if now is None else now
        horizon = now - self.window_s
        with self._lock:
            metrics: dict[str, float | None] = dict(self._gauges)
            for name, events in self._events.items():
                _forget(events, horizon)
                metrics[name] = float(sum(n for _, n in events))
            for name, observed in self._observed.items():
                _forget(observed, horizon)
                metrics[f"{name}_p95_s"] = percentile([v for _, v in observed], 95)
        return metrics


def _forget(items: deque, horizon: float) -> None:
    while items and items[0][0] < horizon:
        items.popleft()


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
