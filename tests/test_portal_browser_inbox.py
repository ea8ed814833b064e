"""Issue 22: the wellbeing inbox, end to end, as a parent uses it in chromium.

A real bear (safety filter, encrypted store) hears the issue's lines; its turns sync and its
alerts travel over a real Mosquitto to ``teddy-cloud ingest`` (a subprocess, sealing with
the family key) into PostgreSQL; the parent signs in by the mailed link. The inbox quotes
exactly the line that raised each alert (never the story line after it), says the category
in plain words and the severity, links to that moment in the transcript, and marks an alert
seen; the notifier e-mails the urgent one at once and the others in the day's summary;
the e-mail choice is saved; axe finds nothing serious at 1280 and 375 px.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

from support.browser import PHONE, browser, running_portal, sign_in
from support.portal import make_family, portal_env, portal_settings, settings_of
from support.processes import run_cli
from support.syncing import BackgroundSync, IngestProcess, bear_settings
from support.waiting import wait_until
from support.wellbeing import DREAM, HURT, LINES, SAD, STORY, talk

from agent.store import ConversationStore
from config.settings import load_settings
from sync.client import MqttLink
from sync.cloud import family_keys
from sync.cloud.notify import Notifier

WIDE = {"width": 1280, "height": 900}


def _mails(sink, to: str) -> list[str]:
    found = []
    for _tls, _sender, rcpt, content in list(sink.messages):
        if to in rcpt:
            message = message_from_bytes(content, policy=policy.default)
            if "sign-in" not in str(message["Subject"]).lower():
                found.append(f"{message['Subject']}\n{message.get_content()}")
    return found


def _axe(page, axe, url: str) -> None:
    page.goto(url)
    bad = [v for v in axe.run(page).response["violations"]
           if v["impact"] in ("serious", "critical")]
    assert not bad, f"{url}: " + "; ".join(f"{v['id']}: {v['help']}" for v in bad)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"{url} scrolls sideways ({width} px)"


def test_a_real_line_raises_an_alert_the_inbox_quotes_links_marks_and_mails(
        database, smtp, broker, env, tmp_path: Path):
    from axe_playwright_python.sync_playwright import Axe

    port, sink = smtp
    raised = datetime.now(UTC)
    config = portal_settings(database.dsn, port, tmp_path, "http://localhost")
    config["notify"] |= {"digest_hour": (raised + timedelta(hours=2)).hour,
                         "digest_timezone": "UTC"}
    email, device = "inbox@example.org", "bear-inbox-e2e"
    family_keys.install(settings_of(config)).check()  # the key app, ingest and notify share
    with database.connect() as conn:
        family = make_family(conn, email, conversations=0, device=device)

    messages = talk(tmp_path / "bear", device, LINES)  # the bear hears the child
    assert [m.quote for m in messages] == [SAD, DREAM, HURT]
    ingest = IngestProcess({**env, "TEDDY_PORTAL__CLOUD_KEY_FILE":
                            config["portal"]["cloud_key_file"]}, tmp_path).start()
    try:
        settings = bear_settings(broker.port)
        store = ConversationStore.open(load_settings(store={"data_dir": tmp_path / "bear"}).store)
        BackgroundSync(settings, store, device).start().join()
        store.close()
        with MqttLink(settings.mqtt, client_id=f"teddy-{device}") as link:
            link.connect()
            for message in messages:
                link.publish(message, device).wait(5)
        with database.connect() as conn:
            wait_until(lambda: conn.execute(
                "SELECT count(*) = 3 FROM alerts WHERE device_id = %s", (device,)
            ).fetchone()[0], 20, "the three alerts in PostgreSQL")
            sealed = conn.execute("SELECT quote FROM alerts WHERE device_id = %s",
                                  (device,)).fetchall()
    finally:
        ingest.stop()
    assert all(q.startswith(family_keys.PREFIX) for (q,) in sealed)

    with running_portal(portal_env(config), tmp_path / "portal.log") as base, \
            browser() as chromium:
        page = chromium.new_page(viewport=WIDE)
        sign_in(page, base, sink, email)  # the family is made: notify can reach it
        dashboard = page.inner_text("main")  # the latest alerts, in words, on the dashboard
        assert "Said someone is hurting them (urgent)" in dashboard
        assert "Sad, scared or upset (not urgent)" in dashboard

        # the urgent one goes at once: teddy-cloud notify run, as an operator runs it
        done = run_cli("teddy-cloud", "notify", "run", "--once",
                       env={**portal_env(config), "PATH": "/usr/bin:/bin"})
        counts = json.loads(done.stdout.strip().splitlines()[-1])
        assert counts.get("summary", 0) >= 2, counts  # the others wait for the summary
        urgent = wait_until(lambda: _mails(sink, email), 10, "the urgent alert e-mail")
        assert len(urgent) == 1 and "Said someone is hurting them" in urgent[0]

        page.goto(f"{base}/alerts")
        cards = page.locator(".alert-card")
        assert cards.count() == 3
        texts = [cards.nth(i).inner_text() for i in range(3)]
        hurt = next(t for t in texts if "Said someone is hurting them" in t)
        sad = next(t for t in texts if "Other children were unkind to them" in t)
        dream = next(t for t in texts if "Sad, scared or upset" in t)
        assert f"“{HURT}”" in hurt and "Urgent" in hurt
        assert f"“{SAD}”" in sad and "Not urgent" in sad
        assert f"“{DREAM}”" in dream
        assert STORY not in page.inner_text("main")  # the old inbox quoted this line
        assert "3 not seen yet" in page.inner_text("main")
        for viewport in (WIDE, PHONE):
            page.set_viewport_size(viewport)
            for path in ("/alerts", "/alerts/settings"):
                _axe(page, Axe(), base + path)
        page.set_viewport_size(WIDE)

        page.goto(f"{base}/alerts")
        card = page.locator(".alert-card", has_text="Said someone is hurting them")
        card.get_by_role("link", name=re.compile("See this moment")).click()
        page.wait_for_url(re.compile(r"/conversations/[0-9a-f]+#turn-\d+$"))
        anchor = page.url.rsplit("#", 1)[1]
        assert HURT in page.locator(f"#{anchor}").inner_text()
        assert page.evaluate(f"document.querySelector('#{anchor}').matches(':target')")

        page.goto(f"{base}/alerts")
        card = page.locator(".alert-card", has_text="Said someone is hurting them")
        card.get_by_role("button", name=re.compile("Mark as seen")).click()
        page.get_by_role("status").filter(has_text="Marked as seen").wait_for()
        card = page.locator(".alert-card", has_text="Said someone is hurting them")
        assert "Seen" in card.inner_text() and card.get_by_role("button").count() == 0
        assert "2 not seen yet" in page.inner_text("main")

        with database.connect() as conn:  # the others come in the day's summary, once
            clock_at = raised + timedelta(hours=2, minutes=30)
            notifier = Notifier(settings_of(config).notify, conn,
                                clock=lambda: clock_at.timestamp())
            notifier.run_once()
            notifier.run_once()
        mails = _mails(sink, email)
        assert len(mails) == 2, mails
        summary = mails[1]
        assert "Other children were unkind to them" in summary
        assert "Sad, scared or upset" in summary and "hurting them" not in summary
        assert SAD not in summary and DREAM not in summary

        page.goto(f"{base}/alerts/settings")
        page.get_by_label("Every alert").check()
        page.get_by_label("Send me a daily summary").uncheck()
        page.get_by_role("button", name="Save").click()
        page.get_by_role("status").filter(has_text="Saved").wait_for()
        assert page.get_by_label("Every alert").is_checked()
        assert not page.get_by_label("Send me a daily summary").is_checked()
    with database.connect() as conn:
        prefs = conn.execute(
            "SELECT p.immediate, p.digest FROM family_alert_prefs p JOIN family_pairings fp"
            " USING (family_id) WHERE fp.pairing_id = %s", (family["pairing_id"],)).fetchone()
    assert prefs == ("all", False)
