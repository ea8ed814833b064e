"""Identity is given, pairing is bound and one-shot, each family's data is its own: the
attacks of issue 12 (items 1, 2, 6, 7), tried against a real Mosquitto and PostgreSQL."""

from __future__ import annotations

import base64
import json
import queue
import threading
import time

import pytest
from support.fleet import (
    INGEST_PASSWORD,
    RecordingLed,
    RunningBear,
    SpeakingFake,
    bear_settings,
    cloud_env,
    cloud_settings,
    pair_bear,
)
from support.identity import publish_claim
from support.processes import run_cli
from support.waiting import wait_until

from agent.credentials import CredentialVault
from agent.pairing import Pairing, keep_release_notice
from agent.store import ConversationStore, Scope
from config.errors import ProtocolError
from sync.client import MqttLink
from sync.cloud.cloud_link import CloudLink
from sync.cloud.fleet import Fleet, generate_signing_key
from sync.cloud.identity import claim_keys
from sync.cloud.pairing import (
    AlreadyPairedError,
    PairingError,
    RequesterLockedError,
    WrongCodeError,
    approve,
)
from sync.protocol import ClaimAnswer, ClaimRequest, up_topic
from sync.protocol.claim import code_digest, open_request


def _as(bear, username: str, password: str):
    """``bear``'s settings logged in as another broker account."""
    from pydantic import SecretStr

    return bear.model_copy(update={"mqtt": bear.mqtt.model_copy(
        update={"username": username, "password": SecretStr(password)})})


def _start(bear) -> tuple[Pairing, SpeakingFake]:
    voice = SpeakingFake()
    pairing = Pairing(bear, bear.device.id, RecordingLed(), voice.say)
    pairing.start()
    voice.wait_for(1)
    return pairing, voice


def _consent(database, device_id: str):
    with database.connect() as conn:
        return conn.execute("SELECT parent_email, pairing_id::text FROM consents WHERE"
                            " device_id = %s AND revoked_at IS NULL", (device_id,)).fetchall()


def test_a_service_account_or_an_unmade_id_cannot_claim(bear, cloud, secure_broker, database):
    """Item 1: a claim as ``svc.ingest`` (a service account: its claim on up/ is refused by
    the broker, and ``svc.*`` is no device id) and as a broker account never registered at
    manufacture both go unanswered; nobody's password changes."""
    rogue = "bear-rogue-01"  # a broker account, but not made by teddy-cloud provision
    with secure_broker.auth() as auth:
        auth.set_device(rogue, "rogue-password-123")
    with MqttLink(_as(bear, "svc.ingest", INGEST_PASSWORD).mqtt, client_id="svc.ingest") as link:
        link.connect()  # no device topic can even be named for svc.*: try the raw topic
        link.publish_raw("teddy/v1/svc.ingest/up/claim", b'{"v": 2}', qos=1,
                         retain=True).wait(5)
    publish_claim(_as(bear, rogue, "rogue-password-123"), rogue, "111111111111")
    with database.connect() as conn:
        with pytest.raises(PairingError, match="'svc.ingest' is not"):
            approve(cloud, conn, "111111111111", "eve@example.org", ("keep", "sync"),
                    "svc.ingest")
        for device in (None, rogue):
            with pytest.raises(WrongCodeError, match="matches no bear waiting to pair"):
                approve(cloud, conn, "111111111111", "eve@example.org", ("keep", "sync"), device,
                        requester=f"eve-{device}-{bear.device.id}")
        rows = conn.execute("SELECT count(*) FROM pairings WHERE device_id = ANY(%s)",
                            (["svc.ingest", rogue],)).fetchone()[0]
    assert rows == 0
    ingest = _as(bear, "svc.ingest", INGEST_PASSWORD)
    with MqttLink(ingest.mqtt, client_id="svc.ingest") as link:
        link.connect()  # its password is what it was
        assert link.connected
    with secure_broker.auth() as auth:
        assert auth.has_service("svc.ingest")  # still a service account, not a bear


