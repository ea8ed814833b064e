"""The cloud ingestor: health and alerts into their tables, Prometheus metrics, graceful
shutdown, and the COPY fast path falling back to savepoints on data PostgreSQL refuses."""

from __future__ import annotations

import threading
import time
import urllib.request

import paho.mqtt.client as mqtt
from support.syncing import (
    BackgroundSync,
    IngestProcess,
    assert_exactly_once,
    bear_settings,
    filled_store,
    wait_for_count,
)
from support.waiting import wait_until

from config.settings import Settings
from sync.cloud.ingest import Ingestor
from sync.protocol import (
    AlertMessage,
    CommandResult,
    ConfigReported,
    HealthSample,
    TurnRecord,
    TurnsBatch,
    up_topic,
)


def _publisher(port: int) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _send(client: mqtt.Client, topic: str, payload: bytes, qos: int = 1) -> None:
    client.publish(topic, payload, qos=qos).wait_for_publish(5)


def _running(settings: Settings) -> tuple[Ingestor, threading.Thread]:
    ingestor = Ingestor(settings)
    worker = threading.Thread(target=ingestor.run)
    worker.start()
    wait_until(lambda: ingestor._link.connected, 10, "ingest to connect")
    time.sleep(0.3)  # subscriptions granted
    return ingestor, worker


def test_health_alerts_metrics_and_a_nul_byte(broker, database):
    settings = Settings(mqtt={"port": broker.port},
                        cloud={"pg_dsn": database.dsn, "metrics_port": 0,
                               "client_id": "ingest-health"})
    ingestor, worker = _running(settings)
    device = "bear-health"
    client = _publisher(broker.port)
    try:
        sample = HealthSample(device_id=device, sampled_at=1_700_000_000.0,
                              metrics={"cpu_percent": 12.5, "temp_c": None},
                              open_alerts=["sync.outbox_budget"])
        _send(client, up_topic(device, "health"), sample.to_payload(), qos=0)
        raised = AlertMessage(device_id=device, alert_id="a-1", state="raised",
                              kind="sync.outbox_budget", severity="warning",
                              message="outbox over budget", details={"bytes": 9000},
                              raised_at=1_700_000_001.0)
        _send(client, up_topic(device, "alerts"), raised.to_payload())
        _send(client, up_topic(device, "alerts"), raised.to_payload())  # a redelivery
        cleared = raised.model_copy(update={"state": "cleared", "cleared_at": 1_700_000_060.0})
        _send(client, up_topic(device, "alerts"), cleared.to_payload())
        good = TurnRecord(seq=1, conversation_id="c", role="child", text="fine",
                          created_at=1_700_000_000.0, action="allow")
        nul = TurnRecord(seq=2, conversation_id="c", role="bear", text="bad\x00byte",
                         created_at=1_700_000_000.0, action="allow")
        _send(client, up_topic("bear-nul", "turns"),
              TurnsBatch(device_id="bear-nul", batch_id="n", turns=[nul]).to_payload())
        _send(client, up_topic(device, "turns"),
              TurnsBatch(device_id=device, batch_id="g", turns=[good]).to_payload())
        with database.connect() as conn:
            def alert_cleared():
                return conn.execute(
                    "SELECT count(*), max(cleared_at) IS NOT NULL FROM alerts"
                    " WHERE device_id = %s", (device,)).fetchone() == (1, True)
            wait_until(alert_cleared, 20, "the alert to clear")
            row = conn.execute("SELECT sample FROM health_samples WHERE device_id = %s",
                               (device,)).fetchone()
            assert row[0]["metrics"] == {"cpu_percent": 12.5, "temp_c": None}
            wait_until(lambda: conn.execute(
                "SELECT count(*) FROM turns WHERE device_id = %s", (device,)).fetchone()[0],
                20, "the good turn in PostgreSQL")
            reason = conn.execute("SELECT reason FROM dead_letters WHERE topic = %s",
                                  (up_topic("bear-nul", "turns"),)).fetchone()[0]
            assert reason.startswith("rejected by PostgreSQL")
        port = ingestor.metrics.port
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        metrics = {line.split(" ")[0]: float(line.split(" ")[1])
                   for line in text.decode().splitlines() if line and not line.startswith("#")}
        assert metrics['teddy_ingest_messages_total{kind="alerts"}'] == 3
        assert metrics["teddy_ingest_turn_rows_total"] == 1
        assert metrics["teddy_ingest_dead_letters_total"] == 1
        assert metrics["teddy_ingest_batch_seconds_count"] >= 1
        assert metrics["teddy_ingest_lag_seconds"] > 0
    finally:
        client.disconnect()
        client.loop_stop()
        ingestor.stop()
        worker.join(15)
        ingestor.close()


def test_sigterm_mid_stream_loses_nothing(broker, database, env, tmp_path):
    ingest = IngestProcess(env, tmp_path).start()
    data_dir, device = tmp_path / "bear", "bear-graceful"
    store = filled_store(data_dir, 8_000)
    sync = BackgroundSync(bear_settings(broker.port), store, device).start()
    try:
        wait_for_count(database, device, 1_500)
        assert ingest.stop() == 0  # graceful: commits what it holds, abandons the rest unacked
        assert "ingest stopped" in ingest.log.read_text()
        ingest.start()
        report = sync.join()
    finally:
        store.close()
        ingest.stop()
    assert report.turns_acked == 8_000
    assert_exactly_once(database, device, data_dir, 8_000)


def test_command_results_and_reported_config_are_recorded(broker, database):
    settings = Settings(mqtt={"port": broker.port},
                        cloud={"pg_dsn": database.dsn, "client_id": "ingest-commands"})
    device = "bear-results"
    with database.connect() as conn:
        conn.execute("INSERT INTO devices (device_id) VALUES (%s) ON CONFLICT DO NOTHING",
                     (device,))
        conn.execute("INSERT INTO commands (id, device_id, name, issued_at, expires_at)"
                     " VALUES ('cmd-1', %s, 'ping', now(), now() + interval '1 minute')",
                     (device,))
    ingestor, worker = _running(settings)
    client = _publisher(broker.port)
    try:
        done = CommandResult(id="cmd-1", device_id=device, name="ping", status="done",
                             data={"pong": True}, finished_at=1_700_000_000.0)
        _send(client, up_topic(device, "cmd-result"), done.to_payload())
        forged = done.model_copy(update={"device_id": "bear-other"})
        _send(client, up_topic(device, "cmd-result"), forged.to_payload())
        report = ConfigReported(device_id=device, version=3, applied={"voice.tts_rate": 140},
                                reported_at=1_700_000_001.0)
        _send(client, up_topic(device, "config"), report.to_payload())
        with database.connect() as conn:
            wait_until(lambda: conn.execute(
                "SELECT status, result FROM commands WHERE id = 'cmd-1'").fetchone()
                == ("done", {"pong": True}), 20, "cmd-1 done with its pong")
            wait_until(lambda: conn.execute(
                "SELECT reported IS NOT NULL FROM device_config WHERE device_id = %s",
                (device,)).fetchone(), 20, "the reported config")
            wait_until(lambda: conn.execute(
                "SELECT count(*) FROM dead_letters WHERE topic = %s AND reason LIKE %s",
                (up_topic(device, "cmd-result"), "%bear-other%")).fetchone()[0] == 1,
                20, "the forged cmd-result dead-lettered")
    finally:
        client.disconnect()
        client.loop_stop()
        ingestor.stop()
        worker.join(15)
        ingestor.close()
