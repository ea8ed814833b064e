"""Pairing with the paw and the LED, end to end over a real Mosquitto and PostgreSQL."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from support.fleet import RecordingLed, SpeakingFake, bear_env, cloud_env, connected_sync
from support.processes import run_cli, start_cli, wait_for_log
from support.waiting import wait_until

from agent.credentials import CredentialVault
from agent.pairing import Pairing, PairingState, connect_with_retry, paired_settings
from agent.runtime import open_bear
from agent.store import ConversationStore
from hardware.led import LED_PATTERNS, StatusLed
from hardware.pins import MockPaw, PawButton
from sync.cloud.pairing import ExpiredCodeError, LockedClaimError, WrongCodeError, approve


def _hold(paw: MockPaw, seconds: float) -> None:
    paw.press()
    time.sleep(seconds)
    paw.release()


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
        assert said[0] == said[1] and len(voice.code()) == 12
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
    assert credentials.parent == "sam@example.org" and len(credentials.pairing_id) == 36
    sealed = (Path(bear.store.data_dir) / "fleet.sealed").read_bytes()
    assert credentials.release_token.encode() not in sealed and b"sam@" not in sealed
    with ConversationStore.open(bear.store) as store:
        consent = store.consent()
    assert consent.source == "cloud" and consent.parent == "sam@example.org"
    assert [s.value for s in consent.scopes] == ["keep", "sync"]

    with open_bear(bear) as teddy:  # the real pipeline now keeps turns
        teddy.respond("hello teddy")
        assert teddy.store.outbox_depth() == 2

    log = tmp_path / "ingest.log"
    ingest = start_cli("teddy-cloud", "--log-level", "INFO", "ingest", log=log,
                       env=cloud_env(env, secure_broker, tmp_path, "svc.ingest"))
    try:
        wait_for_log(log, "ingesting")
        own = paired_settings(bear)
        with ConversationStore.open(bear.store) as store:
            with connect_with_retry(lambda: connected_sync(own, store)) as sync:
                report = sync.sync_once(timeout=20)
            assert report.turns_acked == 2 and store.outbox_depth() == 0
    finally:
        ingest.terminate()
        ingest.wait(15)
    with database.connect() as conn:
        rows = conn.execute("SELECT role, pairing_id::text FROM turns WHERE device_id = %s"
                            " ORDER BY seq", (bear.device.id,)).fetchall()
        pairing_row = conn.execute("SELECT status, parent_email, pairing_id::text FROM pairings"
                                   " WHERE device_id = %s", (bear.device.id,)).fetchone()
    assert [r[0] for r in rows] == ["child", "bear"]
    assert pairing_row == ("approved", "sam@example.org", credentials.pairing_id)
    assert {r[1] for r in rows} == {credentials.pairing_id}  # the family's scope


def test_wrong_codes_are_refused_and_brute_force_locks_the_claim(bear, cloud, database):
    """Each wrong code for a named bear counts against its claim; at the limit it is locked
    and the bear is told (LED error); the right code no longer works."""
    cloud = cloud.model_copy(update={"fleet": cloud.fleet.model_copy(
        update={"claim_max_attempts": 3})})
    voice, led = SpeakingFake(), RecordingLed()
    pairing = Pairing(bear, bear.device.id, led, voice.say)
    pairing.start()
    voice.wait_for(1)
    right = voice.code()
    wrong = f"{(int(right) + 1) % 10 ** 12:012d}"
    with database.connect() as conn:
        for _attempt in range(3):
            with pytest.raises(WrongCodeError, match="matches no bear"):
                approve(cloud, conn, wrong, "eve@example.org", ("keep",), bear.device.id,
                        requester=f"eve-{bear.device.id}")
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
    wrong = f"{(int(voice.code()) + 500) % 10 ** 12:012d}"
    result = run_cli("teddy-cloud", "fleet", "pair", "approve", "--code", wrong,
                     "--parent-email", "sam@example.org", "--requester", f"op-{bear.device.id}",
                     env=cloud_env(env, secure_broker, tmp_path), check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"teddy-cloud: error: code {wrong} matches no bear waiting to pair — check the code "
        "the bear spoke; after a few wrong codes the bear needs a new one (hold its paw 5 s)"]
    pairing.close()


def test_an_expired_code_is_refused_by_the_cloud(bear, cloud, database):
    """A code older than its lifetime (5 min; here 1 s, counted from when the cloud first
    saw the claim): the cloud refuses it and tells the bear."""
    cloud = cloud.model_copy(update={"fleet": cloud.fleet.model_copy(update={"claim_ttl_s": 1})})
    voice, led = SpeakingFake(), RecordingLed()
    pairing = Pairing(bear, bear.device.id, led, voice.say)
    pairing.start()
    voice.wait_for(1)
    wrong = f"{(int(voice.code()) + 1) % 10 ** 12:012d}"
    with database.connect() as conn:
        with pytest.raises(WrongCodeError):
            approve(cloud, conn, wrong, "sam@example.org", ("keep",),  # the cloud sees it
                    requester=f"sam-{bear.device.id}")
        time.sleep(1.2)
        with pytest.raises(ExpiredCodeError, match=f"code {voice.code()} expired"):
            approve(cloud, conn, voice.code(), "sam@example.org", ("keep",),
                    requester=f"sam-{bear.device.id}")
    outcome = pairing.wait(10)
    assert outcome.status == "rejected" and outcome.reason == "the code expired"
    assert led.shown[-1] == "error" and not CredentialVault(bear.store).exists()


def test_the_broker_forgets_a_claim_its_bear_could_not_clear(bear, cloud):
    """Power lost while pairing: the retained request expires with the code on its own."""
    from sync.cloud.cloud_link import CloudLink
    from sync.cloud.identity import claim_keys
    from sync.cloud.pairing import collect_claims

    short = bear.model_copy(update={"pairing": bear.pairing.model_copy(
        update={"code_ttl_s": 2.0})})
    keys = claim_keys(cloud)
    with CloudLink(cloud) as link:
        request = _publish_claim_like_a_bear(short)
        assert [c.request.claim_id for c in collect_claims(link, cloud, keys)].count(request) == 1
    time.sleep(3.2)  # Mosquitto counts expiry in whole seconds
    with CloudLink(cloud) as link:
        assert request not in [c.request.claim_id for c in collect_claims(link, cloud, keys)]


def _publish_claim_like_a_bear(settings) -> str:
    """Publish a claim request as Pairing does, then vanish without clearing it."""
    from support.identity import publish_claim

    return publish_claim(settings, settings.device.id, "123456789012",
                         expiry_s=settings.pairing.code_ttl_s)


def test_the_bear_gives_up_when_nobody_enters_the_code(database, data_dir, cloud):
    from support.fleet import bear_settings

    bear = bear_settings(cloud, database, data_dir, code_ttl_s=0.8)
    voice, led = SpeakingFake(), RecordingLed()
    pairing = Pairing(bear, bear.device.id, led, voice.say)
    pairing.start()
    outcome = pairing.wait(10)
    assert outcome.status == "expired" and led.shown == ["pairing", "error"]
    assert pairing.state == PairingState.IDLE
    # the retained request is gone: a later approval finds nothing to match
    from sync.cloud.cloud_link import CloudLink
    from sync.cloud.identity import claim_keys
    from sync.cloud.pairing import collect_claims

    with CloudLink(cloud) as link:
        assert [c for c in collect_claims(link, cloud, claim_keys(cloud))
                if c.device_id == bear.device.id] == []


def test_a_short_hold_does_nothing_and_a_long_hold_resets(bear, cloud, database, pins):
    """Released before 5 s: nothing. Held 15 s (here 1.2 s): keys, credentials and data
    crypto-shredded, LED red then off; copies taken before cannot be decrypted."""
    from support.fleet import pair_bear

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
            wait_until(lambda: led.state == "factory_reset", 5, "the factory-reset light")
            assert led.animating and led.colour[1:] == (0.0, 0.0)  # red
            wait_until(lambda: led.state == "off" and pairing.state == PairingState.IDLE, 10,
                       "the light off and pairing idle")
            paw.release()
        assert led.colour == (0.0, 0.0, 0.0) and voice.said == []
        pairing.close()

    left = {p.name: p.read_bytes() for p in data.iterdir() if p.is_file()}
    assert set(left) <= {"device_id", "release.json", "reset-epoch.json"}, left
    assert b"example.org" not in left["release.json"]  # the release notice: no family data
    assert set(json.loads(left["reset-epoch.json"])) == {"reset_at", "epoch"}  # nor here
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


def test_every_led_state_is_one_table_shown_on_mock_pins(pins):
    """listening, speaking, pairing, paired, offline, low battery, error, factory reset:
    one table, and one LED adapter that the voice loop and pairing both use."""
    wanted = {"listening", "speaking", "pairing", "paired", "offline", "low_battery", "error",
              "factory_reset", "off"}
    assert wanted <= set(LED_PATTERNS)
    with StatusLed(22, 27, 24, pins) as led:
        for state, pattern in LED_PATTERNS.items():
            led.show(state)
            assert led.state == state and led.animating == (pattern.effect != "solid")
            if pattern.effect == "solid":
                assert led.colour == pattern.colour
        led.show("pairing")
        colours = set()
        for _ in range(15):
            colours.add(led.colour)
            time.sleep(0.05)
        assert len(colours) > 5 and all(r == 0 and g == 0 for r, g, _b in colours)  # blue pulse
    from hardware.errors import PinError

    with StatusLed(22, 27, 24, pins) as led, pytest.raises(PinError, match="not in hardware"):
        led.show("disco")


def test_an_answer_opens_only_with_the_bear_that_asked():
    """The grant is sealed to the claim's one-time key and bound to that bear and claim."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from config.errors import ProtocolError
    from sync.protocol import ClaimAnswer, PairingGrant
    from sync.protocol.claim import open_grant, raw_public, seal_grant

    bear_key, other = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    grant = PairingGrant(parent="sam@example.org", scopes=["keep"], release_token="t" * 43)
    answer = seal_grant(grant, ClaimAnswer(device_id="bear-one", claim_id="c" + "1" * 24,
                                           nonce="0" * 32, status="approved", expires_at=1e9),
                        raw_public(bear_key))
    assert "t" * 43 not in answer.model_dump_json() and "sam@" not in answer.model_dump_json()
    assert open_grant(answer, bear_key) == grant
    with pytest.raises(ProtocolError, match="does not open with this key"):
        open_grant(answer, other)
    for moved in ({"claim_id": "c" + "2" * 24}, {"device_id": "bear-two"}):
        with pytest.raises(ProtocolError):
            open_grant(answer.model_copy(update=moved), bear_key)