def test_a_dotted_service_name_is_not_a_device_topic(bear, cloud, database):
    """``svc.*`` accounts live outside the device-id namespace: their claim is not even read."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from sync.cloud.pairing import collect_claims
    from sync.protocol import ClaimBody
    from sync.protocol.claim import seal_request

    cloud_login = _as(bear, "svc.fleet", cloud.mqtt.password.get_secret_value())

    body = ClaimBody(claim_id="c" + "e" * 24, device_id="svc-ingest", code_digest="0" * 64,
                     nonce="1" * 32, requested_at=time.time())
    request = seal_request(body, X25519PrivateKey.generate(), bear.pairing.claim_key)
    with MqttLink(cloud_login.mqtt, client_id="svc.fleet") as link:
        link.connect()
        link.publish_raw("teddy/v1/svc.ingest/up/claim", request.to_payload(), qos=1,
                         retain=True).wait(5)
    with CloudLink(cloud) as link:
        claims = collect_claims(link, cloud, claim_keys(cloud))
    assert all(c.device_id != "svc.ingest" for c in claims)


def test_another_bears_credentials_cannot_claim_a_paired_bear(bear, cloud, secure_broker,
                                                              database, data_dir):
    """Item 1: bear B's login cannot publish on bear A's claim topic (ACL), and a claim on
    B's own topic that names A inside is refused; A's consent and password are untouched."""
    with database.connect() as conn:
        pair_bear(bear, cloud, conn, parent="sam@example.org")
    other = bear_settings(cloud, database, data_dir.parent / "bear-b")
    before = _consent(database, bear.device.id)
    publish_claim(other, bear.device.id, "222222222222")  # on A's topic: the broker drops
    publish_claim(other, other.device.id, "333333333333", body_device=bear.device.id)
    with database.connect() as conn:
        for code in ("222222222222", "333333333333"):
            with pytest.raises(WrongCodeError):
                approve(cloud, conn, code, "eve@example.org", ("keep", "sync"),
                        requester=f"eve-{code}-{bear.device.id}")
        claimed = conn.execute("SELECT count(*) FROM pairings WHERE device_id = %s",
                               (bear.device.id,)).fetchone()[0]
    assert claimed == 1  # only the real pairing
    assert _consent(database, bear.device.id) == before
    assert before[0][0] == "sam@example.org"
    with MqttLink(bear.mqtt, client_id=f"teddy-{bear.device.id}") as link:
        link.connect()  # A's own password still works: nobody replaced it
        assert link.connected


def test_a_paired_bear_is_reclaimed_only_after_a_reset_the_cloud_can_verify(bear, cloud,
                                                                             database):
    """With the paired bear's own login (its SD card) but not its pairing's release token,
    a claim is refused and signed as such; after a factory reset the bear's claim carries
    the release: from another parent it only asks the holder (issue 21: a card copy has the
    token too), from the holder itself the new pairing replaces the old one."""
    with database.connect() as conn:
        pair_bear(bear, cloud, conn, parent="sam@example.org")
    first = _consent(database, bear.device.id)
    publish_claim(bear, bear.device.id, "444444444444")  # no release inside
    with database.connect() as conn:
        with pytest.raises(WrongCodeError):
            approve(cloud, conn, "444444444444", "eve@example.org", ("keep",),
                    requester=f"eve-{bear.device.id}")
        assert conn.execute("SELECT status FROM pairings WHERE device_id = %s AND status ="
                            " 'refused'", (bear.device.id,)).fetchone() == ("refused",)
    assert _consent(database, bear.device.id) == first
    refused = Pairing(bear, bear.device.id, RecordingLed(), SpeakingFake().say)
    refused.start()
    assert refused.wait(10).reason.startswith("this bear is already paired")

    assert keep_release_notice(bear)  # the 15 s hold keeps this, then shreds
    from agent.factory_reset import factory_reset

    factory_reset(bear)
    with database.connect() as conn:  # the reset alone (a card copy has it too) moves nothing
        with pytest.raises(AlreadyPairedError, match="asked to release"):
            pair_bear(bear, cloud, conn, parent="robin@example.org")
        assert _consent(database, bear.device.id) == first
        pair_bear(bear, cloud, conn, parent="sam@example.org")  # the holder itself re-pairs
        old = conn.execute("SELECT status FROM pairings WHERE pairing_id = %s",
                           (first[0][1],)).fetchone()[0]
    assert old == "released"
    assert [c[0] for c in _consent(database, bear.device.id)] == ["sam@example.org"]


def test_a_reader_of_the_claim_topic_cannot_recover_the_code(bear, cloud, database):
    """Item 2: the retained claim is sealed to the cloud's claim key: neither the code nor
    its digest is in the clear, and it does not open with any other key."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    with CloudLink(cloud) as reader:
        inbox = reader.expect(ClaimRequest, bear.device.id)
        pairing, voice = _start(bear)
        try:
            _topic, payload = inbox.get(timeout=10)
        finally:
            pairing.close()
    request = ClaimRequest.from_payload(payload)
    code = voice.code()
    assert code_digest(request.claim_id, code).encode() not in payload
    assert code.encode() not in payload and b"code_digest" not in payload
    with pytest.raises(ProtocolError, match="does not open"):
        open_request(request, bear.device.id, X25519PrivateKey.generate())
    body = open_request(request, bear.device.id, claim_keys(cloud).opening)
    assert body.code_digest == code_digest(request.claim_id, code)


