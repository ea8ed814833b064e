"""Bedtime and a daily time limit, enforced by the bear itself (``play`` settings): a kind
answer instead of play, never instead of help, set live from the fleet's desired config."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from agent.play import LIMIT_REPLY, QUIET_REPLY, PlayLimits
from agent.remote_config import ConfigApplier
from agent.runtime import open_bear
from config.play import PlaySettings
from config.settings import Settings


class Clock:
    """A settable local clock."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.mark.parametrize(("hour", "minute", "quiet"), [
    (19, 29, False), (19, 30, True), (23, 59, True), (0, 0, True), (6, 59, True), (7, 0, False),
    (12, 0, False)])
def test_quiet_hours_span_midnight(hour: int, minute: int, quiet: bool) -> None:
    limits = PlayLimits(PlaySettings(quiet_from="19:30", quiet_until="07:00"))
    assert limits.quiet_now(datetime(2026, 12, 3, hour, minute)) is quiet


def test_the_daily_limit_counts_play_and_starts_again_the_next_day() -> None:
    clock = Clock(datetime(2026, 12, 3, 9, 0))
    limits = PlayLimits(PlaySettings(daily_limit_min=2), clock)
    for _ in range(4):  # four turns 30 s apart: 20 s + 30 + 30 + 30 = 110 s < 120 s
        assert limits.refusal() is None
        clock.at += timedelta(seconds=30)
    assert limits.refusal() is None  # 140 s now counted
    assert limits.refusal() == LIMIT_REPLY
    clock.at = datetime(2026, 12, 4, 9, 0)
    assert limits.refusal() is None


def test_bad_times_are_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="is not a time HH:MM"):
        PlaySettings(quiet_from="7pm")


def test_the_bear_says_it_is_quiet_time_but_still_helps_a_child_in_distress(tmp_path) -> None:
    settings = Settings(store={"data_dir": tmp_path})
    bedtime = Clock(datetime(2026, 12, 3, 21, 0))
    with open_bear(settings, clock=bedtime) as teddy:
        assert teddy.respond("tell me a joke").reply != QUIET_REPLY
        outcome = ConfigApplier(settings).apply({"play.quiet_from": "19:30",
                                                 "play.quiet_until": "07:00"})
        assert outcome.applied == {"play.quiet_from": "19:30", "play.quiet_until": "07:00"}
        assert teddy.respond("tell me a joke").reply == QUIET_REPLY
        help_reply = teddy.respond("I feel sad and scared, someone hurt me")
        assert help_reply.input_verdict.action.value == "escalate"
        assert help_reply.reply != QUIET_REPLY
        assert teddy.alerts.recent("wellbeing.escalation")


def test_switching_the_bear_off_and_on_does_not_reset_the_days_play(tmp_path) -> None:
    state = tmp_path / "play.json"
    clock = Clock(datetime(2026, 12, 3, 9, 0))
    first = PlayLimits(PlaySettings(daily_limit_min=1), clock, state)
    for _ in range(3):  # 20 + 30 + 30 = 80 s: over the minute
        assert first.refusal() is None
        clock.at += timedelta(seconds=30)
    restarted = PlayLimits(PlaySettings(daily_limit_min=1), clock, state)
    assert restarted.played_s == first.played_s == 80.0
    assert restarted.refusal() == LIMIT_REPLY
    clock.at = datetime(2026, 12, 4, 9, 0)
    next_day = PlayLimits(PlaySettings(daily_limit_min=1), clock, state)
    assert next_day.refusal() is None and next_day.played_s == 20.0
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("content", ["{", '{"day": "2026-12-03", "played_s": -5}',
                                     '{"day": "yesterday", "played_s": 10}', "[]"])
def test_an_unreadable_play_file_counts_from_zero_and_is_rewritten(tmp_path, content) -> None:
    state = tmp_path / "play.json"
    state.write_text(content)
    clock = Clock(datetime(2026, 12, 3, 9, 0))
    limits = PlayLimits(PlaySettings(daily_limit_min=1), clock, state)
    assert limits.played_s == 0.0 and limits.refusal() is None
    assert '"played_s": 20.0' in state.read_text()
