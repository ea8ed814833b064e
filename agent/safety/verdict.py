"""What the safety filter decides about one text, as a value the rest of the bear can keep."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Action(StrEnum):
    """What to do with a text, mildest first."""

    ALLOW = "allow"
    """Nothing found: use the text as it is."""
    REDACT = "redact"
    """Personal information found: use ``Verdict.redacted`` instead of the text."""
    BLOCK = "block"
    """Unsafe content: never repeat it; the bear steers away."""
    ESCALATE = "escalate"
    """A child's wellbeing is at stake: answer gently, point to a trusted grown-up, alert."""

    @property
    def severity(self) -> int:
        """Rank for combining verdicts: the most severe action wins."""
        return _SEVERITY[self]


_SEVERITY = {Action.ALLOW: 0, Action.REDACT: 1, Action.BLOCK: 2, Action.ESCALATE: 3}


@dataclass(frozen=True)
class Match:
    """One rule that fired. Names the rule, never the matched personal information."""

    category: str
    """Category of the rule, e.g. ``"pii.phone"`` or ``"dangerous"``."""
    rule: str
    """Stable identifier of the rule or list entry that fired (safe to log)."""


@dataclass(frozen=True)
class Verdict:
    """The filter's decision about one text."""

    action: Action
    """What to do with the text."""
    categories: tuple[str, ...]
    """Categories that fired, sorted, without duplicates."""
    redacted: str
    """The text with personal information replaced by placeholders like ``[phone]``."""
    matches: tuple[Match, ...] = field(default_factory=tuple)
    """Which rules fired (for explanation and tuning; contains no PII)."""
    stage: str = "rules"
    """Which stage decided: ``"rules"`` (word lists, patterns) or ``"semantic"`` (nearest
    exemplar by meaning; for an allowed text: both stages ran and found nothing)."""
    nearest: str | None = None
    """For a semantic verdict: the labelled exemplar nearest in meaning (tuning data)."""
    similarity: float | None = None
    """For a semantic verdict: cosine similarity to ``nearest``."""
    severity: str | None = None
    """For an escalation: ``"high"`` (page the parent) or ``"low"`` (a note in the daily
    summary), from the most severe escalating category (``categories.json``)."""
    context: bool = False
    """True when the last few turns together, not this text alone, decided."""

    @property
    def allowed(self) -> bool:
        """Whether the (redacted) text may be used as it is."""
        return self.action in (Action.ALLOW, Action.REDACT)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, as kept in the store and printed by ``teddy safety check``."""
        data: dict[str, Any] = {
            "action": self.action.value,
            "categories": list(self.categories),
            "redacted": self.redacted,
            "matches": [{"category": m.category, "rule": m.rule} for m in self.matches],
            "stage": self.stage,
        }
        if self.nearest is not None:
            data["nearest"] = self.nearest
            data["similarity"] = round(float(self.similarity or 0.0), 4)
        if self.severity is not None:
            data["severity"] = self.severity
        if self.context:
            data["context"] = True
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        """Rebuild a verdict from :meth:`to_dict` output."""
        return cls(
            action=Action(data["action"]),
            categories=tuple(data["categories"]),
            redacted=data["redacted"],
            matches=tuple(Match(m["category"], m["rule"]) for m in data.get("matches", ())),
            stage=data.get("stage", "rules"),
            nearest=data.get("nearest"),
            similarity=data.get("similarity"),
            severity=data.get("severity"),
            context=bool(data.get("context", False)),
        )
