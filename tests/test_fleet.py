"""``teddy-cloud fleet ...`` against a running, paired bear over a real Mosquitto."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from support.fleet import RunningBear, bear_settings, cloud_env, pair_bear
from support.processes import run_cli, start_cli, wait_for_log
from support.waiting import wait_until

from agent.credentials import CredentialVault
from agent.runtime import open_bear
from sync.cloud.cloud_link import CloudLink
from sync.cloud.fleet import Fleet
from sync.protocol import Command, CommandResult


@pytest.fixture
def paired(bear, cloud, database):
    with database.connect() as conn:
        pair_bear(bear, cloud, conn)
    return bear


@pytest.fixture
def fleet_env(env, secure_broker, tmp_path):
    return cloud_env(env, secure_broker, tmp_path)


def _result_row(database, command_id: str):
    with database.connect() as conn:
        return conn.execute("SELECT status, reason, result FROM commands WHERE id = %s",
                            (command_id,)).fetchone()


def test_send_wait_runs_a_signed_command_and_records_the_result(paired, fleet_env, database):
    with RunningBear(paired):
        out = run_cli("teddy-cloud", "fleet", "send", paired.device.id, "ping", "--wait",
                      env=fleet_env)
        result = json.loads(out.stdout)
        assert result["status"] == "done" and result["data"]["pong"] is True
        assert _result_row(database, result["id"])[0] == "done"

        refused = run_cli("teddy-cloud", "fleet", "send", paired.device.id, "set-volume",
                          "volume=7", "--wait", env=fleet_env, check=False)
        assert refused.returncode == 1  # the registry's model refuses it before it is signed
        assert "invalid arguments for set-volume: volume: Input should be less than or equal " \
               "to 1 — nothing was sent" in refused.stderr
        with database.connect() as conn:
            assert conn.execute("SELECT count(*) FROM commands WHERE name = 'set-volume'"
                                ).fetchone()[0] == 0

        volume = run_cli("teddy-cloud", "fleet", "send", paired.device.id, "set-volume",
                         "volume=0.3", "--wait", env=fleet_env)
        assert json.loads(volume.stdout)["data"]["volume"] == 0.3
        assert paired.voice.tts_volume == 0.3


def test_unsigned_expired_replayed_and_foreign_commands_are_refused_over_mqtt(paired, cloud,
                                                                               database):
    """Whoever can publish on down/cmd still cannot command the bear: each refusal comes
    back on up/cmd-result with its reason, and nothing runs."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    device = paired.device.id
    now = time.time()
    with database.connect() as conn:
        fleet = Fleet(cloud, conn)
        signed = fleet.issue(device, "delete-data")
    forged = {
        "unsigned": Command(id=uuid.uuid4().hex, device_id=device, name="delete-data",
                            issued_at=now, expires_at=now + 60),
        "expired": Command(id=uuid.uuid4().hex, device_id=device, name="delete-data",
                           issued_at=now - 600, expires_at=now - 300
                           ).signed_with(fleet.signing_key),
        "foreign": Command(id=uuid.uuid4().hex, device_id=device, name="delete-data",
                           issued_at=now, expires_at=now + 60).signed_with(
                               Ed25519PrivateKey.generate()),
    }
    with open_bear(paired) as teddy:
        teddy.respond("hello teddy")
    with RunningBear(paired) as running, CloudLink(cloud) as link:
        results = link.expect(CommandResult, device)
        for command in forged.values():
            link.send(command, device)
        link.send(signed, device)
        link.send(signed, device)  # the replay
        answers = [CommandResult.from_payload(results.get(timeout=10)[1]) for _ in range(5)]
        kept_after = len(running.store.turns())
    by_id: dict[str, list[CommandResult]] = {}
    for answer in answers:
        by_id.setdefault(answer.id, []).append(answer)
    assert by_id[forged["unsigned"].id][0].reason.startswith("unsigned command")
    assert by_id[forged["expired"].id][0].reason.startswith("expired command")
    assert "signature does not verify" in by_id[forged["foreign"].id][0].reason
    first, replay = by_id[signed.id]
    assert first.status == "done" and replay.status == "rejected"
    assert replay.reason.startswith("replayed command")
    assert all(a.status == "rejected" for a in answers if a is not first)
    assert kept_after == 0  # the one genuine delete-data ran, once


