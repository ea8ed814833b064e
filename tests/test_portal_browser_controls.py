"""Controls a parent knows, end to end in chromium against the real stack (PostgreSQL,
Mosquitto, ingest, the fleet service, the portal process, a bear): the parent pairs the
bear, sets a school-night and a weekend schedule, names the child, pauses and resumes it,
gives bonus time; each arrives signed on the bear ("The bear has it"), and the bear, its
clock injected, honours the day's window, the pause (with the child's name: the parent
allowed it) and today's bonus. After revoking, the bear is removed from the dashboard."""

from __future__ import annotations

import signal
from datetime import datetime
from pathlib import Path

import pytest
from support.brokers import free_port
from support.browser import browser, running_portal, sign_in
from support.fleet import RunningBear, SpeakingFake, cloud_env
from support.portal import portal_env, portal_settings
from support.processes import run_cli, start_cli, wait_for_log
from support.receivers import start_smtp
from support.waiting import wait_until

from agent.pairing import Pairing
from agent.play import QUIET_REPLY
from agent.runtime import open_bear

SCHOOL, WEEKEND = "19:30-07:00", "21:00-08:30"


@pytest.fixture
def smtp():
    """A local SMTP server capturing the sign-in mails."""
    controller, sink = start_smtp(free_port(), None)
    yield controller.port, sink
    controller.stop()


class _Led:
    def show(self, state: str) -> None:
        """Nothing to light in this test."""


