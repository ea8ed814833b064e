"""The parent app in-process (real PostgreSQL, real SMTP server): sign-in links, CSRF, rate
limits, security headers, tenant isolation over every route, sealing and retention."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.portal import (
    csrf_of,
    link_from,
    make_family,
    parent_row,
    portal_env,
    portal_settings,
    settings_of,
    sign_in,
)
from support.processes import run_cli

from sync.cloud import emails, family_keys

BASE = "https://testserver"


@pytest.fixture
def config(database, smtp, tmp_path: Path):
    """The cloud's settings as keyword arguments."""
    return portal_settings(database.dsn, smtp[0], tmp_path, BASE)


def client_for(config: dict, pool, **portal):
    """A TestClient of an app with ``config`` (plus ``portal`` overrides)."""
    from fastapi.testclient import TestClient

    from sync.cloud.portal.app import create_app

    settings = settings_of({**config, "portal": {**config["portal"], **portal}})
    family_keys.install(settings)
    return TestClient(create_app(settings, pool), base_url=BASE)


def unique(name: str) -> str:
    from secrets import token_hex

    return f"{name}-{token_hex(4)}@example.org"


def test_a_sign_in_link_works_once_and_not_after_it_expires(config, pool, smtp, database):
    client = client_for(config, pool)
    email = unique("sam")
    sign_in(client, smtp[1], email)
    assert client.get("/bears", follow_redirects=False).status_code == 200
    used = "/" + link_from(smtp[1], email).split("/", 3)[3]
    other = client_for(config, pool)
    csrf = csrf_of(other.get(used).text)
    again = other.post(used, data={"csrf": csrf}, follow_redirects=False)
    assert again.status_code == 400 and "does not work" in again.text
    assert other.get("/bears", follow_redirects=False).status_code == 303  # not signed in

    csrf = csrf_of(other.get("/signin").text)
    other.post("/signin", data={"email": email, "csrf": csrf})
    late = "/" + link_from(smtp[1], email).split("/", 3)[3]
    assert late != used
    with database.connect() as conn:
        conn.execute("UPDATE signin_links SET expires_at = now() - interval '1 second'"
                     " WHERE used_at IS NULL AND email_hash = %s",
                     (emails.lookup(conn, email),))
    csrf = csrf_of(other.get(late).text)
    refused = other.post(late, data={"csrf": csrf}, follow_redirects=False)
    assert refused.status_code == 400
    assert "teddy_session" not in refused.headers.get("set-cookie", "")


def test_the_session_cookie_is_secure_httponly_samesite_strict_and_signs_out_everywhere(
        config, pool, smtp):
    email = unique("kim")
    phone, laptop = client_for(config, pool), client_for(config, pool)
    csrf = sign_in(phone, smtp[1], email)
    sign_in(laptop, smtp[1], email)
    cookie = [c for c in phone.cookies.jar if c.name == "teddy_session"][0]
    assert cookie.secure and cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.get_nonstandard_attr("SameSite").lower() == "strict"
    assert laptop.get("/bears", follow_redirects=False).status_code == 200
    phone.post("/signout", data={"csrf": csrf, "everywhere": "yes"})
    assert laptop.get("/bears", follow_redirects=False).status_code == 303
    assert phone.get("/bears", follow_redirects=False).status_code == 303


def test_posts_without_the_csrf_token_are_refused(config, pool, smtp, database):
    client = client_for(config, pool)
    csrf = sign_in(client, smtp[1], unique("lee"))
    assert client.post("/family/retention", data={"days": "3"}).status_code == 403
    assert client.post("/family/retention", data={"days": "3", "csrf": "x" + csrf}
                       ).status_code == 403
    assert "30" in client.get("/family").text  # unchanged
    assert client.post("/family/retention", data={"days": "3", "csrf": csrf},
                       follow_redirects=False).status_code == 303
    fresh = client_for(config, pool)  # before sign-in: the double-submit cookie
    assert fresh.post("/signin", data={"email": unique("x")}).status_code == 403
    assert fresh.post("/family/retention", data={"days": "3", "csrf": csrf}).status_code == 403