def test_every_command_gets_an_answer_even_when_the_bear_cannot_run_it(paired, cloud,
                                                                        database):
    """Over a real Mosquitto: a name the bear has no handler for, arguments its model
    refuses (signed by a cloud that did not check them), and a command the bear cannot
    record (its seen-ids file is blocked) each come back on up/cmd-result with the reason;
    the blocked one runs when it is sent again after the fault is gone."""
    from agent.commands import SEEN_FILE

    device = paired.device.id
    now = time.time()
    with database.connect() as conn:
        fleet = Fleet(cloud, conn)
        blocked = fleet.issue(device, "ping")
        key = fleet.signing_key

    def signed(name: str, args: dict) -> Command:
        return Command(id=uuid.uuid4().hex, device_id=device, name=name, args=args,
                       issued_at=now, expires_at=now + 60).signed_with(key)

    unknown, invalid = signed("self-destruct", {}), signed("set-volume", {"volume": 7})
    seen_file = paired.store.data_dir / SEEN_FILE
    with RunningBear(paired), CloudLink(cloud) as link:
        results = link.expect(CommandResult, device)
        for command in (unknown, invalid):
            link.send(command, device)
        seen_file.unlink(missing_ok=True)
        seen_file.mkdir()
        link.send(blocked, device)
        answers = {a.id: a for a in (CommandResult.from_payload(results.get(timeout=10)[1])
                                     for _ in range(3))}
        seen_file.rmdir()
        link.send(blocked, device)
        again = CommandResult.from_payload(results.get(timeout=10)[1])
    assert answers[unknown.id].status == "rejected"
    assert answers[unknown.id].reason.startswith("unknown command 'self-destruct'")
    assert answers[invalid.id].status == "rejected"
    assert "invalid arguments for set-volume: volume" in answers[invalid.id].reason
    assert answers[blocked.id].status == "failed"
    assert "IsADirectoryError" in answers[blocked.id].reason
    assert again.id == blocked.id and again.status == "done" and again.data["pong"] is True


def test_config_set_is_validated_applied_and_reported(paired, fleet_env, database):
    with RunningBear(paired):
        out = run_cli("teddy-cloud", "fleet", "config", "set", paired.device.id,
                      "voice.tts_rate=140", "pins.paw_pin=5", "--wait", env=fleet_env)
        report = json.loads(out.stdout)
        assert report["applied"] == {"voice.tts_rate": 140}
        assert report["pending_restart"] == {"pins.paw_pin": 5} and report["rejected"] == {}
        assert paired.voice.tts_rate == 140

        bad = run_cli("teddy-cloud", "fleet", "config", "set", paired.device.id,
                      "voice.tts_rate=-1", env=fleet_env, check=False)
        assert bad.returncode == 1
        assert bad.stderr.strip() == ("teddy-cloud: error: invalid config: voice.tts_rate=-1 "
                                      "is invalid: Input should be greater than or equal to 60")
    with database.connect() as conn:
        version, desired, reported = conn.execute(
            "SELECT version, desired, reported FROM device_config WHERE device_id = %s",
            (paired.device.id,)).fetchone()
    assert version == 1 and desired == {"voice.tts_rate": 140, "pins.paw_pin": 5}
    assert reported["version"] == 1


def test_the_retained_desired_config_reaches_a_bear_that_was_offline(paired, cloud, database):
    with database.connect() as conn:
        Fleet(cloud, conn).set_config(paired.device.id, {"dialogue.age_band": "9-12"})
    assert paired.dialogue.age_band != "9-12"
    with RunningBear(paired) as running:
        wait_until(lambda: paired.dialogue.age_band == "9-12", 10, "the new age band",
                   interval=0.05)
        assert running.processor.seen.config_version == 1
    assert paired.dialogue.age_band == "9-12"


