"""Issue 21, held-back attacks run against what landed (real PostgreSQL, the parent app's
FamilyService and the custody module as the routes call them): new variants of findings 1-4
as an attacker would try them. Findings 1 (invite accepted by another signed-in account) and
6 (limits behind a proxy) are in tests/test_custody.py and tests/test_portal_proxy.py."""

from __future__ import annotations

import secrets

import pytest
from support.portal import make_family, portal_env, portal_settings, settings_of
from support.processes import run_cli

from sync.cloud import custody, family_keys, fleet_requests
from sync.cloud.portal import auth
from sync.cloud.portal.service import FamilyService, NotFoundError, PortalInputError


def _mail(name: str) -> str:
    return f"{name}-{secrets.token_hex(4)}@example.org"


def _family(conn, email: str, **made) -> tuple[FamilyService, dict]:
    """A family holding a bear (an operator pairing adopted on sign-in)."""
    bear = make_family(conn, email, **made)
    return FamilyService(settings_of({}), conn, auth.parent_for(conn, email)), bear


def _service(conn, email: str) -> FamilyService:
    return FamilyService(settings_of({}), conn, auth.parent_for(conn, email))


def _move(conn, device_id: str, to: FamilyService) -> custody.Held:
    """Release the bear and let family ``to`` pair it (what approve does after the code)."""
    custody.release(conn, device_id, actor="test", status="released")
    claim_id = "c" + secrets.token_hex(12)
    custody.claim(conn, custody.NewClaim(claim_id, device_id, "0" * 64), 300)
    return custody.hold(conn, claim_id, family_id=to.parent.family_id,
                        parent_email=to.parent.email, requester=to.parent.parent_id,
                        release="r" * 64, actor="test")


def _turn(conn, pairing_id: str, device_id: str, text: str, seq: int) -> str:
    conversation = secrets.token_hex(8)
    conn.execute("INSERT INTO turns (device_id, seq, conversation_id, role, text, created_at,"
                 " action, categories, batch_id, pairing_id) VALUES (%s, %s, %s, 'child', %s,"
                 " now(), 'allow', '{}', 'b', %s)", (device_id, seq, conversation, text,
                                                     pairing_id))
    return conversation


def test_an_old_tab_is_refused_even_when_its_family_holds_the_bear_again(database):
    """A → B → A: family A's browser tab from its first pairing (generation 1) still posts
    to that pairing id. A holds the bear again (generation 3), but the old pairing is not
    the current one: the settings post and every fleet request on it are refused."""
    with database.connect() as conn:
        a, bear = _family(conn, _mail("a"))
        b = _service(conn, _mail("b"))
        _move(conn, bear["device_id"], b)
        again = _move(conn, bear["device_id"], a)
        assert again.generation == 3 and again.family_id == a.parent.family_id
        with pytest.raises(PortalInputError, match="no longer paired"):
            a.configure(bear["pairing_id"], {"voice.tts_volume": 1.0})
        for name in ("delete-data", "unpair"):
            with pytest.raises(fleet_requests.NotHeldError):
                fleet_requests.ask(conn, a.parent.family_id, bear["pairing_id"], name)
        old = a.pairing(bear["pairing_id"])
        assert not old["current"] and old["online"] is None and old["desired"] is None
        a.configure(again.pairing_id, {"voice.tts_volume": 0.4})  # the live pairing works
        asked = conn.execute("SELECT pairing_id::text FROM fleet_requests WHERE device_id = %s",
                             (bear["device_id"],)).fetchall()
        assert asked == [(again.pairing_id,)]


def test_a_previous_holder_exports_and_deletes_only_what_its_child_said(database, tmp_path):
    """Export and deletion by the family that held the bear before: its own turns only,
    never the new family's, and nothing is sent to the bear."""
    family_keys.install(settings_of({"store": {"data_dir": tmp_path},
                                     "portal": {"cloud_key_file": tmp_path / "cloud.key"}}))
    with database.connect() as conn:
        old, bear = _family(conn, _mail("old"), conversations=1, turns=2)
        new = _service(conn, _mail("new"))
        held = _move(conn, bear["device_id"], new)
        _turn(conn, held.pairing_id, bear["device_id"], "the new family's child", 100)
        exported = old.export()
        texts = [t["text"] for b in exported["bears"] for c in b["conversations"]
                 for t in c["turns"]]
        assert texts and "the new family's child" not in texts
        assert [b["pairing_id"] for b in exported["bears"]] == [bear["pairing_id"]]
        with pytest.raises(NotFoundError):
            old.conversations(held.pairing_id)
        old.delete(bear["pairing_id"], "everything")
        left = dict(conn.execute("SELECT pairing_id::text, count(*) FROM turns WHERE"
                                 " device_id = %s GROUP BY 1", (bear["device_id"],)).fetchall())
        assert left == {held.pairing_id: 1}
        assert conn.execute("SELECT count(*) FROM fleet_requests WHERE device_id = %s",
                            (bear["device_id"],)).fetchone()[0] == 0


