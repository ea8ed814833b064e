"""The alert rules engine: every built-in rule fires and clears on synthetic samples, with
its duration and hysteresis; suppression per rule and device; correlation."""

from __future__ import annotations

import pytest

from agent.health.rules import Rule, RuleEngine, rules_from_settings
from config.errors import ConfigError
from config.health import DEFAULT_RULES, HealthSettings
from config.settings import load_settings


def _engine(*names: str, **overrides) -> RuleEngine:
    health = HealthSettings(**overrides)
    return RuleEngine([r for r in rules_from_settings(health) if not names or r.name in names])


def _step(threshold: float) -> float:
    return max(1.0, abs(threshold) * 0.1)


def _breach(rule: Rule) -> float:
    s = rule.settings
    return {">": s.threshold + _step(s.threshold), ">=": s.threshold,
            "<": s.threshold - _step(s.threshold), "<=": s.threshold}[s.op]


def _clearing(rule: Rule) -> float:
    s = rule.settings
    return s.clear - 1.0 if s.op in (">", ">=") else s.clear + 1.0


def test_there_are_at_least_fifteen_rules_with_distinct_kinds():
    kinds = [r.kind for r in DEFAULT_RULES.values()]
    assert len(DEFAULT_RULES) >= 15
    assert len(set(kinds)) == len(kinds)


@pytest.mark.parametrize("name", sorted(DEFAULT_RULES))
def test_each_rule_fires_after_its_duration_and_clears_past_hysteresis(name):
    engine = _engine(name)
    rule = engine.rules[0]
    metric, for_s = rule.settings.metric, rule.settings.for_s
    assert engine.evaluate({metric: _clearing(rule)}, now=0.0) == []
    first = engine.evaluate({metric: _breach(rule)}, now=10.0)
    if for_s > 0:
        assert first == [], "fired before its duration"
        assert engine.evaluate({metric: _breach(rule)}, now=10.0 + for_s / 2) == []
        first = engine.evaluate({metric: _breach(rule)}, now=10.0 + for_s)
    assert [(e.action, e.kind, e.severity) for e in first] == [
        ("raise", rule.settings.kind, rule.settings.severity)]
    assert engine.open_alerts() == [name]
    if rule.settings.clear != rule.settings.threshold:
        # Between clear and threshold: no longer breached, but not cleared either.
        assert engine.evaluate({metric: rule.settings.clear}, now=20.0 + for_s) == []
        assert engine.open_alerts() == [name]
    cleared = engine.evaluate({metric: _clearing(rule)}, now=30.0 + for_s)
    assert [(e.action, e.kind) for e in cleared] == [("clear", rule.settings.kind)]
    assert engine.open_alerts() == []


def test_a_breach_shorter_than_the_duration_never_fires():
    engine = _engine("cpu_high")
    for t, value in [(0, 95), (60, 95), (100, 50), (130, 95), (200, 95)]:
        assert engine.evaluate({"cpu_percent": value}, now=t) == []
    assert [e.action for e in engine.evaluate({"cpu_percent": 95}, now=250)] == ["raise"]


def test_missing_metric_neither_fires_nor_clears():
    engine = _engine("disk_low")
    assert [e.action for e in engine.evaluate({"disk_free_mb": 50}, now=0)] == ["raise"]
    assert engine.evaluate({"disk_free_mb": None}, now=10) == []
    assert engine.evaluate({}, now=20) == []
    assert engine.open_alerts() == ["disk_low"]


def test_message_names_the_value_and_threshold():
    engine = _engine("memory_high", **{"rules": {"memory_high": {"for_s": 0}}})
    (event,) = engine.evaluate({"memory_percent": 97.0}, now=0)
    assert "97%" in event.message and "90%" in event.message
    assert event.details == {"value": 97.0, "threshold": 90.0}


# --- suppression ------------------------------------------------------------------------