def test_delete_data_deletes_in_postgresql_and_on_the_bear(bear, cloud, secure_broker, database,
                                                           data_dir, tmp_path, fleet_env, env):
    """COPPA deletion for a parent: every bear they paired, both sides, confirmed."""
    second = bear_settings(cloud, database, data_dir.parent / "bear2")
    with database.connect() as conn:
        for teddy_settings in (bear, second):
            pair_bear(teddy_settings, cloud, conn, parent="pat@example.org")
    log = tmp_path / "ingest.log"
    ingest = start_cli("teddy-cloud", "--log-level", "INFO", "ingest", log=log,
                       env=cloud_env(env, secure_broker, tmp_path, "svc.ingest"))
    try:
        wait_for_log(log, "ingesting")
        for teddy_settings in (bear, second):
            with open_bear(teddy_settings) as teddy:
                teddy.respond("hello teddy")
            with RunningBear(teddy_settings) as running:
                running.sync.sync_once(timeout=20)
        with database.connect() as conn:
            before = conn.execute("SELECT count(*) FROM turns WHERE device_id = ANY(%s)",
                                  ([bear.device.id, second.device.id],)).fetchone()[0]
        assert before == 4
        with RunningBear(bear) as one, RunningBear(second) as two:
            out = run_cli("teddy-cloud", "fleet", "delete-data", "--parent", "pat@example.org",
                          env=fleet_env)
            assert one.store.turns() == [] and two.store.turns() == []
    finally:
        ingest.terminate()
        ingest.wait(15)
    reports = json.loads(out.stdout)
    assert sorted(r["device_id"] for r in reports) == sorted([bear.device.id, second.device.id])
    for report in reports:
        assert report["confirmed"] is True
        assert report["cloud"]["turns_deleted"] == 2 and report["cloud"]["turns_left"] == 0
        assert report["bear"]["turns_deleted"] == 2 and report["bear"]["conversations_left"] == 0
    with database.connect() as conn:
        assert conn.execute("SELECT count(*) FROM turns WHERE device_id = ANY(%s)",
                            ([bear.device.id, second.device.id],)).fetchone()[0] == 0


def test_devices_show_and_alerts(paired, fleet_env, database):
    with database.connect() as conn:
        conn.execute("INSERT INTO alerts (device_id, kind, severity, message, raised_at)"
                     " VALUES (%s, 'system.disk_low', 'warning', 'disk almost full', now())",
                     (paired.device.id,))
    devices = run_cli("teddy-cloud", "fleet", "devices", env=fleet_env).stdout.splitlines()
    line = next(row for row in devices if row.startswith(paired.device.id))
    assert line.split()[-3:] == ["1", "approved", "-"]  # one open alert; paired; no update
    with database.connect() as conn:
        conn.execute("INSERT INTO device_updates (device_id, version, target_version, state,"
                     " reason) VALUES (%s, '0.1.0', '0.2.0', 'rolled_back', 'store broken')",
                     (paired.device.id,))
    devices = run_cli("teddy-cloud", "fleet", "devices", env=fleet_env).stdout.splitlines()
    line = next(row for row in devices if row.startswith(paired.device.id))
    assert line.split()[-1] == "rolled_back->0.2.0"
    show = json.loads(run_cli("teddy-cloud", "fleet", "show", paired.device.id,
                              env=fleet_env).stdout)
    assert show["consent"]["scopes"] == ["keep", "sync"] and show["open_alerts"] == 1
    alerts = run_cli("teddy-cloud", "fleet", "alerts", "--open", env=fleet_env).stdout
    assert f"{paired.device.id}" in alerts and "system.disk_low: disk almost full" in alerts
    missing = run_cli("teddy-cloud", "fleet", "show", "bear-nobody", env=fleet_env, check=False)
    assert missing.returncode == 1 and "no bear 'bear-nobody' is known" in missing.stderr


