"""``agent/safety/categories.json`` is the one place a category's answer and priority live."""

from __future__ import annotations

import json

import pytest

from agent.safety.categories import (
    BLOCK_ORDER,
    CATEGORIES_FILE,
    ESCALATION_ORDER,
    REPLIES,
    WELLBEING_CATEGORIES,
    answer_order,
)
from agent.safety.errors import SafetyListError
from agent.safety.filter import read_policies
from agent.safety.verdict import Action


def with_category(tmp_path, name: str, spec: dict):
    table = json.loads(CATEGORIES_FILE.read_text())
    table[name] = spec
    path = tmp_path / "categories.json"
    path.write_text(json.dumps(table))
    return read_policies(path)


def test_the_packaged_orders_are_the_ones_the_bear_always_had():
    assert ESCALATION_ORDER == ("medical_emergency", "self_harm", "abuse", "lures", "secrets",
                                "bullying", "distress")
    assert BLOCK_ORDER == ("sexual", "violence", "dangerous", "drugs_alcohol", "hate",
                           "profanity")
    assert WELLBEING_CATEGORIES == set(ESCALATION_ORDER)
    assert REPLIES["lures"] == ("escalate", "lures") and REPLIES["hate"] == ("block", "hate")


@pytest.mark.parametrize("priority, place", [(0, 0), (3, 3), (99, 7)])
def test_a_category_added_with_a_priority_is_ordered_by_it(tmp_path, priority, place):
    policies = with_category(tmp_path, "online_stranger", {
        "input": "escalate", "output": "block", "severity": "high",
        "reply": "escalate.lures", "priority": priority})
    order = answer_order(policies, Action.ESCALATE)
    assert order.index("online_stranger") == place
    assert [c for c in order if c != "online_stranger"] == list(ESCALATION_ORDER)
    assert policies["online_stranger"].reply == ("escalate", "lures")


def test_a_blocking_category_is_ordered_among_the_blocking_ones_only(tmp_path):
    policies = with_category(tmp_path, "gambling", {"input": "block", "output": "block",
                                                    "reply": "block.other", "priority": 9})
    assert answer_order(policies, Action.BLOCK)[:3] == ("sexual", "gambling", "violence")
    assert "gambling" not in answer_order(policies, Action.ESCALATE)


def test_an_answering_category_without_a_priority_or_reply_is_refused(tmp_path):
    policies = with_category(tmp_path, "gambling", {"input": "block", "output": "block"})
    with pytest.raises(SafetyListError, match=r"\['gambling'\] block the child's words"):
        answer_order(policies, Action.BLOCK)


@pytest.mark.parametrize("spec, message", [
    ({"input": "block", "output": "block", "reply": "other", "priority": 1}, "reply 'other'"),
    ({"input": "block", "output": "block", "reply": "block.x", "priority": "1"},
     "priority '1'"),
])
def test_a_malformed_reply_or_priority_is_one_line_naming_it(tmp_path, spec, message):
    with pytest.raises(SafetyListError, match=message):
        with_category(tmp_path, "gambling", spec)
