"""``up/health`` (a periodic health sample) and ``up/alerts`` (raised or cleared), both QoS 1.

Neither ever carries a transcript: metrics are numbers, alert messages one line, alert
details small machine-readable facts.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator

from sync.protocol.base import Message, Timestamp
from sync.protocol.topics import Route

MetricValue = float | None
AlertState = Literal["raised", "cleared"]
AlertSeverity = Literal["info", "warning", "high", "critical"]


class HealthSample(Message):
    """``up/health``: one sample of the bear's own health."""

    ROUTE: ClassVar[Route] = Route("up", "health", ingested=True)

    MAX_BYTES: ClassVar[int] = 16 * 1024

    v: Literal[1] = 1
    """Schema version."""
    device_id: str = Field(min_length=3, max_length=64)
    """The sending bear; must equal the device id in the topic."""
    sampled_at: Timestamp
    """When the sample was taken, Unix time in seconds."""
    metrics: dict[str, MetricValue] = Field(max_length=128)
    """Metric name -> value in the metric's unit (None: unknown on this machine)."""
    open_alerts: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list,
                                                                   max_length=64)
    """Kinds of the alerts open right now."""

    @field_validator("metrics")
    @classmethod
    def _short_names(cls, metrics: dict[str, MetricValue]) -> dict[str, MetricValue]:
        long = [name for name in metrics if len(name) > 64]
        if long:
            raise ValueError(f"metric name {long[0][:70]!r} is longer than 64 characters")
        return metrics


class AlertMessage(Message):
    """``up/alerts``: an alert raised or cleared on the bear."""

    ROUTE: ClassVar[Route] = Route("up", "alerts", ingested=True)

    MAX_BYTES: ClassVar[int] = 8 * 1024

    v: Literal[1] = 1
    """Schema version."""
    device_id: str = Field(min_length=3, max_length=64)
    """The sending bear; must equal the device id in the topic."""
    alert_id: str = Field(min_length=1, max_length=64)
    """Stable id of the alert on the bear; its raise and its clear carry the same id."""
    state: AlertState
    """Whether this announces the alert or its end."""
    kind: str = Field(min_length=1, max_length=100)
    """Alert kind, e.g. ``"sync.broker_unreachable"``; ``wellbeing.*`` goes to parents."""
    severity: AlertSeverity
    """How urgent it is."""
    message: str = Field(max_length=500)
    """One line for a person; never a transcript."""
    rule: str | None = Field(default=None, max_length=64)
    """The bear's health rule that raised it; None for a one-shot alert from a part."""
    details: dict[str, Any] = Field(default_factory=dict)
    """Machine-readable facts (numbers, categories)."""
    raised_at: Timestamp
    """Unix time in seconds."""
    cleared_at: Timestamp | None = None
    """Unix time in seconds, with ``state="cleared"``."""
