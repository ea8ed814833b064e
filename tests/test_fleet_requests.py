"""The parent app asks, the fleet service signs and sends (real PostgreSQL, LISTEN/NOTIFY,
the authenticating Mosquitto): the app needs no fleet key and no broker for a command; only
the family that holds a bear now can ask; the service re-checks the holder when it sends;
one bad request never stops it. (A real bear applying what was sent:
tests/test_portal_browser.py.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from support.fleet import serving
from support.portal import make_family, settings_of
from support.waiting import wait_until

from sync.cloud import fleet_requests
from sync.cloud.portal import auth
from sync.cloud.portal.service import FamilyService, PortalInputError


def _family(conn, email: str, settings=None) -> tuple[FamilyService, dict]:
    bear = make_family(conn, email, conversations=0)
    parent = auth.parent_for(conn, email)  # the family takes the operator-paired bear
    return FamilyService(settings or settings_of({}), conn, parent), bear


def _request(conn, command_id: str) -> tuple[str, str | None]:
    found = fleet_requests.outcome(conn, command_id)
    assert found is not None
    return found


def _done(conn, command_id: str) -> bool:
    return _request(conn, command_id)[0] not in ("pending", "sending")


def _repair_to(conn, device_id: str, email: str) -> dict:
    """The bear changes hands: a new approved pairing for another family, made current."""
    conn.execute("UPDATE pairings SET status = 'released' WHERE device_id = %s AND status ="
                 " 'approved'", (device_id,))
    pairing = conn.execute(
        "INSERT INTO pairings (claim_id, device_id, code_digest, public_key, requested_at,"
        " expires_at, status, parent_email, approved_at) VALUES (gen_random_uuid()::text,"
        " %s, 'x', 'x', now(), now(), 'approved', %s, now()) RETURNING pairing_id::text",
        (device_id, email)).fetchone()[0]
    conn.execute("UPDATE devices SET pairing_id = %s WHERE device_id = %s", (pairing, device_id))
    return {"pairing_id": pairing, "parent": auth.parent_for(conn, email)}


def test_the_app_asks_without_a_key_or_a_broker_and_only_for_a_bear_it_holds(
        database, tmp_path: Path):
    # no fleet key, and the broker port closed: asking must not touch either
    settings = settings_of({"cloud": {"pg_dsn": database.dsn},
                            "mqtt": {"port": 1, "username": "nobody"},
                            "fleet": {"signing_key_file": tmp_path / "none.key"}})
    with database.connect() as conn:
        mum, bear = _family(conn, "mum-ask@example.org", settings)
        started = time.monotonic()
        mum.configure(bear["pairing_id"], {"play.quiet_from": "19:00",
                                           "play.quiet_until": "07:00"})
        assert time.monotonic() - started < 1.0
        row = conn.execute("SELECT name, args, status, family_id::text FROM fleet_requests"
                           " WHERE pairing_id = %s", (bear["pairing_id"],)).fetchone()
        assert row == ("config", {"play.quiet_from": "19:00", "play.quiet_until": "07:00"},
                       "pending", mum.parent.family_id)
        with pytest.raises(PortalInputError):  # refused here, as the bear would refuse it
            mum.configure(bear["pairing_id"], {"voice.tts_volume": 7})

        new = _repair_to(conn, bear["device_id"], "dad-ask@example.org")
        with pytest.raises(fleet_requests.NotHeldError):  # the old family, stale pairing
            fleet_requests.ask(conn, mum.parent.family_id, bear["pairing_id"], "delete-data")
        with pytest.raises(fleet_requests.NotHeldError):  # another family's current pairing
            fleet_requests.ask(conn, mum.parent.family_id, new["pairing_id"], "unpair")
        with pytest.raises(ValueError, match="may not ask"):
            fleet_requests.ask(conn, new["parent"].family_id, new["pairing_id"], "restart")
        assert conn.execute("SELECT count(*) FROM fleet_requests WHERE device_id = %s",
                            (bear["device_id"],)).fetchone()[0] == 1


def test_the_fleet_service_sends_rechecks_the_holder_and_survives_a_bad_request(
        cloud, database):
    with database.connect() as conn:
        _mum, bear = _family(conn, "mum-serve@example.org")
        family = conn.execute("SELECT family_id::text FROM family_pairings WHERE pairing_id"
                              " = %s", (bear["pairing_id"],)).fetchone()[0]
        stale = fleet_requests.ask(conn, family, bear["pairing_id"], "delete-data")
        bad = fleet_requests.ask(conn, family, bear["pairing_id"], "config")
        conn.execute("UPDATE fleet_requests SET args = %s WHERE command_id = %s",
                     (json.dumps({"voice.tts_volume": "loud"}), bad))
        with serving(cloud):
            # queued before the service started: served at once, one failing, one sent
            wait_until(lambda: _done(conn, bad), 15, "the queued requests")
            assert _request(conn, stale)[0] == "sent", _request(conn, stale)
            assert _request(conn, bad)[0] == "failed" and "invalid config" in \
                (_request(conn, bad)[1] or "")
            signed = conn.execute("SELECT device_id, name, status FROM commands WHERE id = %s",
                                  (stale,)).fetchone()
            assert signed == (bear["device_id"], "delete-data", "sent")

            # asked while held, but the bear changes hands before the service sends it
            with conn.transaction():
                late = fleet_requests.ask(conn, family, bear["pairing_id"], "config",
                                          {"voice.tts_volume": 0.2})
                _repair_to(conn, bear["device_id"], "dad-serve@example.org")
            wait_until(lambda: _done(conn, late), 10, "NOTIFY wakes it")
            assert _request(conn, late) == ("refused", "the bear changed hands before it was"
                                                       " sent — nothing was sent")
            assert conn.execute("SELECT count(*) FROM device_config WHERE device_id = %s",
                                (bear["device_id"],)).fetchone()[0] == 0  # nothing signed


def test_a_revocation_still_reaches_the_bear_nobody_holds_but_not_its_next_family(
        cloud, database):
    with database.connect() as conn:
        _mum, bear = _family(conn, "mum-revoke@example.org")
        family = conn.execute("SELECT family_id::text FROM family_pairings WHERE pairing_id"
                              " = %s", (bear["pairing_id"],)).fetchone()[0]
        with conn.transaction():  # as FamilyService.revoke: ask, then end the pairing
            unpair = fleet_requests.ask(conn, family, bear["pairing_id"], "unpair",
                                        {"delete": True})
            conn.execute("UPDATE pairings SET status = 'unpaired' WHERE pairing_id = %s",
                         (bear["pairing_id"],))
            conn.execute("UPDATE devices SET pairing_id = NULL WHERE device_id = %s",
                         (bear["device_id"],))
        with serving(cloud):
            wait_until(lambda: _request(conn, unpair)[0] == "sent", 15, "the unpair")
        other = make_family(conn, "mum2-revoke@example.org", conversations=0)
        family2 = auth.parent_for(conn, "mum2-revoke@example.org").family_id
        with conn.transaction():
            again = fleet_requests.ask(conn, family2, other["pairing_id"], "unpair")
            conn.execute("UPDATE pairings SET status = 'unpaired' WHERE pairing_id = %s",
                         (other["pairing_id"],))
            conn.execute("UPDATE devices SET pairing_id = NULL WHERE device_id = %s",
                         (other["device_id"],))
            _repair_to(conn, other["device_id"], "next-revoke@example.org")
        with serving(cloud):
            wait_until(lambda: _done(conn, again), 15, "the second unpair")
        assert _request(conn, again)[0] == "refused"


def test_a_pairing_code_is_approved_by_the_fleet_service_and_not_kept(cloud, database):
    from sync.cloud.pairing import PairingError

    with database.connect() as conn:
        parent = auth.parent_for(conn, "mum-pair@example.org")
        stranger = auth.parent_for(conn, "eve-pair@example.org")
        with pytest.raises(PairingError, match="not a member"):
            fleet_requests.pair(conn, parent.family_id, stranger.parent_id, stranger.email,
                                "123456789012", ("keep",), 5)
        with pytest.raises(PairingError, match="could not reach the bears"):  # no service
            fleet_requests.pair(conn, parent.family_id, parent.parent_id, parent.email,
                                "123456789012", ("keep",), 0.3)
        with serving(cloud), pytest.raises(PairingError, match="matches no bear"):
            fleet_requests.pair(conn, parent.family_id, parent.parent_id, parent.email,
                                "654321098765", ("keep",), 15)
        rows = conn.execute("SELECT status, args, reason FROM fleet_requests WHERE family_id"
                            " = %s ORDER BY request_id", (parent.family_id,)).fetchall()
    assert [r[0] for r in rows] == ["failed", "refused"]
    assert all("code" not in r[1] and "654321098765" not in (r[2] or "") for r in rows)  # not kept