def test_sign_in_links_are_rate_limited_per_address_and_per_client(config, pool, smtp):
    client = client_for(config, pool, links_per_address_per_hour=3)
    email = unique("rate")
    csrf = csrf_of(client.get("/signin").text)
    codes = [client.post("/signin", data={"email": email, "csrf": csrf}).status_code
             for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert len([m for m in smtp[1].messages if email in m[2]]) == 3

    per_client = client_for(config, pool, links_per_client_per_hour=2)
    csrf = csrf_of(per_client.get("/signin").text)
    # this client already asked for 4 links above (same client address): refused at once
    assert per_client.post("/signin", data={"email": unique("z"), "csrf": csrf}
                           ).status_code == 429


def _ids_of(family: dict, deletion: str, conn=None) -> dict[str, str]:
    ids = {"pairing_id": family["pairing_id"], "conversation_id": family["conversations"][0],
           "day": datetime.now(UTC).date().isoformat(), "deletion_id": deletion,
           "answer": "approve"}
    if conn is not None:  # the family's parent, an open invitation, a release request
        parent, fam = parent_row(conn, family["email"])
        ids["parent_id"] = parent
        ids["invite_id"] = conn.execute(
            "INSERT INTO family_invites (family_id, email, invited_by, expires_at) VALUES"
            " (%s, 'x@example.org', %s, now() + interval '1 day') RETURNING invite_id::text",
            (fam, parent)).fetchone()[0]
        ids["release_id"] = conn.execute(
            "INSERT INTO custody_releases (device_id, pairing_id, generation, claim_id,"
            " expires_at) VALUES (%s, %s, 1, 'c0', now() + interval '1 day')"
            " RETURNING release_id::text", (family["device_id"], family["pairing_id"])
        ).fetchone()[0]
        ids["alert_id"] = str(conn.execute(  # a wellbeing alert of the bear (mark seen)
            "INSERT INTO alerts (device_id, kind, severity, message, raised_at,"
            " device_alert_id, pairing_id) VALUES (%s, 'wellbeing.escalation', 'high', 'm',"
            " now(), %s, %s) RETURNING id", (family["device_id"], f"w-{uuid.uuid4().hex}",
                                             family["pairing_id"])).fetchone()[0])
    return ids


def _family_routes(app) -> list[tuple[str, str]]:
    """Every route that names something of a family, from the app's route table."""
    found = []
    for route in app.routes:
        params = re.findall(r"{(\w+)}", getattr(route, "path", ""))
        if params and params != ["token"] and hasattr(route, "methods"):
            found.extend((method, route.path) for method in sorted(route.methods))
    return found


def test_another_family_gets_404_on_every_url_of_the_first(config, pool, smtp, database):
    ring = family_keys.install(settings_of(config))
    alice, bob = unique("alice"), unique("bob")
    with database.connect() as conn:
        first = make_family(conn, alice, keyring=ring)
    owner = client_for(config, pool)
    sign_in(owner, smtp[1], alice)  # adopts the pairing into alice's family
    with database.connect() as conn:
        deletion = conn.execute(
            "INSERT INTO portal_deletions (family_id, pairing_id, scope) VALUES (%s, %s, 'x')"
            " RETURNING deletion_id::text",
            (parent_row(conn, alice)[1], first["pairing_id"])).fetchone()[0]
        before = conn.execute("SELECT count(*) FROM turns WHERE pairing_id = %s",
                              (first["pairing_id"],)).fetchone()[0]
        ids = _ids_of(first, deletion, conn)
    routes = _family_routes(owner.app)
    assert len(routes) >= 11
    for method, path in routes:  # the owner sees them (GETs)
        if method == "GET":
            assert owner.get(path.format(**ids)).status_code == 200, path

    intruder = client_for(config, pool)
    csrf = sign_in(intruder, smtp[1], bob)
    for method, path in routes:
        url = path.format(**ids)
        answer = (intruder.get(url) if method == "GET" else
                  intruder.post(url, data={"csrf": csrf, "confirm": "yes", "days": "1",
                                           "quiet_from": "19:00", "quiet_until": "07:00"}))
        assert answer.status_code == 404, f"{method} {path} gave {answer.status_code}"
        assert first["device_id"] not in answer.text
    for page in ("/bears", "/alerts", "/family", "/export.json", "/export.txt"):
        text = intruder.get(page).text
        assert first["device_id"] not in text and "conversation 0" not in text, page
    with database.connect() as conn:
        after = conn.execute("SELECT count(*) FROM turns WHERE pairing_id = %s",
                             (first["pairing_id"],)).fetchone()[0]
    assert after == before


def test_every_page_has_strict_security_headers(config, pool, smtp, database):
    ring = family_keys.install(settings_of(config))
    email = unique("hdr")
    with database.connect() as conn:
        family = make_family(conn, email, keyring=ring)
    client = client_for(config, pool)
    anonymous = client_for(config, pool)
    sign_in(client, smtp[1], email)
    with database.connect() as conn:
        deletion = conn.execute(
            "INSERT INTO portal_deletions (family_id, pairing_id, scope) VALUES (%s, %s, 'x')"
            " RETURNING deletion_id::text",
            (parent_row(conn, email)[1], family["pairing_id"])).fetchone()[0]
    ids = {**_ids_of(family, deletion), "token": "nope"}
    pages = [r.path.format(**ids) for r in client.app.routes
             if "GET" in getattr(r, "methods", ())] + ["/static/app.css", "/no-such-page"]
    for path in pages:
        for who in (client, anonymous):
            answer = who.get(path, follow_redirects=False)
            csp = answer.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp, path
            assert "unsafe-inline" not in csp and "script-src" not in csp, path
            assert answer.headers["x-frame-options"] == "DENY"
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert "<script" not in answer.text.lower(), path


def test_transcripts_are_sealed_in_postgresql_and_unreadable_once_the_key_is_destroyed(
        config, pool, smtp, database):
    ring = family_keys.install(settings_of(config))
    email = unique("seal")
    with database.connect() as conn:
        family = make_family(conn, email, keyring=ring)
        stored = [r[0] for r in conn.execute("SELECT text FROM turns WHERE pairing_id = %s",
                                             (family["pairing_id"],))]
    assert stored and all(t.startswith("tk1.") and "line" not in t for t in stored)
    key_file = Path(config["portal"]["cloud_key_file"])
    assert key_file.stat().st_mode & 0o777 == 0o600
    client = client_for(config, pool)
    sign_in(client, smtp[1], email)
    page = client.get(f"/bears/{family['pairing_id']}/conversations/{family['conversations'][0]}")
    assert "child line 0 of conversation 0" in page.text
    with database.connect() as conn:
        assert family_keys.destroy(conn, family["pairing_id"]) == 1
    family_keys.install(settings_of(config))  # a fresh process: nothing cached
    page = client.get(f"/bears/{family['pairing_id']}/conversations/{family['conversations'][0]}")
    assert "child line 0" not in page.text and "(deleted)" in page.text


def test_the_ingest_writer_seals_a_paired_bears_text(config, database):
    from sync.cloud import writer
    from sync.cloud.messages import parse

    ring = family_keys.install(settings_of(config))
    with database.connect() as conn:
        family = make_family(conn, unique("ingest"), conversations=0, keyring=ring)
        conn.execute(writer.STAGING_DDL)
        topic = f"teddy/v1/{family['device_id']}/up/turns"
        payload = json.dumps({"v": 1, "batch_id": "b1", "device_id": family["device_id"],
                              "turns": [{"seq": 1, "conversation_id": "c1", "role": "child",
                                         "text": "my secret words", "created_at": 1700000000,
                                         "action": "allow", "categories": []}]}).encode()
        parsed = parse(_received(topic, payload))
        assert parsed.kind == "turns", parsed.reason
        writer.write(conn, [parsed], keyring=ring)
        text, pairing = conn.execute("SELECT text, pairing_id::text FROM turns WHERE"
                                     " device_id = %s", (family["device_id"],)).fetchone()
        assert pairing == family["pairing_id"]
        assert "secret" not in text and ring.open(conn, text) == "my secret words"


def test_ingest_without_the_cloud_key_keeps_committing_and_says_why(config, database, caplog,
                                                                   tmp_path):
    from sync.cloud import writer
    from sync.cloud.messages import parse

    missing = {**config, "portal": {**config["portal"], "cloud_key_file": tmp_path / "none"}}
    ring = family_keys.install(settings_of(missing), create=False)
    with database.connect() as conn:
        family = make_family(conn, unique("nokey"), conversations=0)
        conn.execute(writer.STAGING_DDL)
        batch = {"v": 1, "batch_id": "b2", "device_id": family["device_id"], "turns": [
            {"seq": 1, "conversation_id": "c1", "role": "child", "text": "hello",
             "created_at": 1700000000, "action": "allow", "categories": []}]}
        topic = f"teddy/v1/{family['device_id']}/up/turns"
        writer.write(conn, [parse(_received(topic, json.dumps(batch).encode()))], keyring=ring)
        assert conn.execute("SELECT text FROM turns WHERE device_id = %s",
                            (family["device_id"],)).fetchone() == ("hello",)
    assert "stored unsealed" in caplog.text and "TEDDY_PORTAL__CLOUD_KEY_FILE" in caplog.text
    assert not (tmp_path / "none").exists()


def _received(topic: str, payload: bytes):
    from sync.cloud.messages import Received

    return Received(topic=topic, payload=payload, mid=1, qos=1)


def test_the_retention_job_deletes_transcripts_past_the_familys_retention(
        config, pool, smtp, database, tmp_path):
    ring = family_keys.install(settings_of(config))
    short, default = unique("short"), unique("default")
    with database.connect() as conn:
        old_short = make_family(conn, short, days_ago=10, keyring=ring)
        old_default = make_family(conn, default, days_ago=10, keyring=ring)
    client = client_for(config, pool)
    csrf = sign_in(client, smtp[1], short)
    client.post("/family/retention", data={"days": "7", "csrf": csrf})
    sign_in(client_for(config, pool), smtp[1], default)
    env = {**portal_env(config), "PATH": "/usr/bin:/bin"}
    result = run_cli("teddy-cloud", "portal", "retention", env=env)
    assert re.search(r"deleted \d+ transcript turns", result.stdout)
    with database.connect() as conn:
        count = {f["email"]: conn.execute("SELECT count(*) FROM turns WHERE pairing_id = %s",
                                          (f["pairing_id"],)).fetchone()[0]
                 for f in (old_short, old_default)}
    assert count == {short: 0, default: 8}


def test_the_fleet_cli_exports_a_parents_sealed_transcripts_through_the_same_layer(
        config, database):
    ring = family_keys.install(settings_of(config))
    email = unique("cli")
    with database.connect() as conn:
        family = make_family(conn, email, keyring=ring)
    env = {**portal_env(config), "PATH": "/usr/bin:/bin"}
    result = run_cli("teddy-cloud", "fleet", "export", "--parent", email, env=env)
    assert family["device_id"] in result.stdout
    assert "child line 0 of conversation 0" in result.stdout
    refused = run_cli("teddy-cloud", "fleet", "export", "--parent", unique("nobody"), env=env,
                      check=False)
    assert refused.returncode == 1 and "no bear was ever paired" in refused.stdout


def test_a_wellbeing_mail_links_to_the_parent_app_and_carries_no_words():
    from config.notify import EmailChannel
    from sync.cloud.notify.mail import EmailSender
    from sync.cloud.notify.message import Notification

    channel = EmailChannel(type="email", audience="parent", host="127.0.0.1", starttls=False,
                           sender="teddy@example.org", to_parent=True,
                           app_url="https://parents.example.org/")
    note = Notification(alert_id=1, event="raised", device_id="bear-1",
                        kind="wellbeing.escalation", severity="high",
                        message="the child said something", raised_at=datetime.now(UTC),
                        details={"categories": ["distress"]}, parents=("p@example.org",))
    body = EmailSender(channel, 5).compose(note, ["p@example.org"]).get_content()
    assert "https://parents.example.org/alerts" in body


def test_a_parent_exports_and_deletes_a_day_then_everything_of_an_unpaired_bear(
        config, pool, smtp, database):
    ring = family_keys.install(settings_of(config))
    email = unique("del")
    with database.connect() as conn:
        family = make_family(conn, email, conversations=2, keyring=ring)
        conn.execute("UPDATE turns SET created_at = created_at - interval '2 days' WHERE"
                     " conversation_id = %s", (family["conversations"][1],))
    client = client_for(config, pool, undo_s=0)  # no undo window (tests/test_portal_parent)
    csrf = sign_in(client, smtp[1], email)
    with database.connect() as conn:  # no bear to tell: the cloud side alone
        conn.execute("UPDATE pairings SET status = 'unpaired' WHERE pairing_id = %s",
                     (family["pairing_id"],))
    bear = f"/bears/{family['pairing_id']}"
    text = client.get(f"{bear}/export.txt").text
    assert "Child: child line 0 of conversation 0" in text
    exported = client.get("/export.json").json()
    assert len(exported["bears"][0]["conversations"]) == 2

    today = datetime.now(UTC).date().isoformat()
    asked = client.post(f"{bear}/days/{today}/delete", data={"csrf": csrf})
    assert "Yes, delete it" in asked.text  # a confirmation first, nothing deleted yet
    assert family["conversations"][0] in client.get(f"{bear}/conversations").text
    done = client.post(f"{bear}/days/{today}/delete", data={"csrf": csrf, "confirm": "yes"})
    assert "deleted (4 turns)" in done.text and "nothing to delete on the bear" in done.text
    left = client.get(f"{bear}/conversations").text
    assert family["conversations"][0] not in left and family["conversations"][1] in left

    unconfirmed = client.post(f"{bear}/delete", data={"csrf": csrf}, follow_redirects=False)
    assert unconfirmed.status_code == 303 and "confirm" in unconfirmed.headers["location"]
    client.post(f"{bear}/delete", data={"csrf": csrf, "confirm": "yes"})
    with database.connect() as conn:
        assert conn.execute("SELECT count(*) FROM turns WHERE pairing_id = %s",
                            (family["pairing_id"],)).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM family_keys WHERE pairing_id = %s",
                            (family["pairing_id"],)).fetchone()[0] == 0


