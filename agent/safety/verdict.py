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

    @property
    def allowed(self) -> bool:
        """Whether the (redacted) text may be used as it is."""
        return self.action in (Action.ALLOW, Action.REDACT)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, as kept in the store and printed by ``teddy safety check``."""
        return {
            "action": self.action.value,
            "categories": list(self.categories),
            "redacted": self.redacted,
            "matches": [{"category": m.category, "rule": m.rule} for m in self.matches],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        """Rebuild a verdict from :meth:`to_dict` output."""
        return cls(
            action=Action(data["action"]),
            categories=tuple(data["categories"]),
            redacted=data["redacted"],
            matches=tuple(Match(m["category"], m["rule"]) for m in data.get("matches", ())),
        )
