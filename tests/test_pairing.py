"""Pairing with the paw and the LED, end to end over a real Mosquitto and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fleet_support import (
    CLAIM_PASSWORD,
    RecordingLed,
    SpeakingFake,
    cloud_env,
)
from support import run_cli, start_cli, wait_for_log

from agent.credentials import CredentialVault
from agent.pairing import Pairing, PairingState, connect_with_retry, paired_settings
from agent.runtime import open_bear
from agent.store import ConversationStore
from config.errors import SyncError
from hardware.led import LED_PATTERNS, StatusLed
from hardware.pins import MockPaw, PawButton
from sync.client import MqttLink
from sync.cloud.pairing import ExpiredCodeError, LockedClaimError, WrongCodeError, approve
from sync.device import DeviceSync

pytest_plugins = ["fleet_support"]


def _hold(paw: MockPaw, seconds: float) -> None:
    paw.press()
    time.sleep(seconds)
    paw.release()


def _wait(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.02)


def test_paw_hold_pairs_and_the_bear_syncs_as_itself(bear, secure_broker, database, env,
                                                     tmp_path, pins):
    """Hold 5 s (here 0.3 s) -> blue pulse, code spoken twice, approve -> green; the bear
    keeps turns under the cloud's consent and syncs them with its own credentials."""
    voice = SpeakingFake()
    with StatusLed.from_settings(bear.pins, pins) as led:
        pairing = Pairing(bear, bear.device.id, led, voice.say)
        with PawButton(bear.pins, pins, pairing.paw_pressed, pairing.paw_released):
            paw = MockPaw(pins, bear.pins.paw_pin)
            paw.press()
            time.sleep(bear.pairing.hold_pair_s + 0.15)
            assert led.state == "pairing" and led.animating  # armed: pulsing blue
            paw.release()
            said = voice.wait_for(2)
        assert said[0] == said[1] and len(voice.code()) == 6
        assert LED_PATTERNS[led.state].effect == "pulse" and led.state == "pairing"

        cloud = cloud_env(env, secure_broker, tmp_path)
        result = run_cli("teddy-cloud", "fleet", "pair", "approve", "--code", voice.code(),
                         "--parent-email", "sam@example.org", "--consent", "keep,sync",
                         env=cloud)
        assert f"paired {bear.device.id}" in result.stdout
        outcome = pairing.wait(20)
        assert outcome is not None and outcome.status == "approved", outcome
        assert led.state == "paired" and led.colour == (0.0, 1.0, 0.0)
        pairing.close()

    credentials = CredentialVault(bear.store).load()
    assert credentials.mqtt_username == bear.device.id and len(credentials.fleet_public_key) == 32
    sealed = (Path(bear.store.data_dir) / "fleet.sealed").read_bytes()
    assert credentials.mqtt_password.encode() not in sealed
    with ConversationStore.open(bear.store) as store:
        consent = store.consent()
    assert consent.source == "cloud" and consent.parent == "sam@example.org"
    assert [s.value for s in consent.scopes] == ["keep", "sync"]

    with open_bear(bear) as teddy:  # the real pipeline now keeps turns
        teddy.respond("hello teddy")
        assert teddy.store.outbox_depth() == 2

    log = tmp_path / "ingest.log"
    ingest = start_cli("teddy-cloud", "--log-level", "INFO", "ingest", env=cloud, log=log)
    try:
        wait_for_log(log, "ingesting")
        own = paired_settings(bear)

        def connected() -> DeviceSync:
            sync = DeviceSync(own, store, bear.device.id, "test")
            try:
                sync.connect()
            except SyncError:
                sync.close()
                raise
            return sync

        with ConversationStore.open(bear.store) as store:
            with connect_with_retry(connected) as sync:
                report = sync.sync_once(timeout=20)
            assert report.turns_acked == 2 and store.outbox_depth() == 0
    finally:
        ingest.terminate()
        ingest.wait(15)
    with database.connect() as conn:
        rows = conn.execute("SELECT role FROM turns WHERE device_id = %s ORDER BY seq",
                            (bear.device.id,)).fetchall()
        pairing_row = conn.execute("SELECT status, parent_email FROM pairings WHERE device_id"
                                   " = %s", (bear.device.id,)).fetchone()
    assert [r[0] for r in rows] == ["child", "bear"]
    assert pairing_row == ("approved", "sam@example.org")