def test_unpair_ends_the_pairing_on_both_sides(paired, fleet_env, secure_broker, database):
    """Unpair ends the family's pairing and consent; the bear keeps its identity from
    manufacture (broker account, fleet key), so the fleet still reaches it."""
    with open_bear(paired) as teddy:
        teddy.respond("hello teddy")
    with RunningBear(paired) as running:
        out = run_cli("teddy-cloud", "fleet", "unpair", paired.device.id, env=fleet_env)
        assert running.unpaired.wait(5)
        assert running.store.consent() is None and running.store.turns() == []
    report = json.loads(out.stdout)
    assert report["bear"]["status"] == "done" and len(report["pairing_ended"]) == 36
    assert not CredentialVault(paired.store).exists()
    with secure_broker.auth() as auth:
        assert auth.has_device(paired.device.id)  # identity stays: it is manufacture data
    with database.connect() as conn:
        assert conn.execute("SELECT status FROM pairings WHERE device_id = %s",
                            (paired.device.id,)).fetchone()[0] == "unpaired"
        assert conn.execute("SELECT count(*) FROM consents WHERE device_id = %s AND revoked_at"
                            " IS NULL", (paired.device.id,)).fetchone()[0] == 0
        assert conn.execute("SELECT pairing_id FROM devices WHERE device_id = %s",
                            (paired.device.id,)).fetchone()[0] is None
    with RunningBear(paired):  # still reachable: identity is manufacture data
        pong = run_cli("teddy-cloud", "fleet", "send", paired.device.id, "ping", "--wait",
                       env=fleet_env)
        assert json.loads(pong.stdout)["status"] == "done"


def test_send_without_an_answer_says_so(paired, fleet_env):
    fleet_env = dict(fleet_env, TEDDY_FLEET__WAIT_S="1")
    out = run_cli("teddy-cloud", "fleet", "send", paired.device.id, "ping", "--wait",
                  env=fleet_env, check=False)
    assert out.returncode == 3 and f"no answer from {paired.device.id} within 1 s" in out.stdout


def test_content_pack_and_restart_over_the_command_line(paired, fleet_env, database, tmp_path):
    from agent.content_update import installed_version
    from agent.dialogue.content import CONTENT_DIR

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    jokes = json.loads((CONTENT_DIR / "jokes.json").read_text())
    jokes["jokes"].append({"q": "Why did the bear nap?", "a": "It was un-bear-ably tired."})
    (bundle / "jokes.json").write_text(json.dumps(jokes))
    with RunningBear(paired) as running:
        out = run_cli("teddy-cloud", "fleet", "send", paired.device.id, "update-content-pack",
                      "--bundle", str(bundle), "--bundle-version", "2", "--wait", env=fleet_env)
        result = json.loads(out.stdout)
        assert result["status"] == "done" and result["data"]["files"] == ["jokes.json"]
        restart = run_cli("teddy-cloud", "fleet", "send", paired.device.id, "restart", "--wait",
                          env=fleet_env)
        assert json.loads(restart.stdout)["data"] == {"restarting": True}
        wait_until(lambda: running.restarts, 5, "the restart", interval=0.05)
        assert running.restarts == 1
    assert installed_version(paired.store.data_dir) == 2
    with database.connect() as conn:
        args = conn.execute("SELECT args FROM commands WHERE id = %s",
                            (result["id"],)).fetchone()[0]
    assert args == {"bundle": {"version": 2, "files": ["jokes.json"]}}  # no content kept


def test_wait_covers_the_commands_own_work_on_the_bear():
    """``--wait`` is the round trip plus what the command makes the bear do: a content pack
    is safety-checked line by line before it is installed (minutes on a Pi), a ping is not."""
    from config.settings import Settings
    from sync.protocol import COMMANDS

    fleet = Fleet(Settings(fleet={"wait_s": 15}), conn=None)
    assert fleet.answer_within_s("ping") == 15
    assert fleet.answer_within_s("update-content-pack") == 15 + 300
    assert all(model.WORK_S >= 0 for model in COMMANDS.values())
