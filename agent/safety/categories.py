"""The safety categories as the rest of the bear sees them, all from ``categories.json``.

``categories.json`` is the one place a category is declared: what it does on the child's
words and on the bear's, the parent alert's severity, the phrase set the bear answers with,
and its priority among the categories that fired together. The orders below are derived
from it once, at import, from the packaged file.
"""

from __future__ import annotations

from pathlib import Path

from agent.safety.errors import SafetyListError
from agent.safety.filter import CategoryPolicy, read_policies
from agent.safety.verdict import Action

CATEGORIES_FILE = Path(__file__).with_name("categories.json")
"""The packaged category table."""


def answer_order(policies: dict[str, CategoryPolicy], action: Action) -> tuple[str, ...]:
    """Categories whose ``input`` action is ``action``, lowest ``priority`` first (then by
    name); :class:`SafetyListError` if one lacks a priority or a reply."""
    chosen = {name: p for name, p in policies.items() if p.input is action}
    lacking = sorted(n for n, p in chosen.items() if p.priority is None or p.reply is None)
    if lacking:
        raise SafetyListError(f"categories {lacking} {action.value} the child's words but have "
                              "no priority or reply in categories.json — give them both")
    return tuple(sorted(chosen, key=lambda name: (chosen[name].priority, name)))


def replies(policies: dict[str, CategoryPolicy]) -> dict[str, tuple[str, ...]]:
    """Category -> the phrase set (section, key) the bear answers with, where it has one."""
    return {name: p.reply for name, p in policies.items() if p.reply is not None}


POLICIES = read_policies(CATEGORIES_FILE)
"""Every packaged category's policy."""
ESCALATION_ORDER = answer_order(POLICIES, Action.ESCALATE)
"""Which wellbeing answer wins when several categories fired, most urgent first."""
BLOCK_ORDER = answer_order(POLICIES, Action.BLOCK)
"""Which steer-away answer wins when several categories fired."""
WELLBEING_CATEGORIES = frozenset(ESCALATION_ORDER)
"""Categories that escalate: answer gently, point to a trusted grown-up, alert the parent."""
REPLIES = replies(POLICIES)
"""Category -> the phrase set the bear answers with."""
