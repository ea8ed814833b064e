"""The pages of the controls (issue 22) in chromium at 1280 and 375 px, in the states a
parent sees (an error with what was typed, a paused bear with a limit and bonus time, a
bear no longer held on the dashboard): axe-core finds no serious or critical violation and
nothing scrolls sideways on a phone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.browser import PHONE, browser, running_portal, sign_in
from support.portal import portal_env, portal_settings, seeded_family

DESKTOP = {"width": 1280, "height": 800}


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280px", "375px"])
def test_the_control_pages_pass_axe(database, smtp, tmp_path: Path, viewport):
    from axe_playwright_python.sync_playwright import Axe

    port, sink = smtp
    config = portal_settings(database.dsn, port, tmp_path, "http://localhost")
    email = f"axe-controls-{viewport['width']}@example.org"
    with database.connect() as conn:
        family = seeded_family(conn, config, email)
        conn.execute("INSERT INTO device_config (device_id, version, desired) VALUES (%s, 1,"
                     " %s)", (family["device_id"], json.dumps({
                         "play.daily_limit_min": 30, "play.paused": True,
                         "play.bonus_min": 15, "play.bonus_at": 4.0e9,
                         "play.weekly": ["19:30-07:00"] * 5 + ["", "19:30-07:00"]})))
    bear = f"/bears/{family['pairing_id']}"
    axe = Axe()
    with running_portal(portal_env(config), tmp_path / "portal.log") as base, \
            browser() as chromium:
        page = chromium.new_page(viewport=viewport)
        sign_in(page, base, sink, email)
        for path in (f"{bear}/controls?saved=week", f"{bear}/profile?saved=1",
                     "/family/timezone?saved=1", "/bears", bear, "/family"):
            _check(page, axe, base + path, viewport)
        page.goto(base + f"{bear}/controls")
        page.locator("#tuesday_from").fill("7pm")
        page.get_by_role("button", name="Save the week").click()
        page.get_by_role("alert").wait_for()
        _check(page, axe, None, viewport)
        page.goto(base + f"{bear}/profile")
        page.get_by_label("Child's first name").fill("R2-D2")
        page.get_by_role("button", name="Save the profile").click()
        page.get_by_role("alert").wait_for()
        _check(page, axe, None, viewport)
        with database.connect() as conn:  # no longer held: the remove form shows
            conn.execute("UPDATE devices SET pairing_id = NULL WHERE device_id = %s",
                         (family["device_id"],))
        for path in ("/bears", bear):
            _check(page, axe, base + path, viewport)
            assert page.get_by_role("button", name="Remove this bear").is_visible()


def _check(page, axe, url: str | None, viewport: dict) -> None:
    if url is not None:
        page.goto(url)
    results = axe.run(page)
    bad = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, f"{page.url}: " + "; ".join(f"{v['id']}: {v['help']}" for v in bad)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport["width"], f"{page.url} scrolls sideways ({width} px wide)"