def test_weekday_schedule_pause_bonus_profile_and_remove_reach_the_bear(
        bear, secure_broker, database, env, smtp, tmp_path: Path):
    smtp_port, sink = smtp
    portal = portal_settings(database.dsn, smtp_port, tmp_path, "http://localhost", undo_s=1)
    del portal["store"]
    cloud = {**cloud_env(env, secure_broker, tmp_path), **portal_env(portal)}
    ingest_env = {**cloud_env(env, secure_broker, tmp_path, "svc.ingest"), **portal_env(portal)}
    run_cli("teddy-cloud", "portal", "keygen", env=cloud)
    ingest = start_cli("teddy-cloud", "--log-level", "INFO", "ingest", env=ingest_env,
                       log=tmp_path / "ingest.log")
    fleet = start_cli("teddy-cloud", "--log-level", "INFO", "fleet", "serve", env=cloud,
                      log=tmp_path / "fleet.log")
    app_env = {**{k: v for k, v in cloud.items() if not k.startswith("TEDDY_MQTT__")},
               "TEDDY_FLEET__SIGNING_KEY_FILE": str(tmp_path / "no-such.key"),
               "TEDDY_STORE__DATA_DIR": str(tmp_path / "app"), "TEDDY_MQTT__PORT": "1"}
    try:
        wait_for_log(tmp_path / "ingest.log", "ingesting")
        wait_for_log(tmp_path / "fleet.log", "serving the parent app's requests")
        with running_portal(app_env, tmp_path / "portal.log") as base, browser() as chromium:
            page = chromium.new_page()
            sign_in(page, base, sink, "kim@example.org")
            bear_url = _pair(page, base, bear)
            controls = f"{bear_url}/controls"

            with RunningBear(bear):
                page.goto(bear_url)
                page.get_by_label("Daily time limit in minutes").fill("1")
                page.get_by_role("button", name="Save settings").click()
                wait_until(lambda: bear.play.daily_limit_min == 1, 15, "the limit on the bear")

                page.goto(controls)
                page.locator("#monday_from").fill("25:00")  # a mistake first
                page.locator("#monday_until").fill("07:00")
                page.get_by_role("button", name="Save the week").click()
                assert "Choose a time between 00:00 and 23:59 for Monday" in \
                    page.get_by_role("alert").inner_text()
                assert page.locator("#monday_from").input_value() == "25:00"  # kept
                page.locator("#school_from").fill("19:30")
                page.locator("#school_until").fill("07:00")
                page.locator("#weekend_from").fill("21:00")
                page.locator("#weekend_until").fill("08:30")
                page.get_by_role("button", name="Use for the whole week").click()
                page.wait_for_url(f"{controls}?saved=week")
                week = [SCHOOL] * 4 + [WEEKEND] * 2 + [SCHOOL]
                wait_until(lambda: bear.play.weekly == week, 15, "the week on the bear")
                _the_bear_has_it(page)
                assert page.locator("#friday_from").input_value() == "21:00"

                page.goto(f"{bear_url}/profile")
                page.get_by_label("Child's first name").fill("Kai")
                page.get_by_label("Age").select_option("3-5")
                page.get_by_role("button", name="Save the profile").click()
                wait_until(lambda: bear.dialogue.child_name == "Kai", 15, "the name on the bear")
                assert bear.dialogue.age_band == "3-5"
                _the_bear_has_it(page)

                page.goto(controls)
                page.get_by_role("button", name="Pause now").click()
                page.wait_for_url(f"{controls}?saved=paused")
                wait_until(lambda: bear.play.paused, 15, "the pause on the bear")
                assert "Paused:" in page.locator("#pause-state").inner_text()
                _the_bear_has_it(page)
            with open_bear(bear) as teddy:
                assert teddy.respond("let's play a game").reply == \
                    "Teddy is having a little rest right now, Kai. Let's talk again soon!"

            with RunningBear(bear):
                page.goto(controls)
                page.get_by_role("button", name="Resume").click()
                wait_until(lambda: not bear.play.paused, 15, "the bear resumed")
                page.get_by_role("button", name="Add 15 minutes").click()
                page.wait_for_url(f"{controls}?saved=bonus")
                wait_until(lambda: bear.play.bonus_min == 15, 15, "the bonus on the bear")
                _the_bear_has_it(page)
                assert "plus 15 bonus minutes today (16 in all)" in \
                    page.locator("#bonus-state").inner_text()
                page.goto(f"{base}/bears")
                assert "of 16 (with 15 bonus)" in page.locator(".today").inner_text()

            thursday, friday = datetime(2026, 12, 3, 20, 0), datetime(2026, 12, 4, 20, 0)
            with open_bear(bear, clock=lambda: thursday) as teddy:
                assert teddy.respond("let's play a game").reply.startswith(
                    QUIET_REPLY.split(".")[0])  # school night: quiet at 20:00
            with open_bear(bear, clock=lambda: friday) as teddy:
                assert teddy.respond("let's play a game").reply != QUIET_REPLY
            with open_bear(bear, clock=lambda: friday.replace(day=5, hour=8)) as teddy:
                assert teddy.respond("let's play a game").reply.startswith("It's quiet time")
            with open_bear(bear) as teddy:
                assert teddy.play is not None
                assert teddy.play.limit_s(datetime.now()) == 16 * 60  # 1 + today's 15
                assert teddy.play.limit_s(datetime(2026, 12, 31, 12)) == 60  # not that day

            with RunningBear(bear) as running:
                page.goto(bear_url)
                page.get_by_label("Yes, take back my consent").check()
                page.get_by_role("button", name="Revoke consent").click()
                page.wait_for_url(f"{base}/deletions/*")
                assert running.unpaired.wait(20)
            page.goto(f"{base}/bears")
            page.get_by_label("Yes, remove Kai").check()
            page.get_by_role("button", name="Remove this bear").click()
            page.wait_for_url(f"{base}/bears?removed=1")
            assert "Kai" not in page.inner_text("main")
            assert page.goto(bear_url).status == 404
    finally:
        for process in (ingest, fleet):
            process.send_signal(signal.SIGTERM)
        ingest.wait(30)
        fleet.wait(30)


def _pair(page, base: str, bear) -> str:
    """Pair ``bear`` in the browser (keep, send, name allowed); the bear's page URL."""
    voice = SpeakingFake()
    pairing = Pairing(bear, bear.device.id, _Led(), voice.say)
    pairing.start()
    voice.wait_for(1)
    page.goto(f"{base}/pair")
    page.get_by_label("Keep conversations on the bear").check()
    page.get_by_label("Send them to this app").check()
    page.get_by_label("Remember your child's first name").check()
    page.get_by_label("I have read the privacy notice").check()
    page.get_by_role("textbox", name="Child's first name").fill("Kai")
    page.get_by_label("The code the bear said").fill(voice.code())
    page.get_by_role("button", name="Pair the bear").click()
    page.wait_for_url(f"{base}/bears/*")
    outcome = pairing.wait(20)
    pairing.close()
    assert outcome is not None and outcome.status == "approved", outcome
    return page.url.split("?")[0]


def _the_bear_has_it(page) -> None:
    def reloaded() -> bool:
        page.reload()
        return "The bear has it" in page.locator("#saved").inner_text()

    wait_until(reloaded, 20, lambda: f"'The bear has it': {page.locator('#saved').inner_text()}")