def test_a_forged_answer_is_refused_and_the_fleet_key_stays(bear, cloud, secure_broker,
                                                            database):
    """Item 2: an answer bound to the very claim (right claim id and nonce) but signed by
    another key, published by an account that may write every down/ (ingest), is ignored;
    the real approval then pairs the bear with the fleet key from manufacture."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pairing, voice = _start(bear)
    with CloudLink(cloud) as reader:
        claim = reader.expect(ClaimRequest, bear.device.id).get(timeout=10)[1]
    body = open_request(ClaimRequest.from_payload(claim), bear.device.id,
                        claim_keys(cloud).opening)
    forged = ClaimAnswer(device_id=bear.device.id, claim_id=body.claim_id, nonce=body.nonce,
                         status="rejected", reason="forged", expires_at=time.time() + 60,
                         ).signed_with(Ed25519PrivateKey.generate())
    attacker = _as(bear, "svc.ingest", INGEST_PASSWORD)
    with MqttLink(attacker.mqtt, client_id="svc.ingest") as link:
        link.connect()
        link.publish(forged, bear.device.id).wait(5)
    assert pairing.wait(1.0) is None  # still waiting: the forged answer changed nothing
    with database.connect() as conn:
        approve(cloud, conn, voice.code(), "sam@example.org", ("keep", "sync"))
    outcome = pairing.wait(20)
    pairing.close()
    assert outcome.status == "approved", outcome
    kept = CredentialVault(bear.store).load()
    assert kept.fleet_public_key == base64.b64decode(bear.pairing.fleet_key)


def test_wrong_codes_of_one_requester_lock_only_that_requester(cloud, database, data_dir):
    """Item 6: five wrong codes from one requester (no device named) lock neither the
    waiting claims nor other requesters; that requester is then refused for a while."""
    one = bear_settings(cloud, database, data_dir / "one")
    two = bear_settings(cloud, database, data_dir / "two")
    (p1, v1), (p2, v2) = _start(one), _start(two)
    eve = f"eve-{one.device.id}@example.org"  # the limit is per requester: one of her own
    try:
        wrong = next(f"{n:012d}" for n in range(1_000_000) if f"{n:012d}" not in (v1.code(),
                                                                                 v2.code()))
        with database.connect() as conn:
            for _ in range(cloud.fleet.requester_max_attempts):
                with pytest.raises(WrongCodeError):
                    approve(cloud, conn, wrong, eve, ("keep",))
            with pytest.raises(RequesterLockedError, match=f"wrong codes from {eve}"):
                approve(cloud, conn, v1.code(), eve, ("keep",))
            assert conn.execute("SELECT max(failed_attempts) FROM pairings WHERE device_id ="
                                " ANY(%s)", ([one.device.id, two.device.id],)).fetchone() == (0,)
            approve(cloud, conn, v1.code(), "sam@example.org", ("keep", "sync"))
            approve(cloud, conn, v2.code(), "robin@example.org", ("keep", "sync"))
        assert p1.wait(20).status == "approved" and p2.wait(20).status == "approved"
    finally:
        p1.close()
        p2.close()


def test_two_approvals_at_once_exactly_one_pairs_and_both_sides_agree(bear, cloud, database):
    """Item 6: the same code approved twice at the same moment: one "paired", one clear
    error; the cloud's consent and the bear's name the same parent."""
    pairing, voice = _start(bear)
    results: queue.Queue = queue.Queue()
    start = threading.Barrier(2)

    def approve_as(parent: str) -> None:
        with database.connect() as conn:
            start.wait()
            try:
                results.put((parent, approve(cloud, conn, voice.code(), parent, ("keep",))))
            except AlreadyPairedError as exc:
                results.put((parent, exc))

    threads = [threading.Thread(target=approve_as, args=(p,)) for p in
               ("sam@example.org", "robin@example.org")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    outcome = pairing.wait(20)
    pairing.close()
    done = [results.get_nowait() for _ in range(2)]
    winners = [parent for parent, result in done if not isinstance(result, Exception)]
    losers = [result for _parent, result in done if isinstance(result, Exception)]
    assert len(winners) == 1 and len(losers) == 1, done
    assert "nothing was changed" in str(losers[0]) or "already used" in str(losers[0])
    assert outcome.status == "approved"
    assert [c[0] for c in _consent(database, bear.device.id)] == winners
    with ConversationStore.open(bear.store) as store:
        assert store.consent().parent == winners[0]
    assert CredentialVault(bear.store).load().parent == winners[0]


def _sync_turns(settings, texts: list[str]) -> None:
    from agent.runtime import open_bear

    with open_bear(settings) as teddy:
        for text in texts:
            teddy.respond(text)
    with RunningBear(settings) as running:
        running.sync.sync_once(timeout=20)


def test_delete_data_for_a_parent_deletes_only_that_familys_rows(bear, cloud, database, env,
                                                                  secure_broker, tmp_path):
    """Item 7: pair to the first family, unpair, factory-reset, re-pair to a second family;
    ``fleet delete-data --parent first@`` deletes the first family's turns and alerts only;
    the second family's stay, and the bear (now theirs) is not told to delete."""
    from agent.factory_reset import factory_reset
    from sync.cloud.ingest import Ingestor

    ingestor = Ingestor(cloud_settings(secure_broker, database.dsn, tmp_path, "svc.ingest"))
    ingesting = threading.Thread(target=ingestor.run)
    ingesting.start()
    try:
        with database.connect() as conn:
            pair_bear(bear, cloud, conn, parent="first@example.org")
        _sync_turns(bear, ["hello teddy"])
        with RunningBear(bear), database.connect() as conn:
            Fleet(cloud, conn).unpair(bear.device.id)
        factory_reset(bear)
        with database.connect() as conn:
            pair_bear(bear, cloud, conn, parent="second@example.org")
        _sync_turns(bear, ["tell me a joke", "another one"])
        with database.connect() as conn:
            wait_until(lambda: conn.execute("SELECT count(*) FROM turns WHERE device_id = %s",
                                            (bear.device.id,)).fetchone()[0] == 6,
                       20, "the six turns in PostgreSQL")
            before = dict(conn.execute(
                "SELECT p.parent_email, count(*) FROM turns t JOIN pairings p USING"
                " (pairing_id) WHERE t.device_id = %s GROUP BY 1", (bear.device.id,)).fetchall())
            assert before == {"first@example.org": 2, "second@example.org": 4}
            conn.execute("INSERT INTO alerts (device_id, kind, severity, message, raised_at)"
                         " VALUES (%s, 'wellbeing.sad', 'warning', 'x', now())",
                         (bear.device.id,))
            out = run_cli("teddy-cloud", "fleet", "delete-data", "--parent", "first@example.org",
                          env=cloud_env(env, secure_broker, tmp_path))
            reports = json.loads(out.stdout)
            after = dict(conn.execute(
                "SELECT p.parent_email, count(*) FROM turns t JOIN pairings p USING"
                " (pairing_id) WHERE t.device_id = %s GROUP BY 1", (bear.device.id,)).fetchall())
            second_alerts = conn.execute("SELECT count(*) FROM alerts a JOIN pairings p USING"
                                         " (pairing_id) WHERE p.parent_email ="
                                         " 'second@example.org'").fetchone()[0]
    finally:
        ingestor.stop()
        ingesting.join(15)
        ingestor.close()
    assert after == {"second@example.org": 4}
    assert second_alerts == 1
    assert [r["cloud"]["turns_deleted"] for r in reports] == [2]
    assert reports[0]["current"] is False and reports[0]["confirmed"] is True
    with ConversationStore.open(bear.store) as store:  # the second family's bear kept its own
        assert len(store.turns()) == 4


