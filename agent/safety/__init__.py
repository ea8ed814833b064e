"""The child-safety filter: input and output checks, PII redaction, escalation.

Build one :class:`SafetyFilter` at start-up (``default_filter()``), then call
``check_input`` on the child's words and ``check_output`` on everything the bear would
say. Word lists, patterns and folding tables are data files beside this code.
"""

from __future__ import annotations

from functools import lru_cache

from agent.safety.errors import SafetyListError
from agent.safety.filter import SafetyFilter
from agent.safety.verdict import Action, Match, Verdict

WELLBEING_CATEGORIES: frozenset[str] = frozenset(
    {"self_harm", "abuse", "secrets", "distress", "bullying", "medical_emergency"}
)
"""Categories that escalate: answer gently, point to a trusted grown-up, alert the parent."""

HARMFUL_INPUT_CATEGORIES: frozenset[str] = WELLBEING_CATEGORIES | {
    "profanity", "sexual", "violence", "dangerous", "drugs_alcohol", "hate"
}
"""Categories of the child's words that the bear never repeats (block or escalate)."""

OUTPUT_ONLY_CATEGORIES: frozenset[str] = frozenset(
    {"asks_pii", "encourages_secrecy", "strangers", "dangerous_instructions",
     "medical_advice", "guilt_trip"}
)
"""Categories checked only on what the bear says."""

SAFE_FALLBACK_REPLY = "Let's talk about something else. Shall I tell you a story or a joke?"
"""Spoken instead of any reply that fails ``check_output``; passes it itself (tested)."""


@lru_cache(maxsize=1)
def default_filter() -> SafetyFilter:
    """The filter built from the packaged data files, built once per process."""
    return SafetyFilter.load()


__all__ = [
    "Action",
    "HARMFUL_INPUT_CATEGORIES",
    "Match",
    "OUTPUT_ONLY_CATEGORIES",
    "SAFE_FALLBACK_REPLY",
    "SafetyFilter",
    "SafetyListError",
    "Verdict",
    "WELLBEING_CATEGORIES",
    "default_filter",
]
