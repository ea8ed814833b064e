"""Issue 21: no parent's e-mail address readable at rest once a cloud key is configured.

A full flow on real PostgreSQL, the real parent app (in-process, real SMTP), real Mosquitto
and a real bear claim: an operator-paired bear written before migration 0017 (plain row), a
parent signs in, invites a second who accepts, a bear is paired for the family through
``pairing.approve`` (pairings, consents), its consent recorded by the app, an operator
pairing by the CLI's path (no requester), a bear paired through the app's path by a real
``teddy-cloud fleet serve`` that holds no cloud key (the app seals and hashes the address
for it), an alert fanned out to the parents by the notifier.
Then every text, json and array column of every table is searched for every address (and its
unique local part): nothing. And the fleet's readers still find each parent by address."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest
from support.fleet import RecordingLed, SpeakingFake, bear_settings, cloud_env, pair_bear
from support.portal import csrf_of, make_family, parent_row, portal_settings, settings_of, sign_in
from support.processes import start_cli, wait_for_log

from sync.cloud import emails, family_keys

BASE = "https://testserver"
INVITE = re.compile(rb"(https?://\S+/invites/[A-Za-z0-9_-]+)")
TEXT_TYPES = ("text", "character varying", "json", "jsonb", "ARRAY", "USER-DEFINED", "bytea")


def _unique(name: str) -> str:
    return f"{name}-{secrets.token_hex(5)}@example.org"


@pytest.fixture
def config(database, smtp, tmp_path: Path):
    return portal_settings(database.dsn, smtp[0], tmp_path, BASE)


def _client(config: dict, pool):
    from fastapi.testclient import TestClient

    from sync.cloud.portal.app import create_app

    settings = settings_of(config)
    family_keys.install(settings)
    return TestClient(create_app(settings, pool), base_url=BASE)


def _invite_path(sink, to: str) -> str:
    for _tls, _sender, rcpt, content in reversed(sink.messages):
        if to in rcpt and (found := INVITE.search(content)):
            return "/" + found.group(1).decode().split("/", 3)[3]
    raise AssertionError(f"no invitation was mailed to {to}")


def _plain_hits(conn, needles: list[str]) -> list[str]:
    """``table.column`` holding any of ``needles`` (case-insensitive), over every column
    that can hold text (bytea as its escaped text too)."""
    columns = conn.execute(
        "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c"
        " JOIN information_schema.tables t USING (table_schema, table_name)"
        " WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'").fetchall()
    hits = []
    for table, column, kind in columns:
        if kind not in TEXT_TYPES:
            continue
        value = (f"encode({column}, 'escape')" if kind == "bytea"
                 else f"{column}::text")
        for needle in needles:
            found = conn.execute(f'SELECT count(*) FROM "{table}" WHERE {value} ILIKE %s',
                                 (f"%{needle}%",)).fetchone()[0]
            if found:
                hits.append(f"{table}.{column} ({found} rows hold {needle})")
    return hits


def _pair_through_the_app(env, secure_broker, database, tmp_path, bear, family_id: str,
                          parent_id: str, email: str) -> None:
    """The parent app's path: a fleet_requests row served by ``teddy-cloud fleet serve``
    configured with no cloud key (no portal settings; it installs no keyring)."""
    from agent.pairing import Pairing
    from sync.cloud import fleet_requests

    fleet_env = {k: v for k, v in cloud_env(env, secure_broker, tmp_path).items()
                 if not k.startswith("TEDDY_PORTAL__")}
    fleet_env["TEDDY_CLOUD__PG_DSN"] = database.dsn
    log = tmp_path / "fleet.log"
    service = start_cli("teddy-cloud", "--log-level", "INFO", "fleet", "serve", env=fleet_env,
                        log=log)
    try:
        wait_for_log(log, "serving the parent app's requests")
        voice = SpeakingFake()
        pairing = Pairing(bear, bear.device.id, RecordingLed(), voice.say)
        pairing.start()
        voice.wait_for(1)
        try:
            with database.connect() as conn:
                fleet_requests.pair(conn, family_id, parent_id, email, voice.code(),
                                    ("keep", "sync"), wait_s=30)
            outcome = pairing.wait(20)
        finally:
            pairing.close()
        assert outcome is not None and outcome.status == "approved", outcome
    finally:
        service.terminate()
        service.wait(15)
    assert "stored readable" not in log.read_text()  # it never needed the key


def test_no_parent_address_is_readable_anywhere_after_a_full_flow(
        config, pool, smtp, database, cloud, data_dir, tmp_path, env, secure_broker):
    from sync.cloud.fleet import Fleet
    from sync.cloud.notify.dispatcher import Notifier
    from sync.cloud.portal import auth
    from sync.cloud.portal.service import FamilyService

    before, owner, partner, operator_paired = (_unique(n) for n in
                                               ("before", "owner", "partner", "operator"))
    with database.connect() as conn:  # a pairing written before migration 0017: plain
        old = make_family(conn, before, conversations=0)
        assert conn.execute("SELECT parent_email FROM pairings WHERE pairing_id = %s",
                            (old["pairing_id"],)).fetchone()[0] == before
    app = _client(config, pool)  # the app's first connection seals what was there
    csrf = sign_in(app, smtp[1], owner)
    assert app.post("/family/invite", data={"csrf": csrf, "email": partner}).status_code == 200
    second = _client(config, pool)
    sign_in(second, smtp[1], partner)
    path = _invite_path(smtp[1], partner)
    accepted = second.post(path + "/accept", data={"csrf": csrf_of(second.get(path).text)},
                           follow_redirects=False)
    assert accepted.status_code == 303
    sign_in(_client(config, pool), smtp[1], before)  # adopts its old pairing, by hash

    bear = bear_settings(cloud, database, data_dir / "one")
    other_bear = bear_settings(cloud, database, data_dir / "two")
    app_paired = bear_settings(cloud, database, data_dir / "three")
    with database.connect() as conn:
        parent_id, family_id = parent_row(conn, owner)
        pair_bear(bear, cloud, conn, parent=owner, family_id=family_id, requester=parent_id)
        parent = auth.parent_for(conn, owner)
        FamilyService(settings_of(config), conn, parent).adopt_pairing(
            bear.device.id, "Ada", ("keep", "sync"), ("v1", "0" * 64), "test")
        pair_bear(other_bear, cloud, conn, parent=operator_paired)  # the operator's CLI path
        _pair_through_the_app(env, secure_broker, database, tmp_path, app_paired, family_id,
                              parent_id, owner)
        conn.execute("INSERT INTO alerts (device_id, kind, severity, message, raised_at,"
                     " device_alert_id) VALUES (%s, 'wellbeing.escalation', 'high',"
                     " 'a parent should know', now(), 'a1')", (bear.device.id,))
        notifier = Notifier(settings_of(config).notify, conn)
        notifier.run_once()
        assert conn.execute("SELECT count(*) FROM notification_deliveries").fetchone()[0] >= 1
        # the fleet's readers still find each parent by address (keyed hash)
        fleet = Fleet(cloud, conn)
        assert fleet.devices_of_parent(owner) == sorted([bear.device.id,
                                                          app_paired.device.id])
        assert fleet.devices_of_parent(operator_paired.upper()) == [other_bear.device.id]
        assert fleet.devices_of_parent(before) == [old["device_id"]]
        shown = {emails.show(conn, r[0]) for r in conn.execute(
            "SELECT parent_email FROM consents WHERE device_id = %s", (bear.device.id,))}
        assert shown == {owner}
        assert notifier._parents({bear.device.id}) == {bear.device.id: (owner,)}

        addresses = [before, owner, partner, operator_paired]
        hits = _plain_hits(conn, addresses + [a.split("@")[0] for a in addresses])
    assert not hits, "readable at rest: " + "; ".join(hits)


def test_without_a_cloud_key_addresses_stay_readable_and_the_log_says_so(database, caplog):
    """A development set-up (no keyring at all): today's behaviour, one warning."""
    address = _unique("dev")
    saved = family_keys._installed
    family_keys._installed = None
    emails._warned = False
    try:
        with database.connect() as conn, caplog.at_level("WARNING", logger=emails.__name__):
            kept, found_by = emails.stored(conn, address)
            assert kept == address and emails.lookup(conn, address.upper()) == found_by
            conn.execute("INSERT INTO devices (device_id) VALUES ('bear-dev-plain')")
            conn.execute(
                "INSERT INTO pairings (claim_id, device_id, code_digest, public_key,"
                " requested_at, expires_at, status, parent_email) VALUES ('c-dev', "
                " 'bear-dev-plain', 'x', 'x', now(), now(), 'approved', %s)", (address,))
            assert emails.migrate(conn) >= 1  # hashes filled, address kept readable
            row = conn.execute("SELECT parent_email, parent_email_hash FROM pairings WHERE"
                               " claim_id = 'c-dev'").fetchone()
        assert row[0] == address and bytes(row[1]) == found_by
        assert "stored readable" in caplog.text
    finally:
        family_keys._installed = saved
