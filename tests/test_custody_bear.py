"""Custody with a real bear (issue 21, findings 2 and 3): a copied SD card reset with
``teddy factory-reset`` cannot move the bear; one pending claim per bear; a code two bears
share is given to neither; guessing budgets per address and fleet-wide. Real Mosquitto,
PostgreSQL and SMTP server."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest
from support.fleet import (
    RecordingLed,
    RunningBear,
    SpeakingFake,
    bear_env,
    bear_settings,
    cloud_settings,
    pair_bear,
)
from support.identity import publish_claim
from support.portal import portal_settings, settings_of
from support.processes import run_cli
from support.waiting import wait_until

from agent.pairing import Pairing
from sync.cloud import custody
from sync.cloud.pairing import (
    CODE_DIGITS,
    AlreadyPairedError,
    RequesterLockedError,
    WrongCodeError,
    approve,
)
from sync.cloud.portal.auth import send_mail


def _code() -> str:
    return "".join(secrets.choice("0123456789") for _ in range(12))


def _family(conn, email: str) -> str:
    return custody.new_family(conn, email, "test")[1]


def _mailer(database, smtp, tmp_path: Path):
    mail = settings_of(portal_settings(database.dsn, smtp[0], tmp_path, "https://x"))
    return lambda to, subject, body: send_mail(mail, to, subject, body)


def _the_real_bear_syncs_to_its_family(bear, database, secure_broker, tmp_path, held) -> None:
    """The real bear (still paired) syncs a turn: it is stored in its family's pairing."""
    import threading

    from agent.runtime import open_bear
    from sync.cloud.ingest import Ingestor

    ingestor = Ingestor(cloud_settings(secure_broker, database.dsn, tmp_path, "svc.ingest"))
    ingesting = threading.Thread(target=ingestor.run)
    ingesting.start()
    try:
        with open_bear(bear) as teddy:
            teddy.respond("hello teddy")
        with RunningBear(bear) as running:
            running.sync.sync_once(timeout=20)
        with database.connect() as conn:
            stored = wait_until(lambda: conn.execute(
                "SELECT DISTINCT pairing_id::text FROM turns WHERE device_id = %s",
                (bear.device.id,)).fetchall(), 20, "the real bear's turns")
    finally:
        ingestor.stop()
        ingesting.join(15)
        ingestor.close()
    assert stored == [(held.pairing_id,)]


def test_a_reset_copy_of_the_card_cannot_move_the_bear(bear, cloud, database, env, smtp,
                                                       tmp_path, secure_broker):
    """Finding 2: the card is copied, the copy is reset with ``teddy factory-reset`` (which
    leaves the pairing's release token) and paired from the copier's account. The real
    family keeps the bear, is told at once by e-mail, and may object; only its approval in
    the app releases the bear."""
    mail = _mailer(database, smtp, tmp_path)
    with database.connect() as conn:
        real = _family(conn, "real@example.org")
        copier = _family(conn, "copier@example.org")
        pair_bear(bear, cloud, conn, parent="real@example.org", family_id=real)
        held = custody.holder(conn, bear.device.id)
    assert held is not None and held.family_id == real

    copy_dir = tmp_path / "copied-card"
    shutil.copytree(bear.store.data_dir, copy_dir)
    copy = bear.model_copy(update={"store": bear.store.model_copy(
        update={"data_dir": copy_dir})})
    out = run_cli("teddy", "factory-reset", "--yes", env=bear_env(env, copy)).stdout
    assert out.startswith("factory reset") and (copy_dir / "release.json").exists()

    with database.connect() as conn:
        with pytest.raises(AlreadyPairedError, match="asked to release"):
            pair_bear(copy, cloud, conn, parent="copier@example.org", family_id=copier,
                      mail=mail)
        assert custody.holder(conn, bear.device.id) == held  # the real family keeps it
        requests = custody.open_releases(conn, real)
    assert [r["device_id"] for r in requests] == [bear.device.id]
    _the_real_bear_syncs_to_its_family(bear, database, secure_broker, tmp_path, held)
    told = wait_until(lambda: [m for m in smtp[1].messages if "real@example.org" in m[2]],
                      10, "the real family's e-mail")
    assert b"trying to pair your Teddy bear" in told[-1][3]
    assert not [m for m in smtp[1].messages if "copier@example.org" in m[2]]

    with database.connect() as conn:  # the real family objects: nothing moves
        assert not custody.decide_release(conn, real, requests[0]["release_id"], False, "real")
        assert custody.holder(conn, bear.device.id) == held
        with pytest.raises(custody.CustodyError):  # the copier cannot answer for them
            custody.decide_release(conn, copier, requests[0]["release_id"], True, "copier")
        with pytest.raises(AlreadyPairedError, match="asked to release"):
            pair_bear(copy, cloud, conn, parent="copier@example.org", family_id=copier,
                      mail=mail)
        again = custody.open_releases(conn, real)
        assert custody.decide_release(conn, real, again[0]["release_id"], True, "real")
        assert custody.holder(conn, bear.device.id) is None  # given away: the copy may pair
        pair_bear(copy, cloud, conn, parent="copier@example.org", family_id=copier)
        now = custody.holder(conn, bear.device.id)
    assert now is not None and now.family_id == copier and now.generation == held.generation + 1


