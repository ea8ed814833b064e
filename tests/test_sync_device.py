"""The bear's sync client on its own: backoff, batching by count and age, presence, the
outbox budget, and nothing handed to paho while the broker is away."""

from __future__ import annotations

import json
import random
import signal
import statistics
import threading
import time

import paho.mqtt.client as mqtt
from support import start_cli
from sync_helpers import (
    IngestProcess,
    assert_exactly_once,
    bear_settings,
    filled_store,
    wait_for_count,
)

from agent.alerts import AlertSink
from agent.store import ConversationStore
from config.settings import StoreSettings
from fleetsim.simulation import append_turns
from sync.backoff import Backoff
from sync.device import BUDGET_ALERT, DeviceSync


def test_backoff_is_exponential_with_full_jitter():
    backoff = Backoff(0.5, 8.0, random.Random(7))
    ceilings = []
    for _ in range(7):
        ceilings.append(backoff.ceiling())
        assert 0.0 <= backoff.next_delay() <= ceilings[-1]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    backoff.reset()
    assert backoff.ceiling() == 0.5
    # a fleet that lost the broker together does not come back together
    fleet = []
    for seed in range(500):
        bear = Backoff(1.0, 60.0, random.Random(seed))
        for _ in range(3):
            delay = bear.next_delay()
        fleet.append(delay)
    assert max(fleet) <= 4.0 and min(fleet) < 0.2 and statistics.pstdev(fleet) > 0.9


class Watcher:
    """A plain subscriber that records each batch's size and arrival, and retained status."""

    def __init__(self, port: int, device: str) -> None:
        self.batches: list[tuple[float, int]] = []
        self.status: list[dict] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"teddy/v1/{device}/up/#", qos=1)
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        body = json.loads(message.payload)
        if message.topic.endswith("/turns"):
            self.batches.append((time.monotonic(), len(body["turns"])))
        elif message.topic.endswith("/status"):
            self.status.append(body)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_run_batches_by_count_and_by_age(broker, database, env, tmp_path):
    ingest = IngestProcess(env, tmp_path).start()
    device = "bear-batching"
    watcher = Watcher(broker.port, device)
    store = filled_store(tmp_path / "bear", 0)
    conversation = store.start_conversation()
    settings = bear_settings(broker.port, batch_size=10, batch_max_age=1.5)
    stop = threading.Event()
    link = DeviceSync(settings, store, device, "t")
    runner = threading.Thread(target=link.run, args=(stop,))
    try:
        runner.start()
        assert link.link.wait_connected(10)
        appended = time.monotonic()
        append_turns(store, conversation, 25)
        link.wake()
        deadline = time.monotonic() + 10
        while sum(n for _, n in watcher.batches) < 25 and time.monotonic() < deadline:
            time.sleep(0.02)
        sizes = [n for _, n in watcher.batches]
        delays = [at - appended for at, _ in watcher.batches]
        assert sizes == [10, 10, 5]
        assert delays[1] < 0.8, "full batches must leave at once"
        assert 1.0 < delays[2] < 3.0, "a partial batch waits for batch_max_age"
        while store.outbox_depth() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        runner.join(10)
        link.close()
        store.close()
        watcher.close()
        ingest.stop()
    assert_exactly_once(database, device, tmp_path / "bear", 25)


