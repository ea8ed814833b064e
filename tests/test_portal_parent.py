"""The parent app as a parent judges it, in-process (real PostgreSQL, SMTP server, broker
and bear where pairing needs them): consent the parent chose, feedback after each action,
a deep link kept across sign-in (and never a way off the site), plain words."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.fleet import SpeakingFake, serving
from support.portal import csrf_of, link_from, make_family, portal_settings, settings_of, sign_in

from sync.cloud import db, family_keys
from sync.cloud.portal.words import safe_next

BASE = "https://testserver"


def client_for(config: dict, pool):
    """A TestClient of the parent app with ``config``."""
    from fastapi.testclient import TestClient

    from sync.cloud.portal.app import create_app

    settings = settings_of(config)
    family_keys.install(settings)
    return TestClient(create_app(settings, pool), base_url=BASE)


def unique(name: str) -> str:
    from secrets import token_hex

    return f"{name}-{token_hex(4)}@example.org"


def ticked(html: str) -> dict[str, bool]:
    """Each consent checkbox of the pairing page: ticked or not."""
    return {m.group(1): "checked" in m.group(0) for m in
            re.finditer(r'<input type="checkbox" id="scope-(\w+)"[^>]*>', html)}


class _Led:
    def show(self, state: str) -> None:
        """Nothing to light here."""


def test_consent_starts_unticked_and_what_the_parent_chose_survives_a_wrong_code(
        bear, cloud, database, smtp, tmp_path: Path):
    from agent.pairing import Pairing

    config = portal_settings(database.dsn, smtp[0], tmp_path, BASE)  # no key, no broker
    config.update(fleet={"wait_s": 15})
    pool = db.open_pool(settings_of({"cloud": {"pg_dsn": database.dsn}}).cloud)
    try:
        client = client_for(config, pool)
        email = unique("mia")
        sign_in(client, smtp[1], email)
        first = client.get("/pair").text
        assert ticked(first) == {"keep": False, "sync": False, "name": False}
        assert "Send them to this app" in first and "sync" not in re.sub(r"<[^>]+>", "", first)

        voice = SpeakingFake()
        pairing = Pairing(bear, bear.device.id, _Led(), voice.say)
        pairing.start()
        voice.wait_for(1)
        code = voice.code()
        wrong = code[:-1] + str((int(code[-1]) + 1) % 10)
        version = re.search(r'name="notice_version" value="([^"]+)"', first).group(1)
        form = {"csrf": csrf_of(first), "notice_version": version, "read_notice": "yes",
                "scope": ["keep", "name"], "child_name": "Mia", "code": wrong}
        refused = client.post("/pair", data=form)
        assert refused.status_code == 400
        assert ticked(refused.text) == {"keep": True, "sync": False, "name": True}
        assert 'id="read_notice" name="read_notice" value="yes" required checked' in refused.text
        assert 'value="Mia"' in refused.text and f'value="{wrong}"' in refused.text
        assert re.search(r'role="alert">[A-Z]', refused.text), "errors start with a capital"

        with serving(cloud):  # the fleet service approves the code the app was given
            answer = client.post("/pair", data={**form, "code": code}, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].endswith("?paired=1")
        outcome = pairing.wait(20)
        pairing.close()
        assert outcome is not None and outcome.status == "approved", outcome
        with database.connect() as conn:
            scopes = conn.execute("SELECT scopes FROM consent_records WHERE pairing_id = (SELECT"
                                  " pairing_id FROM devices WHERE device_id = %s)",
                                  (bear.device.id,)).fetchone()[0]
        assert sorted(scopes) == ["keep", "name"]  # exactly what was ticked
        page = client.get(answer.headers["location"]).text
        assert "Paired!" in page and "Mia&#39;s bear" in page
        assert "Keep conversations on the bear; Remember your child&#39;s first name" in page
    finally:
        pool.close()


def test_a_signed_out_deep_link_returns_there_after_sign_in(database, smtp, pool,
                                                           tmp_path: Path):
    config = portal_settings(database.dsn, smtp[0], tmp_path, BASE)
    email = unique("sam")
    with database.connect() as conn:
        family = make_family(conn, email)
    client = client_for(config, pool)
    sign_in(client, smtp[1], email)  # the family exists; now signed out again
    client.post("/signout", data={"csrf": csrf_of(client.get("/bears").text)})
    deep = f"/bears/{family['pairing_id']}/conversations"
    away = client.get(deep, follow_redirects=False)
    assert away.status_code == 303 and away.headers["location"].startswith("/signin?next=")
    page = client.get(away.headers["location"])
    assert "we take you back" in page.text
    client.post("/signin", data={"email": email, "csrf": csrf_of(page.text),
                                 "next": deep})
    link = "/" + link_from(smtp[1], email).split("/", 3)[3]
    done = client.post(link, data={"csrf": csrf_of(client.get(link).text)},
                       follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == deep


@pytest.mark.parametrize("target", ["//evil.example/bears", "https://evil.example/",
                                    "/\\evil.example", "http:/evil.example", "bears",
                                    "/signin/abc", "/%0d%0aSet-Cookie:x"])
def test_sign_in_never_returns_to_another_site(database, smtp, pool, tmp_path: Path,
                                               target: str):
    config = portal_settings(database.dsn, smtp[0], tmp_path, BASE)
    email = unique("eve")
    client = client_for(config, pool)
    page = client.get("/signin", params={"next": target})
    assert 'name="next"' not in page.text or safe_next(target) is not None
    client.post("/signin", data={"email": email, "csrf": csrf_of(page.text), "next": target})
    link = "/" + link_from(smtp[1], email).split("/", 3)[3]
    done = client.post(link, data={"csrf": csrf_of(client.get(link).text)},
                       follow_redirects=False)
    location = done.headers["location"]
    assert location == "/bears" or (location == target and safe_next(target) == target), location
    assert not location.startswith(("//", "http")), location


def test_signed_out_and_saved_say_so_and_the_bear_having_it_is_shown(
        database, smtp, pool, tmp_path: Path):
    config = portal_settings(database.dsn, smtp[0], tmp_path, BASE)
    email = unique("ann")
    with database.connect() as conn:
        family = make_family(conn, email)
        conn.execute("INSERT INTO device_config (device_id, version, desired) VALUES"
                     " (%s, 3, '{\"play.quiet_from\": \"19:30\"}')", (family["device_id"],))
    client = client_for(config, pool)
    sign_in(client, smtp[1], email)
    bear = f"/bears/{family['pairing_id']}"
    waiting = client.get(f"{bear}?saved=1").text
    assert "Saved." in waiting and "The bear has it" not in waiting
    assert "Saved." not in client.get(bear).text
    with database.connect() as conn:
        conn.execute("UPDATE device_config SET reported = %s WHERE device_id = %s",
                     ('{"version": 3, "applied": {"play.quiet_from": "19:30"}}',
                      family["device_id"]))
    assert "Saved. The bear has it." in client.get(f"{bear}?saved=1").text
    assert "Your bear" in client.get(bear).text  # no child's name given: a friendly name

    gone = client.post("/signout", data={"csrf": csrf_of(client.get("/bears").text)})
    assert "Signed out" in gone.text


def test_an_out_of_range_setting_is_refused_in_words_a_parent_understands(
        database, smtp, pool, tmp_path: Path):
    config = portal_settings(database.dsn, smtp[0], tmp_path, BASE)
    config["fleet"] = {"signing_key_file": tmp_path / "fleet.key"}
    from sync.cloud.fleet import generate_signing_key

    generate_signing_key(tmp_path / "fleet.key", exist_ok=True)
    email = unique("vol")
    with database.connect() as conn:
        family = make_family(conn, email)
    client = client_for(config, pool)
    csrf = sign_in(client, smtp[1], email)
    answer = client.post(f"/bears/{family['pairing_id']}/settings", data={
        "csrf": csrf, "volume": "150", "age_band": "6-8", "daily_limit": "30"})
    assert answer.status_code == 400
    assert "Volume must be between 0 and 100%." in answer.text
    assert "tts_volume" not in answer.text
    assert 'id="volume" name="volume" type="number" min="0" max="100" value="150"' in \
        answer.text  # what was typed stays


def test_a_deletion_after_its_window_takes_the_cloud_rows_and_asks_the_bear_together(
        database, smtp, pool, tmp_path: Path):
    """Past the undo window, one transaction deletes the cloud rows and queues the bear's
    ``delete-data`` for the fleet service (the app holds no key: it only asks); undo is
    then too late."""
    config = portal_settings(database.dsn, smtp[0], tmp_path, BASE, undo_s=0)
    email = unique("undo")
    with database.connect() as conn:
        family = make_family(conn, email)
    client = client_for(config, pool)
    csrf = sign_in(client, smtp[1], email)
    conversation = family["conversations"][0]
    path = f"/bears/{family['pairing_id']}/conversations/{conversation}/delete"
    asked = client.get(path).text
    assert "You can undo it for 0 seconds" in asked and "(4 turns)" in asked
    page = client.post(path, data={"csrf": csrf, "confirm": "yes"})
    assert page.status_code == 200
    deletion = page.url.path.rsplit("/", 1)[1]

    def turns() -> int:
        with database.connect() as conn:
            return conn.execute("SELECT count(*) FROM turns WHERE conversation_id = %s",
                                (conversation,)).fetchone()[0]

    done = client.get(f"/deletions/{deletion}").text
    assert "Deleted the conversation of" in done and "(4 turns)" in done and turns() == 0
    with database.connect() as conn:
        queued = conn.execute("SELECT name, status, args FROM fleet_requests WHERE"
                              " pairing_id = %s", (family["pairing_id"],)).fetchall()
    assert [(name, status) for name, status, _args in queued] == [("delete-data", "pending")]
    assert queued[0][2]["conversation_ids"] == [conversation]
    late = client.post(f"/deletions/{deletion}/undo", data={"csrf": csrf})
    assert late.status_code == 409 and "Too late to undo" in late.text


def test_exports_are_named_after_the_bear_and_the_day_and_every_page_says_where_help_is(
        database, smtp, pool, tmp_path: Path):
    from datetime import date

    config = portal_settings(database.dsn, smtp[0], tmp_path, BASE,
                             support_email="help@teddy.example")
    email = unique("exp")
    with database.connect() as conn:
        family = make_family(conn, email)
    client = client_for(config, pool)
    for path in ("/signin", "/help", "/privacy"):  # signed out too
        page = client.get(path).text
        assert 'href="/help"' in page and 'href="/privacy"' in page, path
        assert "mailto:help@teddy.example" in page, path
    notice = re.sub(r"<[^>]+>", " ", client.get("/privacy").text)
    for developer in ("A test checks", "teddy store", "teddy-cloud", "key_provider", ".md"):
        assert developer not in notice, developer
    sign_in(client, smtp[1], email)  # the bear joins the family
    with database.connect() as conn:
        conn.execute("UPDATE family_pairings SET child_name = 'Zoë Ann' WHERE pairing_id = %s",
                     (family["pairing_id"],))
    today = date.today().isoformat()
    bear = f"/bears/{family['pairing_id']}"
    named = client.get(f"{bear}/export.json").headers["content-disposition"]
    assert named == f'attachment; filename="teddy-zo-ann-{today}.json"'
    assert f'filename="teddy-family-{today}.txt"' in \
        client.get("/export.txt").headers["content-disposition"]


def test_the_day_list_shows_first_words_friendly_days_and_separate_labels(
        database, smtp, pool, tmp_path: Path):
    config = portal_settings(database.dsn, smtp[0], tmp_path, BASE)
    ring = family_keys.install(settings_of(config))
    email = unique("day")
    with database.connect() as conn:
        family = make_family(conn, email, conversations=2, keyring=ring)
        first, second = family["conversations"]
        conn.execute("UPDATE turns SET action = 'redact' WHERE conversation_id = %s AND seq = 1",
                     (first,))
        conn.execute("UPDATE turns SET action = 'escalate' WHERE conversation_id = %s"
                     " AND role = 'child'", (second,))
    client = client_for(config, pool)
    sign_in(client, smtp[1], email)
    page = client.get(f"/bears/{family['pairing_id']}/conversations").text
    assert "“child line 0 of conversation 0”" in page  # opened from the sealed text
    assert "“child line 0 of conversation 1”" in page
    assert page.count("Personal detail hidden") == 1 and page.count("Wellbeing") == 1
    assert "Today" in page or "Yesterday" in page  # the 2nd conversation started an hour ago
    assert not re.search(r">\d{4}-\d{2}-\d{2}<", page), "no ISO dates for a parent"
    transcript = client.get(f"/bears/{family['pairing_id']}/conversations/{first}").text
    assert "Personal detail hidden" in transcript and "Wellbeing" not in transcript


def test_undo_within_the_window_touches_nothing_and_only_the_family_can_undo(
        database, smtp, pool, tmp_path: Path):
    config = portal_settings(database.dsn, smtp[0], tmp_path, BASE, undo_s=60)
    email, other = unique("und"), unique("oth")
    with database.connect() as conn:
        family = make_family(conn, email)
    client, intruder = client_for(config, pool), client_for(config, pool)
    csrf = sign_in(client, smtp[1], email)
    stranger = sign_in(intruder, smtp[1], other)
    conversation = family["conversations"][1]
    path = f"/bears/{family['pairing_id']}/conversations/{conversation}/delete"
    page = client.post(path, data={"csrf": csrf, "confirm": "yes"})
    assert "Deleting the conversation of" in page.text and "in 60 seconds" in page.text
    deletion = page.url.path.rsplit("/", 1)[1]
    assert "scheduled: you can still undo it" in client.get(f"/bears/{family['pairing_id']}").text
    assert intruder.post(f"/deletions/{deletion}/undo",
                         data={"csrf": stranger}).status_code == 404
    undone = client.post(f"/deletions/{deletion}/undo", data={"csrf": csrf})
    assert undone.status_code == 200 and "is still there" in undone.text
    assert client.get(f"/deletions/{deletion}").status_code == 404
    with database.connect() as conn:
        assert conn.execute("SELECT count(*) FROM turns WHERE conversation_id = %s",
                            (conversation,)).fetchone()[0] == 4