def test_teddy_pair_and_factory_reset_from_the_shell(secure_broker, cloud, database, env,
                                                     tmp_path, data_dir):
    """The laptop twin: ``teddy pair`` prints the code it speaks; the parent approves."""
    import re

    from support.fleet import bear_settings

    made = bear_settings(cloud, database, data_dir, device_id=f"bear-shell-{id(env) % 9999}")
    shell_env = bear_env(env, made)
    log = tmp_path / "pair.log"
    process = start_cli("teddy", "pair", env=shell_env, log=log)
    try:
        wait_for_log(log, "My pairing code is")
        code = "".join(re.findall(r"\d", log.read_text().split("My pairing code is")[1]
                                  .split(".")[0]))
        run_cli("teddy-cloud", "fleet", "pair", "approve", "--code", code, "--parent-email",
                "sam@example.org", "--consent", "keep,sync,name",
                env=cloud_env(env, secure_broker, tmp_path))
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert f"paired as {made.device.id}" in log.read_text()
    consent = run_cli("teddy", "consent", "show", env=shell_env).stdout
    assert '"source": "cloud"' in consent and '"name"' in consent
    out = run_cli("teddy", "factory-reset", "--yes", env=shell_env).stdout
    assert out.startswith("factory reset: 2 keys")
    # the id came from config; what is left is the proof that the pairing ended here, and
    # when (commands issued before it are refused)
    assert sorted(p.name for p in data_dir.iterdir()) == ["release.json", "reset-epoch.json"]