def test_status_online_retained_and_last_will_offline(broker, database, env, data_dir,
                                                      tmp_path):
    ingest = IngestProcess(env, tmp_path).start()
    device = "bear-presence"
    filled_store(data_dir, 3).close()
    env = dict(env, TEDDY_DEVICE__ID=device, TEDDY_MQTT__KEEPALIVE="5",
               TEDDY_SYNC__BATCH_MAX_AGE="0.2")
    bear = start_cli("teddy", "sync", env=env, log=tmp_path / "bear.log")  # continuous
    try:
        wait_for_count(database, device, 3)
        with ConversationStore.open(StoreSettings(data_dir=data_dir)) as store:
            deadline = time.monotonic() + 10
            while store.outbox_depth() and time.monotonic() < deadline:
                time.sleep(0.05)  # the ack follows the commit
            assert store.outbox_depth() == 0
        deadline = time.monotonic() + 20
        online = None
        while time.monotonic() < deadline and online is None:
            with database.connect() as conn:
                online = conn.execute("SELECT firmware, boot_time FROM devices WHERE"
                                      " device_id = %s AND online", (device,)).fetchone()
            time.sleep(0.1)
        assert online is not None and online[0] and online[1] is not None
        late = Watcher(broker.port, device)  # subscribes after the fact: retained status
        time.sleep(0.5)
        assert late.status and late.status[-1]["state"] == "online"
        assert late.status[-1]["boot_time"] > 0
        bear.send_signal(signal.SIGKILL)  # no goodbye: the broker publishes the Last Will
        bear.wait(10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (late.status and
                                                   late.status[-1]["state"] == "offline"):
            time.sleep(0.1)
        assert late.status[-1]["state"] == "offline"
        late.close()
        time.sleep(1.0)
        with database.connect() as conn:
            assert conn.execute("SELECT online FROM devices WHERE device_id = %s",
                                (device,)).fetchone()[0] is False
    finally:
        if bear.poll() is None:
            bear.kill()
        ingest.stop()
    assert_exactly_once(database, device, data_dir, 3)


def test_continuous_sync_stops_cleanly_on_sigterm(broker, database, env, data_dir, tmp_path):
    ingest = IngestProcess(env, tmp_path).start()
    device = "bear-continuous"
    store = filled_store(data_dir, 0)
    conversation = store.start_conversation()
    env = dict(env, TEDDY_DEVICE__ID=device, TEDDY_SYNC__BATCH_MAX_AGE="0.2")
    bear = start_cli("teddy", "sync", env=env, log=tmp_path / "bear.log")
    try:
        for _ in range(5):  # another process keeps appending; the loop picks it up
            append_turns(store, conversation, 40)
            time.sleep(0.3)
        deadline = time.monotonic() + 20
        while store.outbox_depth() and time.monotonic() < deadline:
            time.sleep(0.1)
        bear.send_signal(signal.SIGTERM)
        assert bear.wait(15) == 0
    finally:
        store.close()
        if bear.poll() is None:
            bear.kill()
        ingest.stop()
    assert "waiting" in (tmp_path / "bear.log").read_text()
    assert_exactly_once(database, device, data_dir, 200)


def test_outbox_budget_alerts_and_keeps_every_turn(broker, database, env, tmp_path):
    device = "bear-budget"
    store = filled_store(tmp_path / "bear", 200)
    alerts = AlertSink()
    settings = bear_settings(broker.port, outbox_budget_bytes=4096)
    broker.kill()  # the bear is offline: its outbox only grows
    stop = threading.Event()
    link = DeviceSync(settings, store, device, "t", alerts=alerts)
    runner = threading.Thread(target=link.run, args=(stop,))
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while not alerts.recent(BUDGET_ALERT) and time.monotonic() < deadline:
            time.sleep(0.05)
        raised = alerts.recent(BUDGET_ALERT)
        assert raised and not raised[0].cleared and raised[0].details["budget"] == 4096
        assert "\n" not in raised[0].message and link.over_budget
        assert store.outbox_depth() == 200  # nothing dropped to make room
        assert store.outbox_usage()["unclaimed"] == 200  # nothing handed to paho offline
        broker.start()
        ingest = IngestProcess(env, tmp_path).start()
        deadline = time.monotonic() + 30
        while (store.outbox_depth() or link.over_budget) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert alerts.recent(BUDGET_ALERT)[-1].cleared
    finally:
        stop.set()
        runner.join(10)
        link.close()
        store.close()
    ingest.stop()
    assert_exactly_once(database, device, tmp_path / "bear", 200)