def test_flapping_alert_is_suppressed_within_the_window_per_rule_and_device():
    engine = _engine("disk_low", suppress_s=600)
    low, ok = {"disk_free_mb": 100}, {"disk_free_mb": 1000}
    assert [e.action for e in engine.evaluate(low, 0, "bear-a")] == ["raise"]
    assert [e.action for e in engine.evaluate(ok, 10, "bear-a")] == ["clear"]
    again = engine.evaluate(low, 20, "bear-a")
    assert [e.action for e in again] == ["suppressed"]
    # Another device is not suppressed by bear-a's window.
    assert [e.action for e in engine.evaluate(low, 20, "bear-b")] == ["raise"]
    # A suppressed alert that clears says nothing (it was never announced).
    assert engine.evaluate(ok, 30, "bear-a") == []
    assert [e.action for e in engine.evaluate(low, 40, "bear-a")] == ["suppressed"]
    # Still breached when the window ends: announced then, with the count held back.
    assert engine.evaluate(low, 300, "bear-a") == []
    (late,) = engine.evaluate(low, 600, "bear-a")
    assert late.action == "raise" and late.details["suppressed"] == 2


def test_suppression_window_comes_from_config_per_rule():
    engine = _engine("disk_low", suppress_s=600, rules={"disk_low": {"suppress_s": 0}})
    actions = [e.action for t, v in [(0, 100), (1, 1000), (2, 100)]
               for e in engine.evaluate({"disk_free_mb": v}, t)]
    assert actions == ["raise", "clear", "raise"]


# --- correlation ------------------------------------------------------------------------


def _sync_metrics(connected: float, depth: float, age: float) -> dict:
    return {"broker_connected": connected, "outbox_depth": depth, "oldest_unsynced_age_s": age}


def test_broker_unreachable_explains_the_backlog_one_alert_not_three():
    engine = _engine()
    events = []
    for t in range(0, 3600, 15):  # an hour offline while the backlog and its age grow
        events += engine.evaluate(_sync_metrics(0, 10 * t, 90000 + t), now=t)
    assert [(e.action, e.kind) for e in events] == [("raise", "sync.broker_unreachable")]
    assert set(engine.explained()) == {"backlog_growing", "unsynced_too_old"}
    # Back online, the backlog drains within its duration: still nothing more.
    later = [e for t in range(3600, 3900, 15)
             for e in engine.evaluate(_sync_metrics(1, max(0, 36000 - 200 * (t - 3600)), 0), t)]
    assert [(e.action, e.kind) for e in later] == [("clear", "sync.broker_unreachable")]


def test_backlog_without_a_broker_problem_is_its_own_alert():
    engine = _engine()
    events = [e for t in range(0, 400, 15)
              for e in engine.evaluate(_sync_metrics(1, 1000, 10), now=t)]
    assert [(e.action, e.kind) for e in events] == [("raise", "sync.backlog")]


def test_cause_raised_names_the_effects_it_explains():
    engine = _engine(rules={"broker_unreachable": {"for_s": 0}})
    (event,) = engine.evaluate(_sync_metrics(0, 1000, 100000), now=0)
    assert event.kind == "sync.broker_unreachable"
    assert set(event.details["explains"]) == {"sync.backlog", "sync.unsynced_too_old"}


# --- config -----------------------------------------------------------------------------


def test_thresholds_and_durations_come_from_config(monkeypatch):
    monkeypatch.setenv("TEDDY_HEALTH__RULES__CPU_HIGH__THRESHOLD", "50")
    monkeypatch.setenv("TEDDY_HEALTH__RULES__CPU_HIGH__FOR_S", "0")
    settings = load_settings()
    engine = RuleEngine([r for r in rules_from_settings(settings.health) if r.name == "cpu_high"])
    assert [e.action for e in engine.evaluate({"cpu_percent": 55}, now=0)] == ["raise"]


def test_disabled_rule_is_not_evaluated():
    rules = rules_from_settings(HealthSettings(rules={"cpu_high": {"enabled": False}}))
    assert "cpu_high" not in {r.name for r in rules}
    assert len(rules) == len(DEFAULT_RULES) - 1


@pytest.mark.parametrize("rules, fragment", [
    ({"cpu_hgih": {"threshold": 1}}, "unknown health rule(s) cpu_hgih"),
    ({"cpu_high": {"clear": 99}}, "clear 99.0 must be <= threshold 90.0"),
    ({"disk_low": {"clear": 10}}, "clear 10.0 must be >= threshold 200.0"),
])
def test_bad_rule_config_fails_with_one_clear_line(rules, fragment):
    with pytest.raises(ConfigError) as caught:
        load_settings(health={"rules": rules})
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)