def test_an_invited_second_parent_joins_the_family_and_sees_its_bear(
        config, pool, smtp, database):
    ring = family_keys.install(settings_of(config))
    first, second = unique("mum"), unique("dad")
    with database.connect() as conn:
        family = make_family(conn, first, keyring=ring)
    owner = client_for(config, pool)
    csrf = sign_in(owner, smtp[1], first)
    assert owner.post("/family/invite", data={"csrf": csrf, "email": "not an address"}
                      ).status_code == 400
    owner.post("/family/invite", data={"csrf": csrf, "email": second})
    assert f"{second} (invited)" in owner.get("/family").text
    partner = client_for(config, pool)
    partner_csrf = sign_in(partner, smtp[1], second)
    assert family["pairing_id"] not in partner.get("/bears").text  # not before accepting
    invite = [m[3] for m in smtp[1].messages if second in m[2]
              and b"/invites/" in m[3]][-1].decode()
    link = "/invites/" + re.search(r"/invites/([A-Za-z0-9_-]+)", invite).group(1)
    partner.post(link + "/accept", data={"csrf": partner_csrf})
    assert family["pairing_id"] in partner.get("/bears").text
    assert f"{second} (member)" in partner.get("/family").text
    assert partner.get(f"/bears/{family['pairing_id']}/conversations").status_code == 200


@pytest.mark.parametrize(("zone", "day", "clock"), [
    ("America/New_York", "2026-12-03", "21:30"),  # the evening it was, where the family is
    ("UTC", "2026-12-04", "02:30"),
])
def test_days_and_times_are_the_familys_own(config, pool, smtp, database, zone, day, clock):
    config = {**config, "portal": {**config["portal"], "timezone": zone}}
    ring = family_keys.install(settings_of(config))
    email = unique("zone")
    with database.connect() as conn:
        family = make_family(conn, email, conversations=1, turns=1, keyring=ring)
        conn.execute("UPDATE turns SET created_at = '2026-12-04 02:30:00+00' WHERE"
                     " pairing_id = %s", (family["pairing_id"],))
    client = client_for(config, pool)
    sign_in(client, smtp[1], email)
    page = client.get(f"/bears/{family['pairing_id']}/conversations").text
    assert f'id="day-{day}"' in page and f"{clock}, 1 turns" in page


def test_an_unknown_time_zone_is_refused_with_an_example():
    from config.errors import ConfigError
    from config.settings import load_settings

    with pytest.raises(ConfigError, match="is not an IANA time zone name, e.g. Europe/London"):
        load_settings(portal={"timezone": "Mars/Olympus"})
