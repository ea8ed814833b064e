"""``up/health`` (a periodic health sample) and ``up/alerts`` (raised or cleared), both QoS 1.

Neither carries a transcript: metrics are numbers, alert messages one line, alert details
small machine-readable facts. The one exception is by design and bounded: a version-2
wellbeing alert may carry ``quote``, the exact (redacted) child line that raised it, so the
parent's inbox quotes those words and no others; the cloud seals it with the family's key
before it is stored, and nothing logs it. Version-1 alerts (older bears) carry no quote and
are still accepted.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from sync.protocol.base import MAX_SAFE_INT, Message, Timestamp
from sync.protocol.topics import Route

MetricValue = float | None
AlertState = Literal["raised", "cleared"]
AlertSeverity = Literal["info", "warning", "high", "critical"]
MAX_QUOTE_CHARS = 1000
"""Longest quote: the bear cuts a child's utterance at 1000 characters before anything else."""
CATEGORY_PATTERN = r"^[a-z][a-z0-9_.]{0,39}$"
"""A safety category's name as in the bear's ``categories.json`` (``self_harm``)."""


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

    v: Literal[1, 2] = 2
    """Schema version: 2 adds ``category``, ``quote``, ``conversation_id`` and ``turn_seq``
    (all optional); 1 (older bears) has none of them."""
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
    category: str | None = Field(default=None, pattern=CATEGORY_PATTERN)
    """v2, wellbeing alerts: the most urgent safety category of the filter's verdict."""
    quote: str | None = Field(default=None, min_length=1, max_length=MAX_QUOTE_CHARS)
    """v2, wellbeing alerts: the child's line that raised it, exactly as kept (redacted),
    only when the parent's consent lets conversations reach the app; never logged."""
    conversation_id: str | None = Field(default=None, min_length=1, max_length=64)
    """v2: the conversation of that line (as in ``up/turns``)."""
    turn_seq: int | None = Field(default=None, ge=1, le=MAX_SAFE_INT)
    """v2: the seq of that line (as in ``up/turns``): the transcript opens at it."""

    @field_validator("quote")
    @classmethod
    def _one_line_of_text(cls, quote: str | None) -> str | None:
        if quote is not None and any(ord(c) < 32 or ord(c) == 127 for c in quote):
            raise ValueError("quote holds a control character (one line of text only)")
        return quote

    @model_validator(mode="after")
    def _fields_of_its_version(self) -> AlertMessage:
        v2 = (self.category, self.quote, self.conversation_id, self.turn_seq)
        if self.v == 1 and any(f is not None for f in v2):
            raise ValueError("a version-1 alert has no category, quote or turn — send v 2")
        if (self.conversation_id is None) != (self.turn_seq is None):
            raise ValueError("conversation_id and turn_seq come together (the turn's place)")
        if self.quote is not None and not self.kind.startswith("wellbeing."):
            raise ValueError("only a wellbeing alert may carry a quote")
        return self
