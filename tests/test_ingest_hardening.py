"""No message can stop ingest (issue 12, items 3, 8, 9): poison payloads are dead-lettered
with their reason and the good bear behind them is ingested; dead letters are bounded;
a command's final status is written once; ingest waits for a broker that is not up yet."""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from support import Mosquitto, until, wait_for_log
from sync_helpers import IngestProcess, assert_exactly_once, bear_settings, filled_store
from systemd_support import FakeSystemd

from agent.commands import CommandProcessor
from config.errors import ProtocolError
from config.settings import Settings
from sync.cloud import dead_letters
from sync.cloud.ingest import Ingestor
from sync.device import DeviceSync
from sync.protocol import (
    AlertMessage,
    ClaimRequest,
    Command,
    CommandResult,
    ConfigReported,
    HealthSample,
    Status,
    TurnsBatch,
    up_topic,
)

NOW = time.time()
DEEP = b"[" * 50_000 + b"]" * 50_000
DEEP_OBJECT = b'{"a":' * 40_000 + b"1" + b"}" * 40_000


def _turn(seq: object = 1, created_at: object = None) -> str:
    at = NOW if created_at is None else created_at
    return (f'{{"seq": {seq}, "conversation_id": "c1", "role": "child", "text": "hi", '
            f'"created_at": {at}, "action": "allow", "categories": []}}')


def _batch(device: str, turn: str) -> bytes:
    return f'{{"v": 1, "device_id": "{device}", "batch_id": "b-1", "turns": [{turn}]}}'.encode()


POISON = [  # (device, kind, payload, a fragment of the dead letter's reason)
    ("bear-p-1e12", "turns", _batch("bear-p-1e12", _turn(created_at="1e12")), "created_at"),
    ("bear-p-inf", "turns", _batch("bear-p-inf", _turn(created_at="Infinity")), "Infinity"),
    ("bear-p-nan", "turns", _batch("bear-p-nan", _turn(created_at="NaN")), "NaN"),
    ("bear-p-1e400", "turns", _batch("bear-p-1e400", _turn(created_at="1e400")), "1e400"),
    ("bear-p-y3000", "turns", _batch("bear-p-y3000", _turn(created_at="32503680000.0")),
     "created_at"),
    ("bear-p-future", "turns", _batch("bear-p-future", _turn(created_at=NOW + 3 * 86400)),
     "in the future"),
    ("bear-p-1970", "turns", _batch("bear-p-1970", _turn(created_at="1.0")), "older than"),
    ("bear-p-seq", "turns", _batch("bear-p-seq", _turn(seq=2**60)), "seq"),
    ("bear-p-bigint", "turns", _batch("bear-p-bigint", _turn(seq="9" * 5000)), "JSON"),
    ("bear-p-deep", "turns", DEEP, "nests deeper"),
    ("bear-p-deepobj", "turns", DEEP_OBJECT, "nests deeper"),
    ("bear-p-deepcmd", "cmd-result", DEEP[:20_000] + DEEP[-20_000:], "nests deeper"),
    ("bear-p-health", "health", json.dumps({"v": 1, "device_id": "bear-p-health",
                                            "sampled_at": NOW, "metrics": {}}).encode()
     .replace(b"{}}", b'{"cpu": NaN}}'), "NaN"),
    ("bear-p-alert", "alerts", json.dumps({
        "v": 1, "device_id": "bear-p-alert", "alert_id": "a", "state": "raised", "kind": "k",
        "severity": "info", "message": "m", "raised_at": 1e12}).encode(), "raised_at"),
    ("bear-p-status", "status", b'{"v": 1, "state": "online", "boot_time": 1e300}', "boot_time"),
]


