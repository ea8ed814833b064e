"""Issue 21, item 7: one bear stored 60 MB of retained messages on the broker (it could
publish, retained, to any topic under its ``up/``). Now a bear may publish only to the
protocol's own ``up/<name>`` topics, so what it can retain is one message on each. Measured on
the shipped broker config (dynamic security), the bear provisioned as ``teddy-cloud
provision`` does, the retained bytes read back by the broker's administrator."""

from __future__ import annotations

import secrets
import time

import paho.mqtt.client as mqtt
from support.brokers import ShippedBroker
from support.waiting import wait_until

from sync.cloud.broker_accounts import device_up_topics

PAYLOAD = 200 * 1024
"""Bytes of each retained message the bear tries to store."""
MADE_UP = 40
"""Topics outside the protocol the bear tries to retain on."""


def _client(port: int, username: str, password: str, client_id: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(username, password)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _retained_bytes(port: int, admin_password: str, device: str) -> dict[str, int]:
    """Every retained message under the bear's root, as the administrator reads them."""
    kept: dict[str, int] = {}
    watcher = _client(port, "svc.admin", admin_password, f"svc.admin-{secrets.token_hex(3)}")
    watcher.on_message = lambda c, u, m: kept.__setitem__(m.topic, len(m.payload)) \
        if m.retain else None
    watcher.subscribe(f"teddy/v1/{device}/#", qos=1)
    time.sleep(1.5)
    watcher.disconnect()
    watcher.loop_stop()
    return kept


def test_a_bear_can_retain_only_one_message_per_protocol_topic(tmp_path):
    from sync.cloud.provision import provision

    broker = ShippedBroker(tmp_path / "broker")
    broker.start()
    device = f"bear-retain-{secrets.token_hex(3)}"
    try:
        with broker.auth() as auth:
            provision(auth, device, role="bear", fragment_dir=tmp_path / "fragments")
        from config.settings import load_settings

        password = load_settings(tmp_path / "fragments" / f"{device}.toml"
                                 ).mqtt.password.get_secret_value()
        bear = _client(broker.port, device, password, f"teddy-{device}")
        acks: dict[int, int] = {}
        bear.on_publish = lambda c, u, mid, code, p: acks.__setitem__(mid, code.value)
        names = [f"x{i}" for i in range(MADE_UP)] + device_up_topics()
        mids = [bear.publish(f"teddy/v1/{device}/up/{name}", b"r" * PAYLOAD, qos=1,
                             retain=True).mid for name in names]
        wait_until(lambda: all(mid in acks for mid in mids), 30, "every PUBACK")
        bear.disconnect()
        bear.loop_stop()
        kept = _retained_bytes(broker.port, broker.admin_password_file.read_text().strip(),
                               device)
    finally:
        broker.kill()
    refused = [name for name, mid in zip(names, mids, strict=True) if acks[mid] == 135]
    print(f"retained by one bear: {sum(kept.values()):,} bytes on {len(kept)} topics "
          f"(tried {len(names)} topics x {PAYLOAD:,} bytes)")
    assert refused == [f"x{i}" for i in range(MADE_UP)]
    assert set(kept) <= {f"teddy/v1/{device}/up/{name}" for name in device_up_topics()}
    assert sum(kept.values()) <= len(device_up_topics()) * PAYLOAD
