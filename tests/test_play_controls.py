"""Controls a parent knows, on the bear (issue 22): quiet hours per weekday (a night's
window belongs to the evening it starts), pause and resume, bonus time that ends at the
bear's midnight, the child's name in the kind lines; every value range-checked by the
bear's own models with the fix in the message."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from agent.play import LIMIT_REPLY, PAUSE_REPLY, QUIET_REPLY, PlayLimits, played_today_min
from agent.remote_config import ConfigApplier
from config.play import PlaySettings
from config.settings import Settings

SCHOOL, WEEKEND = "19:30-07:00", "21:00-08:30"
WEEK = [SCHOOL] * 4 + [WEEKEND, WEEKEND, SCHOOL]  # Monday first: Fri and Sat nights late


class Clock:
    """A settable local clock."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.mark.parametrize(("when", "quiet"), [
    (datetime(2026, 12, 3, 19, 45), True),   # Thursday evening: school night
    (datetime(2026, 12, 4, 19, 45), False),  # Friday evening: weekend night starts at 21
    (datetime(2026, 12, 4, 21, 0), True),
    (datetime(2026, 12, 5, 6, 59), True),    # Saturday morning: Friday's night
    (datetime(2026, 12, 5, 8, 0), True),     # ... until 08:30
    (datetime(2026, 12, 5, 8, 30), False),
    (datetime(2026, 12, 7, 7, 15), False),   # Monday morning: Sunday's night ended at 07:00
    (datetime(2026, 12, 7, 6, 59), True),
])
def test_the_bear_honours_each_weekdays_window(when: datetime, quiet: bool) -> None:
    limits = PlayLimits(PlaySettings(weekly=WEEK), Clock(when))
    assert limits.quiet_now(when) is quiet
    assert (limits.refusal() == QUIET_REPLY) is quiet


def test_a_day_without_quiet_hours_and_the_weekly_schedule_beats_the_every_day_window() -> None:
    week = [SCHOOL] * 5 + ["", SCHOOL]  # no quiet hours on Saturday night
    settings = PlaySettings(quiet_from="18:00", quiet_until="09:00", weekly=week)
    limits = PlayLimits(settings)
    assert not limits.quiet_now(datetime(2026, 12, 5, 23, 0))  # Saturday night
    assert limits.quiet_now(datetime(2026, 12, 5, 6, 0))  # Friday night's morning
    assert not limits.quiet_now(datetime(2026, 12, 3, 18, 30))  # every-day window unused


def test_pause_and_resume_arrive_live_and_the_bear_says_a_short_friendly_line() -> None:
    settings = Settings(_env_file=None)
    applier = ConfigApplier(settings)
    limits = PlayLimits(settings.play, Clock(datetime(2026, 12, 3, 10, 0)))
    assert limits.refusal() is None
    assert applier.apply({"play.paused": True}).ok
    assert limits.refusal() == PAUSE_REPLY
    assert applier.apply({"play.paused": False}).ok
    assert limits.refusal() is None


def test_bonus_time_extends_today_only_and_ends_at_midnight(tmp_path) -> None:
    clock = Clock(datetime(2026, 12, 3, 17, 0))
    settings = Settings(_env_file=None)
    applier = ConfigApplier(settings)
    assert applier.apply({"play.daily_limit_min": 1}).ok
    limits = PlayLimits(settings.play, clock, tmp_path / "play.json")
    for _ in range(3):  # 20 + 30 + 30 s: over one minute
        assert limits.refusal() is None
        clock.at += timedelta(seconds=30)
    assert limits.refusal() == LIMIT_REPLY
    assert applier.apply({"play.bonus_min": 1, "play.bonus_at": clock.at.timestamp()}).ok
    assert limits.limit_s(clock.at) == 120
    assert limits.refusal() is None  # a minute more today
    assert played_today_min(tmp_path / "play.json", clock.at.date()) == 1.8
    clock.at = datetime(2026, 12, 3, 23, 59, 59)
    assert limits.limit_s(clock.at) == 120
    clock.at = datetime(2026, 12, 4, 0, 0, 1)  # the bear's midnight: the bonus is gone
    assert limits.limit_s(clock.at) == 60
    assert played_today_min(tmp_path / "play.json", clock.at.date()) == 0.0


def test_the_childs_name_is_said_only_when_given() -> None:
    paused = PlaySettings(paused=True)
    assert PlayLimits(paused, name=lambda: "Mia").refusal() == \
        "Teddy is having a little rest right now, Mia. Let's talk again soon!"
    assert PlayLimits(paused, name=lambda: None).refusal() == PAUSE_REPLY


@pytest.mark.parametrize(("key", "value", "words"), [
    ("play.weekly", ["25:00-07:00"] + [""] * 6, "Choose a time between 00:00 and 23:59"),
    ("play.weekly", ["19:30"] + [""] * 6, "write quiet hours like 19:30-07:00"),
    ("play.weekly", [""] * 6, "at least 7"),
    ("play.quiet_from", "7pm", "Choose a time between 00:00 and 23:59"),
    ("play.bonus_min", 241, "less than or equal to 240"),
    ("play.bonus_min", -1, "greater than or equal to 0"),
    ("play.bonus_at", 1e12, "less than or equal to"),
    ("play.paused", "maybe", "valid boolean"),
    ("dialogue.child_name", "R2-D2", "letters only"),
    ("dialogue.child_name", "x" * 31, "at most 30"),
])
def test_every_new_value_is_range_checked_on_the_bear(key: str, value, words: str) -> None:
    settings = Settings(_env_file=None)
    before = settings.play.model_dump()
    outcome = ConfigApplier(settings).apply({key: value, "voice.tts_volume": 0.5})
    assert not outcome.ok and words in outcome.rejected[key], outcome.rejected
    assert settings.play.model_dump() == before and settings.voice.tts_volume != 0.5


def test_a_pause_arriving_stops_the_bear_talking_and_it_says_so(tmp_path) -> None:
    from agent.commands import BearControls, CommandProcessor

    said: list[str] = []
    settings = Settings(_env_file=None, store={"data_dir": tmp_path})
    processor = CommandProcessor(BearControls(settings, announce=said.append), "bear-1",
                                 b"\0" * 32)
    assert processor.config.apply({"play.paused": False}).ok and said == []
    assert processor.config.apply({"play.paused": True}).ok
    assert said == [PAUSE_REPLY]
    assert processor.config.apply({"voice.tts_volume": 0.4}).ok and said == [PAUSE_REPLY]


def test_the_health_sample_carries_todays_play_for_the_dashboard(tmp_path) -> None:
    import json
    from datetime import date

    from agent.health.sampler import SystemSampler

    assert SystemSampler(tmp_path).sample()["play_today_min"] is None  # nothing counted yet
    (tmp_path / "play.json").write_text(json.dumps({"day": date.today().isoformat(),
                                                    "played_s": 750.0}))
    assert SystemSampler(tmp_path).sample()["play_today_min"] == 12.5
    (tmp_path / "play.json").write_text(json.dumps({"day": "2020-01-01", "played_s": 750.0}))
    assert SystemSampler(tmp_path).sample()["play_today_min"] == 0.0  # another day's count
