"""The alert hook: how any part of the bear says "a person should know about this".

Any part raises an alert here; alerts are kept in memory, logged (without transcripts), and
handed to every subscriber. :mod:`agent.health` subscribes: it journals every alert locally
(offline-safe) for ``up/alerts``, counts them as signals, and raises and clears its own
rule-driven alerts through :meth:`AlertSink.emit` (hysteresis, suppression, correlation).
No listener speaks an alert: wellbeing escalations never reach the child's ears.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

logger = logging.getLogger(__name__)


class Severity(StrEnum):
    """How urgently a person should look."""

    INFO = "info"
    WARNING = "warning"
    HIGH = "high"
    CRITICAL = "critical"


@dataclass(frozen=True)
class Alert:
    """One raised alert."""

    kind: str
    """Stable machine name, e.g. ``"wellbeing.escalation"`` or ``"audio.device_lost"``."""
    severity: Severity
    """How urgent it is."""
    message: str
    """One line for a person; never a transcript, a key or a password."""
    details: dict[str, Any] = field(default_factory=dict)
    """Machine-readable facts (categories, counts); never a transcript."""
    raised_at: float = field(default_factory=time.time)
    """Unix time, seconds."""
    rule: str | None = None
    """The health rule that raised it; None for an alert raised directly by a part."""
    cleared: bool = False
    """True when this announces that the condition of ``kind`` is over."""


AlertListener = Callable[[Alert], None]


class AlertSink:
    """Collects alerts and hands each to its listeners. Thread-safe."""

    def __init__(self, keep: int = 1000) -> None:
        self._lock = threading.Lock()
        self._alerts: list[Alert] = []
        self._listeners: list[AlertListener] = []
        self._keep = keep

    def subscribe(self, listener: AlertListener) -> None:
        """Call ``listener(alert)`` for every alert raised from now on."""
        with self._lock:
            self._listeners.append(listener)

    def raise_alert(
        self, kind: str, severity: Severity | str, message: str, **details: Any
    ) -> Alert:
        """Record an alert, log it, and notify listeners; returns the alert."""
        return self.emit(Alert(kind, Severity(severity), message, dict(details)))

    def clear_alert(self, kind: str, message: str = "", **details: Any) -> Alert:
        """Announce that the condition behind ``kind`` is over; returns the clearing alert."""
        return self.emit(Alert(kind, Severity.INFO, message or f"{kind} cleared",
                               dict(details), cleared=True))

    def emit(self, alert: Alert) -> Alert:
        """Record a prepared alert (raised or cleared), log it, and notify listeners."""
        with self._lock:
            self._alerts.append(alert)
            del self._alerts[: -self._keep]
            listeners = list(self._listeners)
        if alert.cleared:
            logger.info("alert %s cleared: %s", alert.kind, alert.message)
        else:
            logger.warning("alert %s (%s): %s", alert.kind, alert.severity.value, alert.message)
        for listener in listeners:
            try:
                listener(alert)
            except Exception:
                logger.exception("alert listener %r failed for alert %s", listener, alert.kind)
        return alert

    def recent(self, kind: str | None = None) -> list[Alert]:
        """Alerts kept in memory, oldest first, optionally only of one kind."""
        with self._lock:
            return [a for a in self._alerts if kind is None or a.kind == kind]
