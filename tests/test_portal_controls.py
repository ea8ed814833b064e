"""Controls a parent knows, in the parent app in-process (real PostgreSQL and SMTP): each
form range-checks in plain words and keeps what was typed; what is accepted becomes one
request for the fleet service carrying exactly the keys it changes; a bear the family no
longer holds can be removed and keeps nothing readable; the family's time zone is a
setting; an older bear's unknown keys are withheld from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.portal import csrf_of, make_family, portal_settings, settings_of, sign_in

from sync.cloud import family_keys
from sync.cloud.fleet import record_reported_config, withheld_keys
from sync.protocol import ConfigReported

BASE = "https://testserver"


@pytest.fixture
def parent(database, smtp, pool, tmp_path: Path):
    """A signed-in parent of one paired bear: ``(client, csrf, family ids)``."""
    from fastapi.testclient import TestClient

    from sync.cloud.portal.app import create_app

    config = portal_settings(database.dsn, smtp[0], tmp_path, BASE)
    settings = settings_of(config)
    family_keys.install(settings)
    client = TestClient(create_app(settings, pool), base_url=BASE)
    with database.connect() as conn:
        family = make_family(conn, f"controls-{tmp_path.name[-12:]}@example.org")
    return client, sign_in(client, smtp[1], family["email"]), family


def asked(database, pairing: str) -> list[dict]:
    """The config requests the app made for the fleet service, oldest first."""
    with database.connect() as conn:
        return [r[0] for r in conn.execute(
            "SELECT args FROM fleet_requests WHERE pairing_id = %s AND name = 'config'"
            " ORDER BY request_id", (pairing,))]


def test_the_weekly_schedule_is_checked_in_words_and_keeps_what_was_typed(parent, database):
    client, csrf, family = parent
    url = f"/bears/{family['pairing_id']}/controls"
    assert "Quiet hours by weekday" in client.get(url).text
    answer = client.post(f"{url}/week", data={"csrf": csrf, "monday_from": "25:00",
                                              "monday_until": "07:00", "friday_from": "21:00",
                                              "friday_until": "08:30"})
    assert answer.status_code == 400
    assert "Choose a time between 00:00 and 23:59 for Monday (not “25:00”)." in answer.text
    assert 'id="monday_from" name="monday_from"' in answer.text and 'value="25:00"' in answer.text
    assert 'value="08:30"' in answer.text  # the rest of what was typed stays
    answer = client.post(f"{url}/week", data={"csrf": csrf, "tuesday_from": "19:30"})
    assert "Give both a start and an end for Tuesday" in answer.text
    assert asked(database, family["pairing_id"]) == []

    answer = client.post(f"{url}/presets", data={
        "csrf": csrf, "school_from": "19:30", "school_until": "07:00", "weekend_from": "21:00",
        "weekend_until": "08:30"}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].endswith("?saved=week")
    week = ["19:30-07:00"] * 4 + ["21:00-08:30"] * 2 + ["19:30-07:00"]
    assert asked(database, family["pairing_id"]) == [{"play.weekly": week}]


def test_pause_resume_and_bonus_are_requests_carrying_only_their_keys(parent, database):
    client, csrf, family = parent
    pairing = family["pairing_id"]
    client.post(f"/bears/{pairing}/pause", data={"csrf": csrf})
    with database.connect() as conn:  # as if the bear had the settings before the pause
        conn.execute("INSERT INTO device_config (device_id, version, desired, reported)"
                     " VALUES (%s, 1, '{}', '{\"version\": 1}')", (family["device_id"],))
    shown = client.get(f"/bears/{pairing}/controls?saved=paused").text
    assert "Paused: the bear says a short friendly line" in shown  # asked, not yet signed
    assert "Sending to the bear." in shown and "The bear has it" not in shown
    client.post(f"/bears/{pairing}/resume", data={"csrf": csrf})
    assert "Playing as usual." in client.get(f"/bears/{pairing}/controls").text
    assert asked(database, pairing) == [{"play.paused": True}, {"play.paused": False}]

    answer = client.post(f"/bears/{pairing}/bonus", data={"csrf": csrf, "minutes": "15"})
    assert answer.status_code == 400
    assert "Bonus time adds to the daily time limit, and none is set" in answer.text
    with database.connect() as conn:  # the bear's desired config has a limit of 30 minutes
        conn.execute("UPDATE device_config SET desired = %s WHERE device_id = %s",
                     (json.dumps({"play.daily_limit_min": 30}), family["device_id"]))
    answer = client.post(f"/bears/{pairing}/bonus", data={"csrf": csrf, "minutes": "300"})
    assert answer.status_code == 400
    assert "Choose between 1 and 240 minutes of bonus time a day" in answer.text
    assert 'name="minutes" type="number" min="1" max="240" value="300"' in answer.text
    client.post(f"/bears/{pairing}/bonus", data={"csrf": csrf, "minutes": "15"})
    bonus = asked(database, pairing)[-1]
    assert bonus["play.bonus_min"] == 15 and bonus["play.bonus_at"] > 1.7e9


def test_the_profile_names_the_child_and_pushes_name_and_age(parent, database):
    client, csrf, family = parent
    pairing = family["pairing_id"]
    url = f"/bears/{pairing}/profile"
    answer = client.post(url, data={"csrf": csrf, "child_name": "R2-D2", "age_band": "3-5"})
    assert answer.status_code == 400 and "letters only" in answer.text
    assert 'value="R2-D2"' in answer.text
    answer = client.post(url, data={"csrf": csrf, "child_name": "Zoë", "age_band": "12-99"})
    assert "Choose your child&#39;s age from the list." in answer.text
    client.post(url, data={"csrf": csrf, "child_name": " Zoë ", "age_band": "3-5"})
    assert asked(database, pairing) == [{"dialogue.child_name": "Zoë",
                                         "dialogue.age_band": "3-5"}]
    assert "Zoë&#39;s bear" in client.get("/bears").text or "Zoë's bear" in \
        client.get("/bears").text


def test_a_bear_no_longer_held_can_be_removed_and_keeps_nothing_readable(parent, database):
    client, csrf, family = parent
    pairing = family["pairing_id"]
    answer = client.post(f"/bears/{pairing}/remove", data={"csrf": csrf, "confirm": "yes"})
    assert answer.status_code == 400 and "still paired to your family" in answer.text
    with database.connect() as conn:  # revoked: the bear let go of this pairing
        conn.execute("UPDATE pairings SET status = 'unpaired' WHERE pairing_id = %s",
                     (pairing,))
        conn.execute("UPDATE devices SET pairing_id = NULL WHERE device_id = %s",
                     (family["device_id"],))
    assert "Remove this bear" in client.get("/bears").text
    answer = client.post(f"/bears/{pairing}/remove", data={"csrf": csrf, "confirm": "yes"},
                         follow_redirects=False)
    assert answer.headers["location"] == "/bears?removed=1"
    board = client.get("/bears?removed=1").text
    assert "Removed." in board and pairing not in board
    assert client.get(f"/bears/{pairing}").status_code == 404
    with database.connect() as conn:
        turns = conn.execute("SELECT count(*) FROM turns WHERE pairing_id = %s",
                             (pairing,)).fetchone()[0]
        name = conn.execute("SELECT child_name FROM family_pairings WHERE pairing_id = %s",
                            (pairing,)).fetchone()[0]
        keys = conn.execute("SELECT count(*) FROM family_keys WHERE pairing_id = %s",
                            (pairing,)).fetchone()[0]
    assert (turns, name, keys) == (0, "", 0)


def test_the_family_time_zone_is_a_setting_checked_against_the_list(parent, database):
    client, csrf, family = parent
    answer = client.post("/family/timezone", data={"csrf": csrf, "zone": "Mars/Olympus"})
    assert answer.status_code == 400
    assert "Choose your time zone from the list, e.g. Europe/London." in answer.text
    client.post("/family/timezone", data={"csrf": csrf, "zone": "Pacific/Kiritimati"})
    page = client.get("/family/timezone").text
    assert "Now: Pacific/Kiritimati." in page
    with database.connect() as conn:
        zone = conn.execute("SELECT f.timezone FROM families f JOIN family_pairings fp USING"
                            " (family_id) WHERE fp.pairing_id = %s",
                            (family["pairing_id"],)).fetchone()[0]
    assert zone == "Pacific/Kiritimati"
    with database.connect() as conn:  # the first conversation's start, in both zones
        started = conn.execute("SELECT min(created_at) FROM turns WHERE conversation_id = %s",
                               (family["conversations"][0],)).fetchone()[0]
    from zoneinfo import ZoneInfo

    listed = client.get(f"/bears/{family['pairing_id']}/conversations").text
    assert f"{started.astimezone(ZoneInfo('Pacific/Kiritimati')):%H:%M}, 4 turns" in listed
    client.post("/family/timezone", data={"csrf": csrf, "zone": "Pacific/Pago_Pago"})
    listed = client.get(f"/bears/{family['pairing_id']}/conversations").text
    assert f"{started.astimezone(ZoneInfo('Pacific/Pago_Pago')):%H:%M}, 4 turns" in listed


def test_the_dashboard_shows_todays_play_against_the_limit(parent, database):
    client, csrf, family = parent
    with database.connect() as conn:
        conn.execute("INSERT INTO device_config (device_id, version, desired) VALUES (%s, 1,"
                     " %s)", (family["device_id"], json.dumps({
                         "play.daily_limit_min": 45, "play.paused": True,
                         "play.weekly": ["19:30-07:00"] * 7})))
        conn.execute("INSERT INTO health_samples (device_id, sampled_at, sample) VALUES"
                     " (%s, now(), %s)", (family["device_id"],
                                          json.dumps({"metrics": {"play_today_min": 12.4}})))
    board = client.get("/bears").text
    assert "Today: played 12 minutes of 45." in board
    assert "Quiet hours tonight 19:30–07:00." in board and "Paused." in board


def test_an_older_bears_unknown_keys_are_withheld_and_the_page_says_so(parent, database):
    """An older bear refuses a whole desired config naming a key it does not know; the
    cloud learns the key (for that software), asks for the config again without it, and
    keeps sending it once the bear runs other software."""
    client, csrf, family = parent
    device, pairing = family["device_id"], family["pairing_id"]
    with database.connect() as conn:
        conn.execute("UPDATE devices SET firmware = '0.1.0' WHERE device_id = %s", (device,))
        conn.execute("INSERT INTO device_config (device_id, version, desired) VALUES (%s, 2,"
                     " %s)", (device, json.dumps({"play.paused": True,
                                                  "voice.tts_volume": 0.5})))
        record_reported_config(conn, ConfigReported(  # refused for an invalid value: kept
            device_id=device, version=2, rejected={"voice.tts_volume": "too loud"},
            reported_at=1.8e9))
        assert withheld_keys(conn, device) == frozenset()
        record_reported_config(conn, ConfigReported(
            device_id=device, version=2, reported_at=1.8e9,
            rejected={"play.paused": "play.paused is not a setting"}))
        assert withheld_keys(conn, device) == {"play.paused"}
    assert asked(database, pairing) == [{}]  # the fleet service signs it again, without it
    page = client.get(f"/bears/{pairing}/controls").text
    assert "This bear's software is too old for pause" in page
    with database.connect() as conn:
        conn.execute("UPDATE devices SET firmware = '0.2.0' WHERE device_id = %s", (device,))
        assert withheld_keys(conn, device) == frozenset()


def test_every_control_page_needs_the_familys_bear(parent, database):
    client, csrf, family = parent
    with database.connect() as conn:
        other = make_family(conn, "someone-else@example.org")
    for path in ("controls", "profile"):
        assert client.get(f"/bears/{other['pairing_id']}/{path}").status_code == 404
    assert client.post(f"/bears/{other['pairing_id']}/pause",
                       data={"csrf": csrf}).status_code == 404
    assert csrf_of(client.get("/family/timezone").text) == csrf