def _publisher(port: int) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _close(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def _letters(database, topics: list[str]) -> dict[str, tuple[str, int, int]]:
    with database.connect() as conn:
        rows = conn.execute("SELECT topic, reason, payload_size, length(payload)"
                            " FROM dead_letters WHERE topic = ANY(%s)", (topics,)).fetchall()
    return {topic: (reason, size, kept) for topic, reason, size, kept in rows}


def test_poison_messages_are_dead_lettered_and_ingest_goes_on(broker, database, env, tmp_path):
    ingest = IngestProcess(env, tmp_path).start()
    client = _publisher(broker.port)
    topics = [up_topic(device, kind) for device, kind, _, _ in POISON]
    try:
        for (_device, _kind, payload, _), topic in zip(POISON, topics, strict=True):
            client.publish(topic, payload, qos=1).wait_for_publish(10)
        assert until(lambda: len(_letters(database, topics)) == len(POISON), 30), \
            sorted(set(topics) - set(_letters(database, topics)))
        letters = _letters(database, topics)
        for (device, _kind, payload, fragment), topic in zip(POISON, topics, strict=True):
            reason, size, kept = letters[topic]
            assert fragment in reason, (device, reason)
            assert "\n" not in reason and len(reason) <= 1000
            assert size == len(payload) and kept <= 4096
        with database.connect() as conn:
            stored = conn.execute("SELECT count(*) FROM turns WHERE device_id LIKE 'bear-p-%'"
                                  ).fetchone()[0]
            late = conn.execute("SELECT count(*) FROM turns WHERE created_at >"
                                " now() + interval '2 days'").fetchone()[0]
        assert stored == 0 and late == 0
        assert ingest.process.poll() is None, "ingest stopped on a poison message"

        store = filled_store(tmp_path / "bear", 50)
        try:
            with DeviceSync(bear_settings(broker.port), store, "bear-p-good", "t") as link:
                link.connect()
                assert link.sync_once(30).turns_acked == 50
        finally:
            store.close()
    finally:
        _close(client)
        assert ingest.stop() == 0
    assert "Traceback" not in ingest.log.read_text()
    assert_exactly_once(database, "bear-p-good", tmp_path / "bear", 50)


@pytest.mark.parametrize("model", [TurnsBatch, Status, HealthSample, AlertMessage,
                                   CommandResult, ConfigReported, Command, ClaimRequest])
@pytest.mark.parametrize("payload", [DEEP, DEEP_OBJECT, b'{"v": 1, "x": [NaN]}',
                                     b'{"v": 1, "x": 1e999}', b"[" + b"7" * 5000 + b"]"])
def test_every_message_refuses_deep_or_non_finite_json_with_one_line(model, payload):
    big = type(model.__name__, (model,), {"MAX_BYTES": 1 << 20})  # past the size check
    with pytest.raises(ProtocolError) as caught:
        big.from_payload(payload)
    assert "\n" not in str(caught.value)


def test_a_deeply_nested_command_is_refused_not_raised(tmp_path):
    from agent.commands import BearControls
    from sync.protocol.commands import Command as _Command  # noqa: F401 - the model in use

    settings = Settings(store={"data_dir": tmp_path / "bear"})
    processor = CommandProcessor(BearControls(settings, store=lambda: None), "bear-1",
                                 b"\x01" * 32)
    for payload in (b'{"id": ' + DEEP[:100_000] + b"}", DEEP[:200_000]):
        result, after = processor.handle(payload)
        assert result.status == "rejected" and after is None
        assert "nests deeper" in result.reason


def _ingestor(broker, database, client_id: str, **cloud) -> tuple[Ingestor, threading.Thread]:
    settings = Settings(mqtt={"port": broker.port},
                        cloud={"pg_dsn": database.dsn, "client_id": client_id, **cloud})
    ingestor = Ingestor(settings)
    worker = threading.Thread(target=ingestor.run)
    worker.start()
    assert until(lambda: ingestor.subscribed, 15)
    return ingestor, worker


def _stop(ingestor: Ingestor, worker: threading.Thread) -> None:
    ingestor.stop()
    worker.join(15)
    ingestor.close()


def test_dead_letters_are_rate_limited_capped_truncated_and_expire(broker, database):
    ingestor, worker = _ingestor(broker, database, "ingest-dead", dead_letters_per_device=40,
                                 dead_letters_per_device_per_s=20.0)
    client = _publisher(broker.port)
    flood, other = "bear-dl-flood", "bear-dl-other"
    try:
        bad = b'{"v": 1, "pad": "' + b"x" * 60_000 + b'"}'  # 60 kB, refused by the model
        started = time.monotonic()
        infos = [client.publish(up_topic(flood, "turns"), bad, qos=1) for _ in range(1000)]
        for info in infos:
            info.wait_for_publish(30)
        client.publish(up_topic(other, "turns"), bad, qos=1).wait_for_publish(10)
        assert until(lambda: ingestor.counters.dead_letters >= 1001, 60)
        took = time.monotonic() - started
        with database.connect() as conn:
            kept, biggest, stored = conn.execute(
                "SELECT count(*), max(length(payload)), sum(length(payload)) FROM dead_letters"
                " WHERE device_id = %s", (flood,)).fetchone()
            assert conn.execute("SELECT count(*) FROM dead_letters WHERE device_id = %s",
                                (other,)).fetchone()[0] == 1  # the flood did not crowd it out
        # The rate (20/s, 100 at once) bounds what is kept, and the cap of 40 bounds it all.
        assert kept <= min(40, 100 + 20 * took) and kept >= 1
        assert biggest <= 4096 and stored <= 40 * 4096
        text = ingestor.metrics.render().decode()
        assert 'teddy_ingest_dead_letters_dropped_total{reason="rate"}' in text \
            or 'teddy_ingest_dead_letters_dropped_total{reason="device_cap"}' in text
        assert ingestor.metrics.dead_letters._value.get() >= 1001
    finally:
        _close(client)
        _stop(ingestor, worker)
    with database.connect() as conn:
        conn.execute("UPDATE dead_letters SET received_at = now() - interval '8 days'"
                     " WHERE device_id = %s", (flood,))
        assert dead_letters.prune(conn, 7) >= 1
        left = conn.execute("SELECT count(*) FROM dead_letters WHERE device_id = ANY(%s)",
                            ([flood, other],)).fetchone()[0]
    assert left == 1


def test_a_replayed_result_never_rewrites_a_commands_final_status(broker, database):
    device = "bear-audit"
    with database.connect() as conn:
        conn.execute("INSERT INTO devices (device_id) VALUES (%s) ON CONFLICT DO NOTHING",
                     (device,))
        conn.execute("INSERT INTO commands (id, device_id, name, issued_at, expires_at)"
                     " VALUES ('cmd-audit-1', %s, 'delete-data', now(),"
                     " now() + interval '1 minute')", (device,))
    ingestor, worker = _ingestor(broker, database, "ingest-audit")
    client = _publisher(broker.port)
    try:
        done = CommandResult(id="cmd-audit-1", device_id=device, name="delete-data",
                             status="done", data={"deleted": 12}, finished_at=NOW)
        replayed = CommandResult(id="cmd-audit-1", device_id=device, name="delete-data",
                                 status="rejected", finished_at=NOW + 5,
                                 reason="replayed command: id cmd-audit-1 already ran")
        unknown = CommandResult(id="cmd-never-sent", device_id=device, name="unpair",
                                status="rejected", reason="unsigned command",
                                finished_at=NOW + 6)
        for result in (done, replayed, replayed, unknown):  # the replay's result twice
            client.publish(up_topic(device, "cmd-result"), result.to_payload(),
                           qos=1).wait_for_publish(10)
        with database.connect() as conn:
            assert until(lambda: conn.execute(
                "SELECT count(*) FROM command_events WHERE device_id = %s",
                (device,)).fetchone()[0] == 2)
            time.sleep(0.5)  # the second copy of the replay would have landed by now
            final = conn.execute("SELECT status, reason, result FROM commands"
                                 " WHERE id = 'cmd-audit-1'").fetchone()
            events = conn.execute(
                "SELECT command_id, known, status, reason FROM command_events"
                " WHERE device_id = %s ORDER BY command_id", (device,)).fetchall()
        assert final == ("done", "", {"deleted": 12})
        assert events == [
            ("cmd-audit-1", True, "rejected", "replayed command: id cmd-audit-1 already ran"),
            ("cmd-never-sent", False, "rejected", "unsigned command"),
        ]
    finally:
        _close(client)
        _stop(ingestor, worker)


def test_ingest_waits_for_a_broker_that_is_not_up_yet(database, env, tmp_path):
    broker = Mosquitto(tmp_path / "late-broker")
    systemd = FakeSystemd(str(tmp_path / "notify.sock"))
    env = dict(env, TEDDY_MQTT__PORT=str(broker.port), TEDDY_CLOUD__PG_DSN=database.dsn,
               NOTIFY_SOCKET=systemd.address)
    ingest = IngestProcess(env, tmp_path, name="ingest-late")
    from support import start_cli

    ingest.starts = 1
    ingest.process = start_cli("teddy-cloud", "--log-level", "INFO", "ingest", env=env,
                               log=ingest.log)
    try:
        time.sleep(3)
        assert ingest.process.poll() is None, "ingest exited without a broker"
        assert systemd.times_of("READY=1") == []
        assert "unreachable" in ingest.log.read_text()
        broker.start()
        wait_for_log(ingest.log, "ingesting", 30)
        systemd.wait_for("READY=1", 5)
        store = filled_store(tmp_path / "bear", 20)
        try:
            with DeviceSync(bear_settings(broker.port), store, "bear-late", "t") as link:
                link.connect()
                assert link.sync_once(30).turns_acked == 20
        finally:
            store.close()
    finally:
        assert ingest.stop() == 0
        broker.kill()
        systemd.close()
    log = ingest.log.read_text()
    assert "WARNING" in log.split("ingesting")[0]
