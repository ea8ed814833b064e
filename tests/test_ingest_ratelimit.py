"""Ingest rate-limits each bear (turns/s and bytes/s): a flooding bear is refused with a
``down/receipt`` it can read (``refused`` + ``retry_after``), its refused batches are not
acked, and a normal bear's turns all arrive promptly meanwhile (issue 12). A bear that is
refused waits and sends again, and every turn still arrives exactly once."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
from support import until
from sync_helpers import assert_exactly_once, bear_settings, cloud_count, filled_store

from config.settings import Settings
from sync.cloud.ingest import Ingestor
from sync.device import DeviceSync
from sync.protocol import Ack, Receipt, TurnRecord, TurnsBatch, down_topic, up_topic


def _ingestor(broker, database, client_id: str, **cloud) -> tuple[Ingestor, threading.Thread]:
    settings = Settings(mqtt={"port": broker.port},
                        cloud={"pg_dsn": database.dsn, "client_id": client_id, **cloud})
    ingestor = Ingestor(settings)
    worker = threading.Thread(target=ingestor.run)
    worker.start()
    assert until(lambda: ingestor.subscribed, 15)
    return ingestor, worker


def _batches(device: str, count: int, size: int) -> list[bytes]:
    now = time.time()
    return [TurnsBatch(device_id=device, batch_id=f"flood-{b}", turns=[
        TurnRecord(seq=b * size + i + 1, conversation_id="c", role="child", text="x" * 200,
                   created_at=now, action="allow") for i in range(size)]).to_payload()
        for b in range(count)]


class Listener:
    """A raw MQTT client reading one bear's ``down/ack`` and ``down/receipt``."""

    def __init__(self, port: int, device: str) -> None:
        self.acks: list[Ack] = []
        self.receipts: list[Receipt] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe([(down_topic(device, "ack"), 1), (down_topic(device, "receipt"), 1)])
        time.sleep(0.3)

    def _on_message(self, client, userdata, message) -> None:
        if message.topic.endswith("/ack"):
            self.acks.append(Ack.from_payload(message.payload))
        else:
            self.receipts.append(Receipt.from_payload(message.payload))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_flooding_bear_is_refused_and_cannot_starve_a_normal_bear(broker, database, tmp_path):
    ingestor, worker = _ingestor(broker, database, "ingest-rate", bear_turns_per_s=100.0,
                                 bear_turns_burst=500.0)
    flood = "bear-rl-flood"
    listener = Listener(broker.port, flood)
    store = filled_store(tmp_path / "bear", 60)
    try:
        payloads = _batches(flood, 300, 100)  # 30,000 turns as fast as the broker takes them
        flooding = threading.Thread(target=lambda: [
            listener.client.publish(up_topic(flood, "turns"), p, qos=1) for p in payloads])
        flooding.start()
        started = time.monotonic()
        with DeviceSync(bear_settings(broker.port), store, "bear-rl-normal", "t") as link:
            link.connect()
            assert link.sync_once(20).turns_acked == 60
        took = time.monotonic() - started
        flooding.join(30)
        assert until(lambda: ingestor.counters.refused + len(listener.acks) >= 300, 30)
        refused = [r for r in listener.receipts if r.refused]
        assert refused and all(r.kind == "turns" and r.retry_after > 0 for r in refused)
        assert "rate" in refused[0].refused
        refused_ids = {i for r in refused for i in r.ids}
        acked_ids = {a.batch_id for a in listener.acks}
        assert not refused_ids & acked_ids, "a refused batch was acked"
        stored = cloud_count(database, flood)
        assert stored == 100 * len(acked_ids) < 30_000
        assert took < 15, f"the normal bear waited {took:.1f} s behind the flood"
        print(f"normal bear synced 60 turns in {took:.2f} s beside the flood; "
              f"{ingestor.counters.refused} flood batches refused, {len(acked_ids)} acked")
        text = ingestor.metrics.render().decode()
        assert 'teddy_ingest_refused_total{kind="turns"}' in text
    finally:
        listener.close()
        store.close()
        ingestor.stop()
        worker.join(15)
        ingestor.close()
    assert_exactly_once(database, "bear-rl-normal", tmp_path / "bear", 60)


def test_a_refused_bear_waits_and_every_turn_arrives_once(broker, database, tmp_path):
    ingestor, worker = _ingestor(broker, database, "ingest-rate-2", bear_turns_per_s=400.0,
                                 bear_turns_burst=400.0)
    store = filled_store(tmp_path / "bear", 2_000)
    try:
        with DeviceSync(bear_settings(broker.port, ack_timeout=5.0), store, "bear-rl-slow",
                        "t") as link:
            link.connect()
            report = link.sync_once(60)
        assert report.turns_acked == 2_000
        assert ingestor.counters.refused >= 1
    finally:
        store.close()
        ingestor.stop()
        worker.join(15)
        ingestor.close()
    assert_exactly_once(database, "bear-rl-slow", tmp_path / "bear", 2_000)