def test_a_factory_provisioned_bear_takes_signed_fleet_commands(bear, cloud, database):
    """"Every bear can be reached": never paired, consent given on the bear itself, and a
    signed delete-data and unpair from the fleet run (the fleet key came at manufacture)."""
    assert not CredentialVault(bear.store).exists()
    with ConversationStore.open(bear.store, create=True) as store:
        store.grant_consent("sam@example.org", [Scope.KEEP], source="local")
    from agent.runtime import open_bear

    with open_bear(bear) as teddy:
        teddy.respond("hello teddy")
    with RunningBear(bear) as running, database.connect() as conn:
        fleet = Fleet(cloud, conn)
        deleted = fleet.delete_data(bear.device.id)
        assert deleted["bear"]["status"] == "done" and running.store.turns() == []
        unpaired = fleet.unpair(bear.device.id)
        assert unpaired["bear"]["status"] == "done" and running.unpaired.wait(5)
        assert running.store.consent() is None
    assert deleted["confirmed"] is True


def test_a_bear_that_keeps_nothing_is_still_reached_by_the_fleet(bear, cloud, database):
    """No consent, no store, never paired: the appliance's uplink still takes signed
    commands (the fleet key and the login came at manufacture); a foreign signature is
    refused."""
    from agent.runtime import open_bear
    from agent.uplink import Uplink

    with open_bear(bear) as teddy:
        assert teddy.store is None
        uplink = Uplink(bear, teddy)
        assert uplink.start() is True
        try:
            wait_until(lambda: uplink.connected, 10, "the uplink to connect")
            time.sleep(0.3)  # SUBACK of down/cmd
            with database.connect() as conn:
                fleet = Fleet(cloud, conn)
                pong = fleet.send(bear.device.id, "ping", wait=True).result
                deleted = fleet.send(bear.device.id, "delete-data", wait=True).result
                generate_signing_key(cloud.store.data_dir / "foreign.key", exist_ok=True)
                other = cloud.model_copy(update={"fleet": cloud.fleet.model_copy(update={
                    "signing_key_file": cloud.store.data_dir / "foreign.key"})})
                foreign = Fleet(other, conn).send(bear.device.id, "ping", wait=True).result
        finally:
            uplink.close()
    assert pong.status == "done" and deleted.status == "done"
    assert deleted.data.get("kept") is False
    assert foreign.status == "rejected" and "signature" in foreign.reason


