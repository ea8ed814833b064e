"""No text ever makes the safety filter raise: arbitrary unicode both ways (hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.processes import run_cli

from agent.safety import Action, default_filter

ACTIONS = set(Action)


def _valid(verdict) -> bool:
    return (verdict.action in ACTIONS and isinstance(verdict.redacted, str)
            and list(verdict.categories) == sorted(set(verdict.categories)))


def test_the_phone_number_with_a_plus_no_longer_crashes():
    verdict = default_filter().check_input("my dads phone is +44 7700 900123")
    assert verdict.action is Action.REDACT
    assert "7700" not in verdict.redacted and "900123" not in verdict.redacted
    said = default_filter().check_output("ring +44 7700 900123")  # the bear giving a number
    assert "900123" not in said.redacted and said.action in (Action.REDACT, Action.BLOCK)


def test_teddy_safety_check_survives_it(env):
    result = run_cli("teddy", "safety", "check", "my dads phone is +44 7700 900123", env=env)
    assert '"redact"' in result.stdout and "900123" not in result.stdout


_TEXT = st.text(st.characters(codec="utf-8"), max_size=120)
_PHONEY = st.lists(st.sampled_from(["+", "+44", "7700", "900123", "oh", "double", "seven",
                                    "phone", " ", "-", "(", ")", "@", "at", "dot", "com",
                                    "my name is", "St", "road", "1234567", "٣٣٣", "²"]),
                   max_size=20).map(" ".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_TEXT, _PHONEY))
def test_any_text_gets_a_valid_verdict_both_ways(text):
    safety = default_filter()
    assert _valid(safety.check_input(text))
    assert _valid(safety.check_output(text))
    assert _valid(safety.check_input(text, history=[text, "hello"]))
