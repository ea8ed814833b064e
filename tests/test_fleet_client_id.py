"""Issue 21, item 7: ``svc.fleet`` could take a bear's client id (and with it its session).

Closed by a pool of fleet accounts, each bound to its own name as client id
(:mod:`sync.cloud.fleet_slots`): the finding is re-run on the shipped broker config, with
every account of the pool, and concurrent fleet links still work (each takes its own slot)."""

from __future__ import annotations

import queue
import secrets
import time

import paho.mqtt.client as mqtt
from support.brokers import ShippedBroker

from config.settings import load_settings


def _connect(port: int, username: str, password: str, client_id: str):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                         client_id=client_id)
    client.username_pw_set(username, password)
    answered: queue.Queue = queue.Queue()
    dropped: list[int] = []
    client.on_connect = lambda c, u, flags, code, props: answered.put(code.value)
    client.on_disconnect = lambda c, u, flags, code, props: dropped.append(code.value)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client, answered.get(timeout=10), dropped


def test_the_fleet_account_cannot_take_a_bears_client_id(tmp_path):
    from sync.cloud.provision import provision

    broker = ShippedBroker(tmp_path / "broker")
    broker.start()
    device = f"bear-fleet-cid-{secrets.token_hex(3)}"
    out = tmp_path / "fragments"
    try:
        with broker.auth() as auth:
            provision(auth, device, role="bear", fragment_dir=out)
            provision(auth, "svc.fleet", role="fleet", fragment_dir=out)

        def password(name: str) -> str:
            return load_settings(out / f"{name}.toml").mqtt.password.get_secret_value()

        bear, code, bear_dropped = _connect(broker.port, device, password(device),
                                            f"teddy-{device}")
        assert code == 0
        thief, thief_code, _ = _connect(broker.port, "svc.fleet", password("svc.fleet"),
                                        f"teddy-{device}")
        time.sleep(0.5)
        dropped_before_we_left = list(bear_dropped)  # our own disconnect below adds one
        for client in (thief, bear):
            client.disconnect()
            client.loop_stop()
    finally:
        broker.kill()
    assert thief_code != 0, "svc.fleet took the bear's client id"
    assert not dropped_before_we_left, "the bear lost its session to svc.fleet"


def test_every_account_of_the_fleet_pool_is_bound_and_links_run_side_by_side(tmp_path):
    """Each pool account connects only with its own name; a foreign or a bear's client id is
    refused for all of them; three CloudLinks open at once take three different slots and
    the first stays connected while the others come and go."""
    from support.brokers import connects

    from sync.cloud import fleet_slots
    from sync.cloud.cloud_link import CloudLink
    from sync.cloud.provision import provision

    broker = ShippedBroker(tmp_path / "broker")
    broker.start()
    out = tmp_path / "fragments"
    device = f"bear-fleet-pool-{secrets.token_hex(3)}"
    try:
        with broker.auth() as auth:
            provision(auth, "svc.fleet", role="fleet", fragment_dir=out)
        settings = load_settings(out / "svc.fleet.toml", mqtt={"port": broker.port})
        password = settings.mqtt.password.get_secret_value()
        names = fleet_slots.pool_names("svc.fleet")
        assert len(names) == fleet_slots.POOL_SIZE
        for name in names:
            assert connects(broker.port, name, password, name), name
            assert not connects(broker.port, name, password, f"teddy-{device}"), name
            assert not connects(broker.port, name, password, "fleet-anything"), name
        with CloudLink(settings) as first:
            with CloudLink(settings) as second, CloudLink(settings) as third:
                taken = {link._slot.username for link in (first, second, third)}
                assert len(taken) == 3 and taken <= set(names)
            time.sleep(0.5)
            assert first._link.connected, "a second fleet link pushed the first off"
            assert first._link.connects == 1
    finally:
        broker.kill()
