"""Issue 22, the wellbeing inbox, piece by piece (the browser walk is in
test_portal_browser_inbox.py).

Reproduced first: the inbox quoted the last child line up to 5 s after the alert ("my
friends were mean to me and i feel sad" and the next line both quoted the next line).
Now a real bear (real safety filter, real encrypted store) sends each alert with the line
that raised it, read from the sealed store when sent; the protocol range-checks it and
older bears' alerts without one still pass; ingest seals it with the family's key; marking
seen checks the holder in one statement; ``notify`` e-mails what the family chose at once
and the rest in one summary a day, however often it restarts.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.portal import make_family, portal_settings, settings_of
from support.wellbeing import DREAM, HURT, LINES, SAD, talk

from agent.health.monitor import with_quote
from agent.safety.categories import POLICIES
from agent.safety.verdict import Action
from agent.store import Scope
from config.errors import ProtocolError
from sync.cloud import custody, family_keys, wellbeing, writer
from sync.cloud.messages import Received, TimeWindow, parse
from sync.cloud.notify import Notifier
from sync.cloud.portal import auth, inbox
from sync.cloud.portal.app import export_text
from sync.cloud.portal.service import FamilyService, NotFoundError, PortalInputError
from sync.protocol import AlertMessage

# --- the bear ----------------------------------------------------------------------------


def test_each_alert_quotes_the_line_that_raised_it_and_nothing_keeps_the_words(
        tmp_path: Path, caplog):
    caplog.set_level(logging.DEBUG)
    messages = talk(tmp_path / "bear", "bear-quotes", LINES)
    assert [(m.quote, m.category, m.severity) for m in messages] == [
        (SAD, "bullying", "info"), (DREAM, "distress", "info"), (HURT, "abuse", "high")]
    assert all(m.v == 2 and m.conversation_id and m.turn_seq for m in messages)
    assert len({m.turn_seq for m in messages}) == 3
    for m in messages:  # the place is the child's kept line itself
        assert AlertMessage.from_payload(m.to_payload()) == m
    journal = sqlite3.connect(tmp_path / "bear" / "health.db")
    dump = "\n".join(journal.iterdump())
    journal.close()
    logged = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    for words in ("friends were mean", "bad dream", "uncle hits"):
        assert words not in dump and words not in logged


def test_severities_follow_the_category_table():
    high = {c for c, p in POLICIES.items() if p.input is Action.ESCALATE and p.severity == "high"}
    low = {c for c, p in POLICIES.items() if p.input is Action.ESCALATE and p.severity == "low"}
    assert {"lures", "medical_emergency", "abuse", "secrets", "self_harm"} <= high
    assert low == {"distress", "bullying"}
    # every escalating category has words a parent reads, and no others are invented
    assert set(wellbeing.CATEGORY_WORDS) == high | low


def test_without_consent_to_send_conversations_no_quote_leaves_the_bear(tmp_path: Path):
    messages = talk(tmp_path / "bear", "bear-keeponly", [HURT], scopes=(Scope.KEEP,))
    assert len(messages) == 1 and messages[0].quote is None
    assert messages[0].category == "abuse" and messages[0].severity == "high"


def test_the_parent_is_alerted_even_when_the_turn_cannot_be_kept(tmp_path: Path):
    """The conversation was deleted from under the bear (a parent's delete-data, another
    process): keeping the turn fails, the escalation still goes, without a place."""
    from agent.health import HealthMonitor
    from agent.runtime import open_bear
    from agent.store import ConversationStore
    from agent.store.errors import StoreError
    from config.settings import load_settings

    settings = load_settings(store={"data_dir": tmp_path / "bear"}, device={"id": "bear-del"})
    store = ConversationStore.open(settings.store, create=True)
    store.grant_consent("Mum", [Scope.KEEP, Scope.SYNC])
    with open_bear(settings) as bear, HealthMonitor(settings, bear.alerts, "bear-del",
                                                    sampler=lambda now: {}) as monitor:
        bear.conversation.respond("hello teddy")
        store.delete_all()  # the other process
        with pytest.raises(StoreError, match="deleted"):
            bear.conversation.respond(HURT)
        assert bear.store is not None
        sent = [with_quote(m, bear.store.quote) for m in monitor.pending_alerts()]
    store.close()
    assert [(m.category, m.severity, m.quote, m.turn_seq) for m in sent] == [
        ("abuse", "high", None, None)]


# --- the protocol ------------------------------------------------------------------------

BASE = {"device_id": "bear-1", "alert_id": "a1", "state": "raised",
        "kind": "wellbeing.escalation", "severity": "high", "message": "m", "raised_at": 1.0}


def test_an_older_bears_alert_without_a_quote_is_still_accepted():
    old = AlertMessage.from_payload(json.dumps({**BASE, "v": 1}).encode())
    assert old.v == 1 and old.quote is None and old.category is None


@pytest.mark.parametrize(("extra", "problem"), [
    ({"v": 1, "quote": "hi"}, "version-1"),
    ({"quote": "x" * 1001}, "quote"),
    ({"quote": ""}, "quote"),
    ({"quote": "line one\nline two"}, "control character"),
    ({"category": "Self Harm"}, "category"),
    ({"category": "x" * 41}, "category"),
    ({"conversation_id": "c1"}, "come together"),
    ({"conversation_id": "c1", "turn_seq": 0}, "turn_seq"),
    ({"conversation_id": "c1", "turn_seq": 2**53}, "turn_seq"),
    ({"kind": "sync.backlog", "quote": "hi"}, "only a wellbeing"),
])
def test_the_quote_and_its_place_are_range_checked(extra, problem):
    with pytest.raises(ProtocolError, match=problem):
        AlertMessage.from_payload(json.dumps({**BASE, **extra}).encode())


# --- the cloud: sealed, shown, marked seen -----------------------------------------------


def _family(conn, config: dict, email: str) -> tuple[dict, FamilyService]:
    family_keys.install(settings_of(config))
    bear = make_family(conn, email, conversations=1, keyring=family_keys.keyring())
    parent = auth.parent_for(conn, email)
    return bear, FamilyService(settings_of(config), conn, parent)


def _ingest(conn, device: str, messages: list[AlertMessage]) -> None:
    window = TimeWindow.around(time.time(), 3600.0, 30.0)
    items = [parse(Received(f"teddy/v1/{device}/up/alerts", m.to_payload(), 1, 1), window)
             for m in messages]
    conn.execute(writer.STAGING_DDL)
    outcome = writer.write(conn, items, None, family_keys.keyring())
    assert outcome.dead_letters == 0


def _alert(device: str, alert_id: str, severity: str = "high", v: int = 2,
           **fields) -> AlertMessage:
    return AlertMessage(v=v, device_id=device, alert_id=alert_id, state="raised",
                        kind="wellbeing.escalation", severity=severity,
                        message="the child said something a parent should know about",
                        raised_at=time.time(), **fields)


def test_the_quote_is_sealed_with_the_family_key_and_shown_with_its_words(
        database, smtp, tmp_path: Path):
    config = portal_settings(database.dsn, smtp[0], tmp_path, "http://localhost")
    with database.connect() as conn:
        bear, fam = _family(conn, config, f"q-{secrets.token_hex(3)}@example.org")
        device, conversation = bear["device_id"], bear["conversations"][0]
        _ingest(conn, device, [
            _alert(device, "new", quote=HURT, category="abuse", conversation_id=conversation,
                   turn_seq=3, details={"categories": ["abuse", "secrets"]}),
            _alert(device, "old", severity="info", v=1, details={"categories": ["distress"]}),
        ])
        stored = dict(conn.execute("SELECT device_alert_id, quote FROM alerts WHERE"
                                   " device_id = %s", (device,)).fetchall())
        shown = {a["category"]: a for a in inbox.inbox(fam)}
        exported = export_text(fam.export())
        dashboard = fam.alerts()
    assert f"Your child said: {HURT}" in exported  # the family's data, readable
    assert all(a["turn"] is None for a in dashboard)  # not opened where it is not shown
    assert {(a["category_words"], a["severity_words"]) for a in dashboard} == {
        ("Said someone is hurting them", "Urgent"),
        ("Sad, scared or upset", "Not urgent")}  # v1: its details' first category
    assert stored["new"].startswith(family_keys.PREFIX) and "uncle" not in stored["new"]
    assert stored["old"] is None
    new, old = shown["abuse"], shown["distress"]
    assert new["quote"] == HURT and new["category_words"] == "Said someone is hurting them"
    assert new["severity_words"] == "Urgent" and new["seen_at"] is None and new["current"]
    assert new["link"] == (f"/bears/{bear['pairing_id']}/conversations/{conversation}"
                           "#turn-3")
    assert old["quote"] is None and old["severity_words"] == "Not urgent"
    assert old["category_words"] == "Sad, scared or upset"
    assert old["link"] == f"/bears/{bear['pairing_id']}/conversations"


def test_mark_seen_is_the_familys_and_needs_the_bear_held_now(database, smtp, tmp_path):
    config = portal_settings(database.dsn, smtp[0], tmp_path, "http://localhost")
    with database.connect() as conn:
        bear, fam = _family(conn, config, f"s-{secrets.token_hex(3)}@example.org")
        _other_bear, other = _family(conn, config, f"o-{secrets.token_hex(3)}@example.org")
        _ingest(conn, bear["device_id"], [_alert(bear["device_id"], "one"),
                                          _alert(bear["device_id"], "two")])
        one, two = sorted(a["id"] for a in inbox.inbox(fam))
        with pytest.raises(NotFoundError):
            inbox.mark_seen(other, str(one))  # another family's: not found, as unknown
        with pytest.raises(NotFoundError):
            inbox.mark_seen(fam, "not-a-number")
        assert inbox.mark_seen(fam, str(one)) and inbox.mark_seen(fam, str(one))
        seen = {a["id"]: a["seen_at"] for a in inbox.inbox(fam)}
        assert seen[one] is not None and seen[two] is None
        assert custody.release(conn, bear["device_id"], actor="test") is not None
        with pytest.raises(PortalInputError, match="no longer paired"):
            inbox.mark_seen(fam, str(two))
        rows = conn.execute("SELECT count(*) FROM alert_seen WHERE alert_id = %s",
                            (two,)).fetchone()[0]
        kept = {a["id"]: a for a in inbox.inbox(fam)}  # still the family's to read
    assert rows == 0 and not kept[two]["current"] and kept[two]["seen_at"] is None


def test_the_quote_goes_with_its_conversation_and_with_retention(database, smtp, tmp_path):
    from sync.cloud.portal.service import delete_pairing_rows, retention_sweep

    config = portal_settings(database.dsn, smtp[0], tmp_path, "http://localhost")
    with database.connect() as conn:
        bear, fam = _family(conn, config, f"d-{secrets.token_hex(3)}@example.org")
        device, pairing = bear["device_id"], bear["pairing_id"]
        other = "c-elsewhere"
        _ingest(conn, device, [
            _alert(device, "gone", quote=HURT, conversation_id=bear["conversations"][0],
                   turn_seq=1),
            _alert(device, "kept", quote=SAD, conversation_id=other, turn_seq=9)])
        delete_pairing_rows(conn, pairing, [bear["conversations"][0]])
        shown = inbox.inbox(fam)
        assert {a["quote"] for a in shown} == {None, SAD}  # the alert stays, its words go
        links = {a["quote"]: a["link"] for a in shown}  # and it no longer links to them
        assert links[None] == f"/bears/{pairing}/conversations"
        assert links[SAD].endswith(f"/conversations/{other}#turn-9")
        conn.execute("UPDATE families SET retention_days = 1 WHERE family_id = %s",
                     (fam.parent.family_id,))
        retention_sweep(conn, 30, datetime.now(UTC) + timedelta(days=2))
        assert {a["quote"] for a in inbox.inbox(fam)} == {None}
        assert len(inbox.inbox(fam)) == 2


def test_preferences_are_checked_and_kept_per_family(database, smtp, tmp_path):
    config = portal_settings(database.dsn, smtp[0], tmp_path, "http://localhost")
    with database.connect() as conn:
        _bear, fam = _family(conn, config, f"p-{secrets.token_hex(3)}@example.org")
        family = fam.parent.family_id
        assert wellbeing.prefs(conn, family) == wellbeing.AlertPrefs("high", True)
        with pytest.raises(PortalInputError, match="from the list"):
            inbox.save_prefs(conn, family, "sometimes", True)
        inbox.save_prefs(conn, family, "all", False)
        assert wellbeing.prefs(conn, family) == wellbeing.AlertPrefs("all", False)


# --- notify: urgent at once, the rest once a day -----------------------------------------


class Clock:
    """An injectable wall clock."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at.timestamp()


