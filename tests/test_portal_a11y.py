"""Every page of the parent app, in chromium at phone width: axe-core finds no serious or
critical violation, nothing scrolls sideways at 375 px, and a screenshot of each is kept."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from support.browser import PHONE, browser, running_portal, sign_in
from support.portal import parent_row, portal_env, portal_settings, seeded_family, settings_of


def page_paths(ids: dict[str, str], config: dict) -> list[str]:
    """Every HTML page (GET route) of the app, from its route table, with real ids."""
    from sync.cloud.portal.app import create_app

    app = create_app(settings_of(config), pool=object())
    paths = [r.path.format(**ids) for r in app.routes
             if "GET" in getattr(r, "methods", ()) and not r.path.endswith((".json", ".txt"))]
    return [p for p in paths if p != "/"] + ["/no-such-page"]


def test_every_page_passes_axe_and_fits_a_phone(database, smtp, tmp_path: Path):
    from axe_playwright_python.sync_playwright import Axe

    port, sink = smtp
    config = portal_settings(database.dsn, port, tmp_path, "http://localhost")
    email = "axe@example.org"
    with database.connect() as conn:
        family = seeded_family(conn, config, email)
    shots = tmp_path / "screens"
    shots.mkdir()
    axe = Axe()
    with running_portal(portal_env(config), tmp_path / "portal.log") as base, \
            browser() as chromium:
        page = chromium.new_page(viewport=PHONE)
        for path in ("/signin", "/signin/not-a-real-token"):
            _check(page, axe, base + path, shots)
        sign_in(page, base, sink, email)
        with database.connect() as conn:
            deletion = conn.execute(
                "INSERT INTO portal_deletions (family_id, pairing_id, scope) VALUES (%s, %s,"
                " 'day 2026-12-01') RETURNING deletion_id::text",
                (parent_row(conn, email)[1], family["pairing_id"])).fetchone()[0]
        ids = {"pairing_id": family["pairing_id"], "deletion_id": deletion,
               "conversation_id": family["conversations"][0], "token": "x",
               "day": datetime.now(UTC).date().isoformat()}
        for path in page_paths(ids, config):
            _check(page, axe, base + path, shots)
    print(f"\nscreenshots at 375 px: {shots}")
    assert len(list(shots.glob("*.png"))) >= 10


def _check(page, axe, url: str, shots: Path) -> None:
    page.goto(url)
    results = axe.run(page)
    bad = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, f"{url}: " + "; ".join(f"{v['id']}: {v['help']}" for v in bad)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{url} scrolls sideways at 375 px ({width} px wide)"
    name = re.sub(r"[^a-z0-9]+", "-", url.split("//", 1)[1].split("/", 1)[1].lower()) or "home"
    page.screenshot(path=str(shots / f"{name[:60]}.png"), full_page=True)