def test_the_bear_speaks_a_longer_code_and_a_new_claim_voids_the_old(bear, cloud, database):
    """Finding 3: a bear has one pending claim; its older code stops working."""
    voice = SpeakingFake()
    pairing = Pairing(bear, bear.device.id, RecordingLed(), voice.say)
    pairing.start()
    voice.wait_for(1)
    pairing.close()
    assert len(voice.code()) == CODE_DIGITS == 12
    first, second = _code(), _code()  # random: the session's database is shared
    publish_claim(bear, bear.device.id, first)
    with database.connect() as conn:
        with pytest.raises(WrongCodeError):  # collects the first claim
            approve(cloud, conn, "9" * 12, "sam@example.org", ("keep",), requester="probe")
        publish_claim(bear, bear.device.id, second)
        with pytest.raises(WrongCodeError):
            approve(cloud, conn, first, "eve@example.org", ("keep",), requester="eve")
        pending = conn.execute("SELECT count(*) FROM pairings WHERE device_id = %s AND"
                               " status = 'pending'", (bear.device.id,)).fetchone()[0]
        assert pending == 1
        approve(cloud, conn, second, "sam@example.org", ("keep",))
        assert custody.holder(conn, bear.device.id) is not None


def test_a_code_two_bears_share_pairs_neither(bear, cloud, database, tmp_path):
    """Finding 3: when codes collide the newest claim does not win: both are voided."""
    other = bear_settings(cloud, database, tmp_path / "other-bear")
    code = _code()
    publish_claim(other, other.device.id, code)  # the squatter's bear, first
    publish_claim(bear, bear.device.id, code)
    with database.connect() as conn:
        with pytest.raises(WrongCodeError, match="not unique"):
            approve(cloud, conn, code, "sam@example.org", ("keep",))
        for device in (bear.device.id, other.device.id):
            assert custody.holder(conn, device) is None
        with pytest.raises(WrongCodeError):  # and the code is spent for both
            approve(cloud, conn, code, "sam@example.org", ("keep",))


def test_wrong_codes_are_limited_per_address_and_fleet_wide(cloud, database):
    """Finding 3 / 7: fresh accounts behind one address, and everyone together, run out."""
    by_address = cloud.model_copy(update={"fleet": cloud.fleet.model_copy(
        update={"address_max_attempts": 3, "claim_collect_s": 0.2})})
    with database.connect() as conn:
        for i in range(3):
            with pytest.raises(WrongCodeError):
                approve(by_address, conn, f"{i:012d}", "a@example.org", ("keep",),
                        requester=f"account-{i}", address="203.0.113.9")
        with pytest.raises(RequesterLockedError, match="your network"):
            approve(by_address, conn, "0" * 12, "a@example.org", ("keep",),
                    requester="account-fresh", address="203.0.113.9")
        with pytest.raises(WrongCodeError):  # another address is not locked out
            approve(by_address, conn, "1" * 12, "b@example.org", ("keep",),
                    requester="b", address="198.51.100.7")
    fleet_wide = by_address.model_copy(update={"fleet": by_address.fleet.model_copy(
        update={"fleet_max_attempts": 4})})
    with database.connect() as conn:
        with pytest.raises(RequesterLockedError, match="by anyone"):
            approve(fleet_wide, conn, "2" * 12, "c@example.org", ("keep",),
                    requester="c", address="192.0.2.1")