def _mails_to(sink, email: str) -> list[str]:
    """Subject and text of every e-mail ``email`` received, oldest first."""
    from email import message_from_bytes, policy

    mails = []
    for _tls, _sender, rcpt, content in list(sink.messages):
        if email in rcpt:
            message = message_from_bytes(content, policy=policy.default)
            mails.append(f"{message['Subject']}\n{message.get_content()}")
    return mails


def test_urgent_at_once_the_rest_in_one_summary_a_day_across_restarts(
        database, smtp, tmp_path: Path):
    port, sink = smtp
    raised = datetime.now(UTC)
    config = portal_settings(database.dsn, port, tmp_path, "http://localhost")
    # the summary goes out at the first whole hour at least an hour after the alerts
    config["notify"] |= {"digest_hour": (raised + timedelta(hours=2)).hour,
                         "digest_timezone": "UTC", "dedupe_window_s": 0}
    config["notify"]["channels"]["mail"]["app_url"] = "https://app.example.org"
    email, quiet = (f"{n}-{secrets.token_hex(3)}@example.org" for n in ("n", "quiet"))
    with database.connect() as conn:
        bear, fam = _family(conn, config, email)
        quiet_bear, quiet_fam = _family(conn, config, quiet)
        inbox.save_prefs(conn, quiet_fam.parent.family_id, "none", False)
        device = bear["device_id"]
        _ingest(conn, device, [
            _alert(device, "hurt", quote=HURT, category="abuse"),
            _alert(device, "sad", severity="info", quote=SAD, category="bullying"),
            _alert(device, "dream", severity="info", quote=DREAM, category="distress")])
        _ingest(conn, quiet_bear["device_id"], [_alert(quiet_bear["device_id"], "q")])
        dream = [a["id"] for a in inbox.inbox(fam) if a["category"] == "distress"][0]
        inbox.mark_seen(fam, str(dream))  # seen in the app: not in the summary
        clock = Clock(raised + timedelta(minutes=1))
        settings = settings_of(config).notify
        notifier = Notifier(settings, conn, clock=clock)
        first = notifier.run_once()
        at_once = _mails_to(sink, email)
        assert first["summary"] >= 3 and not first["summaries"], first
        assert len(at_once) == 1, at_once  # the urgent one, at once
        assert "Said someone is hurting them" in at_once[0] and "#alert-" in at_once[0]

        clock.at = raised + timedelta(hours=2, minutes=30)  # past the summary's hour
        assert notifier.run_once()["summaries"] == 1
        Notifier(settings, conn, clock=clock).run_once()  # a restarted notifier
        clock.at += timedelta(hours=3)
        notifier.run_once()
        mails = _mails_to(sink, email)
        days = conn.execute("SELECT count(*) FROM wellbeing_digests WHERE family_id = %s",
                            (fam.parent.family_id,)).fetchone()[0]
    assert len(mails) == 2 and days == 1
    summary = mails[1]
    assert "Other children were unkind to them" in summary and "1 wellbeing alert" in summary
    assert "Sad, scared or upset" not in summary  # seen already
    assert "https://app.example.org/alerts" in summary
    for words in (SAD, HURT, DREAM, "friends were mean", "uncle"):
        assert words not in summary and words not in at_once[0]  # the words stay in the app
    assert _mails_to(sink, quiet) == []  # "none" at once, no summary: nothing at all