def test_the_claim_credential_touches_nothing_else(bear, secure_broker, cloud):
    """The claim user reads and writes its own claim root only: nothing from a bear's topics
    or another claim reaches it, and what it publishes under a bear's root goes nowhere."""
    from sync.cloud.cloud_link import CloudLink

    mine, other = "c" + "a" * 24, "c" + "b" * 24
    claim = bear.mqtt.model_copy(update={"username": "claim", "password": _secret(CLAIM_PASSWORD)})
    received: list[str] = []
    with CloudLink(cloud) as operator, MqttLink(claim, client_id=mine) as link:
        seen_by_cloud = operator.expect(f"teddy/v1/{bear.device.id}/up/#")
        link.on("message", lambda c, u, m: received.append(m.topic))
        link.connect()
        for topic in (f"teddy/v1/{bear.device.id}/down/cmd", f"teddy/v1/claim/{other}/down/answer",
                      f"teddy/v1/claim/{mine}/down/answer"):
            link.client.subscribe(topic, qos=1)
        time.sleep(0.3)
        link.client.publish(f"teddy/v1/{bear.device.id}/up/turns", b"{}", qos=1).wait_for_publish(5)
        for topic in (f"teddy/v1/{bear.device.id}/down/cmd", f"teddy/v1/claim/{other}/down/answer",
                      f"teddy/v1/claim/{mine}/down/answer"):
            operator.publish(topic, b"{}")
        _wait(lambda: received)
        time.sleep(0.3)
    assert received == [f"teddy/v1/claim/{mine}/down/answer"]
    assert seen_by_cloud.empty()
    with pytest.raises(SyncError, match="refused"):
        wrong = bear.mqtt.model_copy(update={"username": "claim", "password": _secret("nope")})
        MqttLink(wrong, client_id="c" + "d" * 24).connect()


def test_wrong_codes_are_refused_and_brute_force_locks_the_claim(bear, cloud, database):
    """Each wrong code counts against the waiting claim; at the limit it is locked and the
    bear is told (LED error); the right code no longer works."""
    cloud = cloud.model_copy(update={"fleet": cloud.fleet.model_copy(
        update={"claim_max_attempts": 3})})
    voice, led = SpeakingFake(), RecordingLed()
    pairing = Pairing(bear, bear.device.id, led, voice.say)
    pairing.start()
    voice.wait_for(1)
    right = voice.code()
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    with database.connect() as conn:
        for _attempt in range(3):
            with pytest.raises(WrongCodeError, match="matches no bear"):
                approve(cloud, conn, wrong, "eve@example.org", ("keep",), bear.device.id)
        with pytest.raises(LockedClaimError, match="locked after 3 wrong codes"):
            approve(cloud, conn, right, "sam@example.org", ("keep",), bear.device.id)
        status = conn.execute("SELECT status, failed_attempts FROM pairings WHERE device_id = %s",
                              (bear.device.id,)).fetchone()
    outcome = pairing.wait(10)
    assert outcome.status == "rejected" and "locked" in outcome.reason
    assert status == ("locked", 3)
    assert led.shown[-1] == "error" and not CredentialVault(bear.store).exists()
    assert not ConversationStore.exists(bear.store)  # an unpaired bear keeps nothing


def test_a_wrong_code_on_the_command_line_fails_clearly(bear, secure_broker, env, tmp_path,
                                                        database):
    voice = SpeakingFake()
    pairing = Pairing(bear, bear.device.id, RecordingLed(), voice.say)
    pairing.start()
    voice.wait_for(1)
    wrong = f"{(int(voice.code()) + 500) % 1_000_000:06d}"
    result = run_cli("teddy-cloud", "fleet", "pair", "approve", "--code", wrong,
                     "--parent-email", "sam@example.org", env=cloud_env(env, secure_broker,
                                                                        tmp_path), check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"teddy-cloud: error: code {wrong} matches no bear waiting to pair — check the code "
        "the bear spoke; after a few wrong codes the bear needs a new one (hold its paw 5 s)"]
    pairing.close()


