"""A notification: one alert event (raised or cleared) as channels render it.

Built from an ``alerts`` row; never holds a transcript (the bear's alert messages are one
line, its details small facts such as categories).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

SEVERITIES = ("info", "warning", "high", "critical")
"""Least to most urgent."""


def severity_rank(name: str) -> int:
    """Position of ``name`` in :data:`SEVERITIES` (unknown names count as ``warning``)."""
    return SEVERITIES.index(name) if name in SEVERITIES else 1


@dataclass(frozen=True)
class Notification:
    """One alert event to deliver."""

    alert_id: int
    """Row id in ``alerts``."""
    event: Literal["raised", "cleared"]
    """Whether the alert was raised or has cleared."""
    device_id: str
    """The bear."""
    kind: str
    """Alert kind; ``wellbeing.*`` is for parents."""
    severity: str
    """Severity of the alert."""
    message: str
    """The bear's one-line message."""
    raised_at: datetime
    """When it was raised."""
    cleared_at: datetime | None = None
    """When it cleared (with ``event="cleared"``)."""
    details: dict[str, Any] = field(default_factory=dict)
    """Machine-readable facts."""
    parents: tuple[str, ...] = ()
    """E-mail addresses of the parents with an active consent for this bear (for
    ``to_parent`` channels); never put in logs."""

    @property
    def wellbeing(self) -> bool:
        """A child-wellbeing alert (goes to the parent only)."""
        return self.kind.startswith("wellbeing.")

    @property
    def dedupe_key(self) -> str:
        """Same key, same news: device, kind and event (for wellbeing alerts also the
        categories: a new kind of worry is news even within the window)."""
        key = f"{self.device_id}|{self.kind}|{self.event}"
        categories = self.details.get("categories") if self.wellbeing else None
        if isinstance(categories, list) and categories:
            key += "|" + ",".join(sorted(str(c) for c in categories))
        return key

    def subject(self) -> str:
        """A one-line title."""
        if self.wellbeing:
            head = "Teddy: your child may need you" if self.event == "raised" else \
                "Teddy: update"
            return f"{head} ({self.device_id})"
        state = "RESOLVED" if self.event == "cleared" else self.severity.upper()
        return f"[Teddy {state}] {self.kind} on {self.device_id}"

    def text(self) -> str:
        """A few lines for e-mail, chat and SMS."""
        if self.wellbeing and self.event == "raised":
            from sync.cloud.wellbeing import category_words, first_category, severity_words

            what = category_words(first_category(self.details.get("category"), self.details))
            return (f"Your bear {self.device_id} noticed something your child said that a "
                    f"grown-up should know about: {what} ({severity_words(self.severity)}, "
                    f"{self.raised_at:%Y-%m-%d %H:%M %Z}). Please talk with your child. "
                    "What your child said is only in the app, not in this e-mail.")
        when = self.cleared_at if self.event == "cleared" and self.cleared_at else self.raised_at
        verb = "cleared" if self.event == "cleared" else "raised"
        return (f"{self.kind} ({self.severity}) {verb} on {self.device_id} at "
                f"{when:%Y-%m-%d %H:%M:%S %Z}: {self.message}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON document a webhook receives."""
        return {
            "v": 1, "alert_id": self.alert_id, "event": self.event,
            "device_id": self.device_id, "kind": self.kind, "severity": self.severity,
            "message": self.message, "details": self.details,
            "raised_at": self.raised_at.isoformat(),
            "cleared_at": self.cleared_at.isoformat() if self.cleared_at else None,
        }

    def to_json(self) -> bytes:
        """:meth:`to_dict` as compact UTF-8 JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"), default=str).encode()
