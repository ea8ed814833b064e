"""``down/receipt``: a bear's command results and config reports are sent again until the
cloud has committed them, and stored once however often they were sent (issue 12)."""

from __future__ import annotations

import threading
import time

from support.waiting import wait_until

from config.settings import Settings
from sync.client import MqttLink
from sync.cloud.ingest import Ingestor
from sync.protocol import CommandResult, ConfigReported
from sync.receipts import PendingUplink


def test_results_and_reports_are_resent_until_the_cloud_commits_them(broker, database):
    device = "bear-receipts"
    link = MqttLink(Settings(mqtt={"port": broker.port}).mqtt, client_id=f"teddy-{device}")
    pending = PendingUplink.of(link, device, timeout=0.5)
    assert PendingUplink.of(link, device) is pending  # one per link
    ingestor = None
    try:
        link.connect()
        now = time.time()
        result = CommandResult(id="cmd-unknown-1", device_id=device, name="ping",
                               status="done", finished_at=now)
        report = ConfigReported(device_id=device, version=4, reported_at=now)
        stored = pending.send(result)
        reported = pending.send(report, latest_only=True)
        assert pending.send(result) is stored  # already waiting: not twice
        time.sleep(2.0)  # sent ~4 times; no ingest, so nothing may count as delivered
        assert not stored.is_set() and not reported.is_set()
        assert pending.pending() == 2

        ingestor = Ingestor(Settings(mqtt={"port": broker.port},
                                     cloud={"pg_dsn": database.dsn, "client_id": "ingest-rc"}))
        worker = threading.Thread(target=ingestor.run)
        worker.start()
        assert stored.wait(20) and reported.wait(20)
        assert pending.pending() == 0
        time.sleep(1.0)
        with database.connect() as conn:
            events = conn.execute("SELECT count(*), bool_and(NOT known) FROM command_events"
                                  " WHERE device_id = %s", (device,)).fetchone()
            config = conn.execute("SELECT reported FROM device_config WHERE device_id = %s",
                                  (device,)).fetchone()
        assert events == (1, True)
        assert config[0]["version"] == 4
        assert pending.receipts >= 2
    finally:
        pending.close()
        pending.close()  # idempotent
        link.close()
        if ingestor is not None:
            ingestor.stop()
            worker.join(15)
            ingestor.close()


def test_a_malformed_receipt_is_ignored(broker):
    import paho.mqtt.client as mqtt

    device = "bear-receipts-2"
    link = MqttLink(Settings(mqtt={"port": broker.port}).mqtt, client_id=f"teddy-{device}")
    with PendingUplink(link, device, timeout=5.0) as pending:
        link.connect()
        time.sleep(0.3)
        other = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        other.connect("127.0.0.1", broker.port)
        other.loop_start()
        for payload in (b"[" * 50_000, b'{"v": 1, "kind": "alerts", "ids": []}', b"\xff"):
            other.publish(f"teddy/v1/{device}/down/receipt", payload, qos=1).wait_for_publish(5)
        other.disconnect()
        other.loop_stop()
        time.sleep(0.5)
        assert pending.receipts == 0 and link.callback_errors == 0
        wait_until(lambda: link.connected, 2, "the link to connect")
    link.close()