def test_release_request_spam_opens_one_request_and_tells_the_family_once(database):
    """A copier with the card's release token claims again and again: one open request, the
    holding family mailed once, the bear never moves without their approval."""
    mailed: list[str] = []
    with database.connect() as conn:
        holder, bear = _family(conn, _mail("holder"))
        copier = _service(conn, _mail("copier"))
        opened = []
        for _ in range(20):
            claim_id = "c" + secrets.token_hex(12)
            custody.claim(conn, custody.NewClaim(claim_id, bear["device_id"], "0" * 64,
                                                 releases=bear["pairing_id"]), 300)
            with pytest.raises(custody.ReleasePendingError):
                custody.hold(conn, claim_id, family_id=copier.parent.family_id,
                             parent_email=copier.parent.email,
                             requester=copier.parent.parent_id, release="r" * 64,
                             actor="copier")
            opened.append(custody.request_release(conn, claim_id, 3600,
                                                  lambda to, *_: mailed.append(to)))
        assert len([r for r in opened if r]) == 1 and mailed == [holder.parent.email]
        assert len(holder.releases()) == 1
        assert copier.releases() == []  # the copier cannot answer it
        with pytest.raises(custody.NotInFamilyError):
            custody.decide_release(conn, copier.parent.family_id, opened[0], True, "copier")
        held = custody.holder(conn, bear["device_id"])
        assert held is not None and held.family_id == holder.parent.family_id


def test_a_claim_code_stops_working_after_a_reset_and_after_use(database):
    """Code reuse: a code of a claim voided by a later claim (a factory reset, a new paw
    hold) and a code already used both change nothing."""
    with database.connect() as conn:
        parent = _service(conn, _mail("reuse"))
        device = f"bear-{secrets.token_hex(4)}"
        conn.execute("INSERT INTO devices (device_id) VALUES (%s)", (device,))
        first, second = ("c" + secrets.token_hex(12) for _ in range(2))
        for claim_id in (first, second):
            custody.claim(conn, custody.NewClaim(claim_id, device, "0" * 64), 300)
        args = {"family_id": parent.parent.family_id, "parent_email": parent.parent.email,
                "requester": parent.parent.parent_id, "release": "r" * 64, "actor": "t"}
        with pytest.raises(custody.CustodyError, match="used or voided"):
            custody.hold(conn, first, **args)
        held = custody.hold(conn, second, **args)
        with pytest.raises(custody.CustodyError, match="used or voided"):
            custody.hold(conn, second, **args)
        custody.release(conn, device, actor="reset")  # after a reset the old code is dead
        with pytest.raises(custody.CustodyError, match="used or voided"):
            custody.hold(conn, second, **args)
        assert custody.holder(conn, device) is None and held.generation == 1


def test_another_family_reads_no_alert_transcript_deletion_or_settings(database):
    """Cross-family reads through every FamilyService read the routes use."""
    with database.connect() as conn:
        a, bear = _family(conn, _mail("a"), conversations=1, turns=2)
        b, _other = _family(conn, _mail("b"))
        conn.execute("INSERT INTO alerts (device_id, kind, severity, message, raised_at,"
                     " device_alert_id, pairing_id) VALUES (%s, 'wellbeing.escalation', 'high',"
                     " 'said something', now(), 'w1', %s)", (bear["device_id"], bear["pairing_id"]))
        conn.execute("INSERT INTO device_config (device_id, version, desired) VALUES (%s, 1,"
                     " '{\"voice.tts_volume\": 0.3}')", (bear["device_id"],))
        deletion = a.delete_conversation(bear["pairing_id"], bear["conversations"][0])
        assert [x["kind"] for x in a.alerts()] == ["wellbeing.escalation"]
        assert b.alerts() == []
        for read in (lambda: b.pairing(bear["pairing_id"]),
                     lambda: b.conversations(bear["pairing_id"]),
                     lambda: b.transcript(bear["pairing_id"], bear["conversations"][0]),
                     lambda: b.deletion(deletion),
                     lambda: b.delete(bear["pairing_id"], "everything")):
            with pytest.raises(NotFoundError):
                read()
        assert b.deletions_by_id(deletion) == [] and b.deletions(bear["pairing_id"]) == []
        assert bear["pairing_id"] not in str(b.export())


def test_the_notifier_tells_the_family_of_a_release_request_the_keyless_fleet_opened(
        database, smtp, env, tmp_path):
    """The fleet service holds no cloud key, so it cannot open the holding family's
    addresses: the request stays untold there, and ``teddy-cloud notify run`` (which holds
    the key) mails every parent of the family once."""
    config = portal_settings(database.dsn, smtp[0], tmp_path, "https://testserver")
    family_keys.install(settings_of(config))
    with database.connect() as conn:
        holder, bear = _family(conn, _mail("told"))
        claim_id = "c" + secrets.token_hex(12)
        custody.claim(conn, custody.NewClaim(claim_id, bear["device_id"], "0" * 64,
                                             releases=bear["pairing_id"]), 300)
        family_keys._installed = None  # as in the fleet service: no cloud key
        try:
            release_id = custody.request_release(conn, claim_id, 3600,
                                                 lambda *_: pytest.fail("mailed unsealed"))
        finally:
            family_keys.install(settings_of(config))
        assert release_id is not None
        untold = conn.execute("SELECT told_at FROM custody_releases WHERE release_id = %s",
                              (release_id,)).fetchone()[0]
        assert untold is None
    cli_env = {**env, **portal_env(config)}
    told = [run_cli("teddy-cloud", "notify", "run", "--once", env=cli_env).stdout
            for _ in range(2)]
    assert '"release_requests_told": 1' in told[0] and "release_requests" not in told[1], told
    mails = [rcpt for _tls, _sender, rcpt, content in smtp[1].messages
             if b"trying to pair your Teddy bear" in content]
    assert [list(m) for m in mails] == [[holder.parent.email]]