def test_a_malformed_claim_does_not_stop_pairing(bear, cloud, database, data_dir):
    """A bear retaining 4000-deep JSON (under the size limit), or a claim that does not
    open, on its own up/claim: every other bear still pairs."""
    garbage = ClaimRequest(claim_id="c" + "f" * 24, ephemeral_key="A" * 43 + "=",
                           sealed="B" * 40).to_payload()
    for name, payload in (("deep", b"[" * 4000 + b"]" * 4000), ("sealed", garbage)):
        bad = bear_settings(cloud, database, data_dir.parent / name)
        with MqttLink(bad.mqtt, client_id=f"teddy-{bad.device.id}") as link:
            link.connect()
            link.publish_raw(up_topic(bad.device.id, "claim"), payload, qos=1,
                             retain=True).wait(5)
    pairing, voice = _start(bear)
    try:
        with database.connect() as conn:
            approve(cloud, conn, voice.code(), "sam@example.org", ("keep",))
        assert pairing.wait(20).status == "approved"
    finally:
        pairing.close()


def test_a_new_operator_provisions_and_pairs_a_bear_with_the_shipped_commands(
        env, database, tmp_path):
    """README/operations path, every step the installed command: the shipped broker config
    (dynamic security, made as ``teddy-cloud broker-init`` makes it) -> ``teddy-cloud fleet
    keygen`` -> ``teddy-cloud provision`` (registers, broker account, bundle) and
    ``provision --service fleet svc.fleet`` -> ``provision-device --from-cloud`` on the card
    -> ``teddy pair`` on the bear -> ``teddy-cloud fleet pair approve``."""
    import os
    import re
    import subprocess
    import sys
    import tomllib
    from pathlib import Path

    from support.brokers import ShippedBroker
    from support.processes import start_cli, wait_for_log

    repo = Path(__file__).resolve().parent.parent
    out, cloud_dir = tmp_path / "bundles", tmp_path / "cloud"
    broker = ShippedBroker(tmp_path / "broker")
    broker.start()
    cloud = dict(env, TEDDY_STORE__DATA_DIR=str(cloud_dir), TEDDY_MQTT__PORT=str(broker.port),
                 TEDDY_FLEET__SIGNING_KEY_FILE=str(cloud_dir / "fleet-signing.key"),
                 TEDDY_FLEET__BROKER_ADMIN_PASSWORD_FILE=str(broker.admin_password_file))
    cloud_dir.mkdir()
    run_cli("teddy-cloud", "fleet", "keygen", env=cloud)
    run_cli("teddy-cloud", "provision", "bear-op-01", "--out", str(out), env=cloud)
    run_cli("teddy-cloud", "provision", "--service", "fleet", "svc.fleet", "--out", str(out),
            env=cloud)
    try:
        root = tmp_path / "card"
        (root / "etc/teddy/credentials").mkdir(parents=True)
        (root / "var/lib/teddy").mkdir(parents=True)
        (root / "etc/passwd").write_text(f"teddy:x:{os.geteuid()}:{os.getegid()}::/:/bin/false\n")
        installed = subprocess.run(
            [sys.executable, str(repo / "scripts/provision-device"), "--root", str(root),
             "--from-cloud", str(out / "bear-op-01.toml"), "--broker",
             f"127.0.0.1:{broker.port}"], capture_output=True, text=True, timeout=30)
        assert installed.returncode == 0, installed.stderr
        bear = dict(env, TEDDY_STORE__DATA_DIR=str(root / "var/lib/teddy"),
                    TEDDY_MQTT__PASSWORD_FILE=str(root / "etc/teddy/credentials/mqtt-password"))
        log = tmp_path / "pair.log"
        process = start_cli("teddy", "--config", str(root / "etc/teddy/teddy.toml"), "pair",
                            env=bear, log=log)
        try:
            wait_for_log(log, "My pairing code is")
            code = "".join(re.findall(r"\d", log.read_text().split("My pairing code is")[1]
                                      .split(".")[0]))
            fleet = tomllib.loads((out / "svc.fleet.toml").read_text())["mqtt"]
            operator = dict(cloud, TEDDY_MQTT__USERNAME="svc.fleet",
                            TEDDY_MQTT__PASSWORD=fleet["password"],
                            TEDDY_FLEET__CLAIM_COLLECT_S="0.5")
            approved = run_cli("teddy-cloud", "fleet", "pair", "approve", "--code", code,
                               "--parent-email", "sam@example.org", env=operator)
            assert process.wait(20) == 0
        finally:
            if process.poll() is None:
                process.kill()
    finally:
        broker.kill()
    assert "paired bear-op-01 with sam@example.org" in approved.stdout
    assert "paired as bear-op-01" in log.read_text()