def test_an_expired_code_is_refused_by_the_cloud(bear, cloud, database):
    """A code older than 5 minutes: the cloud refuses it and tells the bear."""
    voice, led = SpeakingFake(), RecordingLed()
    pairing = Pairing(bear, bear.device.id, led, voice.say, clock=lambda: time.time() - 301)
    pairing.start()
    voice.wait_for(1)
    with database.connect() as conn, pytest.raises(ExpiredCodeError, match="expired"):
        approve(cloud, conn, voice.code(), "sam@example.org", ("keep",))
    outcome = pairing.wait(10)
    assert outcome.status == "rejected" and outcome.reason == "the code expired"
    assert not CredentialVault(bear.store).exists()


def test_the_bear_gives_up_when_nobody_enters_the_code(secure_broker, data_dir, cloud):
    from fleet_support import bear_settings

    bear = bear_settings(secure_broker, data_dir, code_ttl_s=0.8)
    voice, led = SpeakingFake(), RecordingLed()
    pairing = Pairing(bear, bear.device.id, led, voice.say)
    pairing.start()
    outcome = pairing.wait(10)
    assert outcome.status == "expired" and led.shown == ["pairing", "error"]
    assert pairing.state == PairingState.IDLE
    # the retained request is gone: a later approval finds nothing to match
    from sync.cloud.cloud_link import CloudLink
    from sync.cloud.pairing import collect_requests

    with CloudLink(cloud) as link:
        assert [r for r in collect_requests(link, cloud) if r.device_id == bear.device.id] == []


def test_a_short_hold_does_nothing_and_a_long_hold_resets(bear, cloud, database, pins):
    """Released before 5 s: nothing. Held 15 s (here 1.2 s): keys, credentials and data
    crypto-shredded, LED red then off; copies taken before cannot be decrypted."""
    from fleet_support import pair_bear

    with database.connect() as conn:
        pair_bear(bear, cloud, conn)
    with open_bear(bear) as teddy:
        teddy.respond("my dog is called biscuit")
    data = Path(bear.store.data_dir)
    before = {p.name: p.read_bytes() for p in data.iterdir() if p.is_file()}
    assert {"teddy.key", "fleet.key", "fleet.sealed", "teddy.db"} <= set(before)
    assert _opens(before["fleet.sealed"], before["fleet.key"])  # the copy WAS decryptable

    voice = SpeakingFake()
    with StatusLed.from_settings(bear.pins, pins) as led:
        pairing = Pairing(bear, bear.device.id, led, voice.say)
        with PawButton(bear.pins, pins, pairing.paw_pressed, pairing.paw_released):
            paw = MockPaw(pins, bear.pins.paw_pin)
            _hold(paw, 0.1)
            time.sleep(0.2)
            assert voice.said == [] and pairing.state == PairingState.IDLE
            paw.press()
            _wait(lambda: led.state == "factory_reset", 5)
            assert led.animating and led.colour[1:] == (0.0, 0.0)  # red
            _wait(lambda: led.state == "off" and pairing.state == PairingState.IDLE, 10)
            paw.release()
        assert led.colour == (0.0, 0.0, 0.0) and voice.said == []
        pairing.close()

    left = {p.name: p.read_bytes() for p in data.iterdir() if p.is_file()}
    assert set(left) <= {"device_id"}, left
    assert not CredentialVault(bear.store).exists() and not ConversationStore.exists(bear.store)
    for name, key in before.items():  # no key that existed survives anywhere
        if name.endswith(".key"):
            assert all(key.strip() not in content for content in left.values())
    assert not _opens(before["fleet.sealed"], *(v for v in left.values()))


def _opens(sealed: bytes, *candidate_key_files: bytes) -> bool:
    import base64

    from agent.credentials import AAD
    from agent.store import crypto

    for text in candidate_key_files:
        try:
            key = base64.b64decode(text.strip(), validate=True)
            crypto.unseal(key, sealed, AAD, what="copy")
            return True
        except Exception:
            continue
    return False


def _secret(text: str):
    from pydantic import SecretStr

    return SecretStr(text)
