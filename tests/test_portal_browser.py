"""The parent app end to end in a real browser against the real stack: PostgreSQL,
Mosquitto, ingest, the fleet service, the portal process and a bear (pairing, sync,
commands). The app runs with no fleet key, no claim keys and no broker account: pairing,
settings, deletion and revocation all go through the fleet service."""

from __future__ import annotations

import signal
import time
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


@pytest.fixture
def smtp():
    """A local SMTP server capturing the sign-in mails."""
    controller, sink = start_smtp(free_port(), None)
    yield controller.port, sink
    controller.stop()


class _Led:
    def show(self, state: str) -> None:
        """Nothing to light in this test."""


def test_a_parent_pairs_sees_deletes_and_sets_bedtime_in_the_browser(
        bear, secure_broker, database, env, smtp, tmp_path: Path):
    smtp_port, sink = smtp
    portal = portal_settings(database.dsn, smtp_port, tmp_path, "http://localhost", undo_s=1)
    del portal["store"]  # the cloud's data dir stays cloud_env's
    cloud = {**cloud_env(env, secure_broker, tmp_path), **portal_env(portal)}
    ingest_log = tmp_path / "ingest.log"
    ingest_env = {**cloud_env(env, secure_broker, tmp_path, "svc.ingest"), **portal_env(portal)}
    # the cloud key first, as docs/operations.md does it: ingest waits for a configured one
    run_cli("teddy-cloud", "portal", "keygen", env=cloud)
    ingest = start_cli("teddy-cloud", "--log-level", "INFO", "ingest", env=ingest_env,
                       log=ingest_log)
    # the fleet service signs and sends what the app asks for; the app has no fleet key
    fleet_log = tmp_path / "fleet.log"
    fleet = start_cli("teddy-cloud", "--log-level", "INFO", "fleet", "serve", env=cloud,
                      log=fleet_log)
    # the app: no fleet key, no claim keys (an empty data dir), no broker account at all
    app_env = {**{k: v for k, v in cloud.items() if not k.startswith("TEDDY_MQTT__")},
               "TEDDY_FLEET__SIGNING_KEY_FILE": str(tmp_path / "no-such.key"),
               "TEDDY_STORE__DATA_DIR": str(tmp_path / "app"), "TEDDY_MQTT__PORT": "1"}
    email = "sam@example.org"
    try:
        wait_for_log(ingest_log, "ingesting")  # inside: a failed wait still stops ingest
        wait_for_log(fleet_log, "serving the parent app's requests")
        with running_portal(app_env, tmp_path / "portal.log") as base, browser() as chromium:
            page = chromium.new_page()
            sign_in(page, base, sink, email)

            voice = SpeakingFake()  # the parent listens to the bear's code
            pairing = Pairing(bear, bear.device.id, _Led(), voice.say)
            pairing.start()
            voice.wait_for(1)
            page.goto(f"{base}/pair")
            page.get_by_label("Keep conversations on the bear").check()  # nothing pre-ticked
            page.get_by_label("Send them to this app").check()
            page.get_by_label("I have read the privacy notice").check()
            page.get_by_role("textbox", name="Child's first name").fill("Mia")
            page.get_by_label("The code the bear said").fill(voice.code())
            page.get_by_role("button", name="Pair the bear").click()
            page.wait_for_url(f"{base}/bears/*")
            outcome = pairing.wait(20)
            pairing.close()
            assert outcome is not None and outcome.status == "approved", outcome
            assert page.get_by_text("Paired!").is_visible()
            bear_url = page.url.split("?")[0]  # without ?paired=1

            other = chromium.new_context().new_page()  # another family, the same code
            sign_in(other, base, sink, "eve@example.org")
            other.goto(f"{base}/pair")
            other.get_by_label("I have read the privacy notice").check()
            other.get_by_label("The code the bear said").fill(voice.code())
            other.get_by_role("button", name="Pair the bear").click()
            other.get_by_role("alert").wait_for()
            refused = other.get_by_role("alert").inner_text()
            assert "already used" in refused or "matches no bear" in refused, refused
            assert other.goto(bear_url).status == 404
            other.context.close()

            with open_bear(bear) as teddy:
                assert teddy.respond("hello teddy").stored
            with RunningBear(bear) as running:
                assert running.sync.sync_once(timeout=20).turns_acked == 2
                with database.connect() as conn:
                    stored = [r[0] for r in conn.execute(
                        "SELECT text FROM turns WHERE device_id = %s", (bear.device.id,))]
                assert stored and all(t.startswith("tk1.") for t in stored)  # sealed
                page.goto(f"{bear_url}/conversations")
                page.get_by_role("link", name="2 turns").click()
                page.get_by_text("hello teddy").wait_for()

                page.get_by_role("button", name="Delete this conversation").click()
                page.get_by_role("button", name="Yes, delete it").click()  # confirmed
                page.wait_for_url(f"{base}/deletions/*")
                deleted_on_bear = wait_until(
                    lambda: _reload_says(page, "deleted on the bear"), 30,
                    lambda: f"'deleted on the bear': {page.locator('#on-bear').inner_text()}")
                assert deleted_on_bear, page.locator("#on-bear").inner_text()
                with database.connect() as conn:
                    assert conn.execute("SELECT count(*) FROM turns WHERE device_id = %s",
                                        (bear.device.id,)).fetchone()[0] == 0
                assert running.store.conversations() == []

                page.goto(bear_url)
                page.get_by_label("From").fill("19:30")
                page.get_by_label("Until").fill("07:00")
                page.get_by_role("button", name="Save settings").click()
                page.wait_for_url(f"{bear_url}?saved=1")
                wait_until(lambda: bear.play.quiet_from == "19:30", 15,
                           "the quiet time on the bear")
                assert "Saved." in page.locator("#saved").inner_text()
                wait_until(lambda: _reload_finds(page, "The bear has it"), 20,
                           lambda: f"'The bear has it': {page.locator('#saved').inner_text()}")
                assert running.store.consent().parent == email
            bedtime = datetime(2026, 12, 3, 20, 15)
            with open_bear(bear, clock=lambda: bedtime) as teddy:
                assert teddy.respond("let's play a game").reply == QUIET_REPLY
            with open_bear(bear, clock=lambda: bedtime.replace(hour=10)) as teddy:
                assert teddy.respond("let's play a game").reply != QUIET_REPLY

            with RunningBear(bear) as running:  # the parent takes consent back
                page.goto(bear_url)
                page.get_by_label("Yes, take back my consent").check()
                page.get_by_role("button", name="Revoke consent").click()
                page.wait_for_url(f"{base}/deletions/*")
                assert running.unpaired.wait(20)
            with database.connect() as conn:
                status = conn.execute("SELECT status FROM pairings WHERE device_id = %s AND"
                                      " approved_at IS NOT NULL", (bear.device.id,)).fetchone()
                keys = conn.execute("SELECT count(*) FROM family_keys k JOIN pairings p USING"
                                    " (pairing_id) WHERE p.device_id = %s",
                                    (bear.device.id,)).fetchone()[0]
                revoked = conn.execute(  # the address in it is sealed: found by pairing
                    "SELECT revoked_at IS NOT NULL FROM consent_records WHERE pairing_id IN"
                    " (SELECT pairing_id FROM pairings WHERE device_id = %s)",
                    (bear.device.id,)).fetchone()
            assert status == ("unpaired",) and revoked == (True,) and keys == 0
    finally:
        for process in (ingest, fleet):
            process.send_signal(signal.SIGTERM)
        ingest.wait(30)
        fleet.wait(30)


def _reload_says(page, text: str) -> bool:
    page.reload()
    found = text in page.locator("#on-bear").inner_text()
    if not found:
        time.sleep(0.3)
    return found


def _reload_finds(page, text: str) -> bool:
    page.reload()
    found = text in page.locator("#saved").inner_text()
    if not found:
        time.sleep(0.3)
    return found
