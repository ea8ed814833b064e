"""Past one broker: edge Mosquittos (the shipped ``config/examples/edge-broker.conf``) bridged
over mutual TLS to a core broker where ``teddy-cloud ingest`` shares the subscription. Bears
on the edges sync exactly once, get their acks and signed commands back through the bridges,
stay confined by the edges' dynamic-security roles (the core's own), a bear provisioned once
connects through any edge, and an edge SIGKILLed mid-run loses nothing."""

from __future__ import annotations

import os
import queue
import secrets
import shutil
import threading
import time

import pytest
from support.brokers import connects, free_port
from support.edges import (
    CLOUD_USER,
    bear_accounts,
    bear_password,
    cloud_env,
    make_edge_fleet,
    run_spread_fleet,
)
from support.syncing import IngestProcess, assert_exactly_once, filled_store
from support.waiting import wait_until

from agent.commands import BearControls, CommandProcessor
from config.settings import Settings
from sync.cloud.fleet import Fleet, generate_signing_key, load_signing_key, public_key_bytes
from sync.commands_link import CommandsLink
from sync.device import DeviceSync

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is missing")

EDGE_BEARS = int(os.environ.get("TEDDY_TEST_EDGE_BEARS", "150"))
"""Simulated bears per edge in the fleet test. The issue's 3 x 1,000 runs with
TEDDY_TEST_EDGE_BEARS=1000 (about 6 minutes on a 2-core machine, so not in every CI run) and
in ``scripts/bench-sync`` (f); 3 x 150 keeps this test near 20 s."""


def bear_on(edge, device_id: str, secret: str, **sync: float) -> Settings:
    """A bear logged in as itself on ``edge``."""
    values = {"ack_timeout": 3.0, "backoff_min": 0.2, "backoff_max": 2.0, "once_timeout": 60}
    values.update(sync)
    return Settings(device={"id": device_id},
                    mqtt={"port": edge.port, "username": device_id,
                          "password": bear_password(secret, device_id)}, sync=values)


def raw_client(port: int, username: str, password: str, client_id: str | None = None):
    """A plain paho client (MQTT 5), connected and looping."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                         client_id=client_id or f"raw-{secrets.token_hex(4)}")
    client.username_pw_set(username, password)
    client.connect("127.0.0.1", port)
    client.loop_start()
    wait_until(client.is_connected, 10, f"{username} to connect to {port}")
    return client


def collector(client, topic: str) -> queue.Queue:
    """Subscribe ``client`` to ``topic``; messages land in the returned queue."""
    inbox: queue.Queue = queue.Queue()
    client.on_message = lambda c, u, m: inbox.put((m.topic, bytes(m.payload)))
    client.subscribe(topic, qos=1)
    time.sleep(0.3)  # SUBACK (and the bridge's own subscription is already in place)
    return inbox


@pytest.fixture
def edges(tmp_path):
    secret = secrets.token_hex(8)
    fleet = make_edge_fleet(tmp_path / "brokers", 3,
                            bear_accounts("edge-bear", 4, secret)).start()
    fleet.secret = secret
    wait_until(lambda: fleet.core.log.read_text().count("New bridge connected") >= 3, 20,
               lambda: f"three bridges: {fleet.core.log.read_text()}")
    assert "u'svc.edge-" in fleet.core.log.read_text()  # each edge's certificate is its account
    yield fleet
    fleet.kill()


@pytest.fixture
def edge_ingest(edges, env, database, tmp_path):
    ingest = IngestProcess(cloud_env(env, edges.core), tmp_path, metrics_port=free_port())
    ingest.start()
    yield ingest
    ingest.stop()


def test_turns_acks_and_signed_commands_travel_through_the_bridges(
        edges, edge_ingest, database, env, tmp_path):
    device = "edge-bear-00001"
    store = filled_store(tmp_path / "bear", 120)
    settings = bear_on(edges.edges[1], device, edges.secret)
    cloud = Settings(mqtt={"port": edges.core.port, "username": CLOUD_USER,
                           "password": cloud_env(env, edges.core)["TEDDY_MQTT__PASSWORD"]},
                     cloud={"pg_dsn": database.dsn}, store={"data_dir": tmp_path / "cloud"},
                     fleet={"signing_key_file": tmp_path / "cloud" / "fleet.key", "wait_s": 15})
    generate_signing_key(tmp_path / "cloud" / "fleet.key", exist_ok=True)  # fleet keygen
    key = public_key_bytes(load_signing_key(cloud))
    try:
        with DeviceSync(settings, store, device, "edge-test") as sync:
            sync.connect()
            report = sync.sync_once(60)
            assert report.turns_acked == 120  # the acks came back through edge-2's bridge
            processor = CommandProcessor(BearControls(settings, store=lambda: store), device, key)
            commands = CommandsLink(sync.link, processor).attach()
            time.sleep(0.3)  # SUBACK of down/cmd
            with database.connect() as conn:
                sent = Fleet(cloud, conn).send(device, "ping", wait=True)
            commands.close()
    finally:
        store.close()
    assert sent.result is not None, "the ping's result never came back through the bridge"
    assert sent.result.ok, sent.result
    assert_exactly_once(database, device, tmp_path / "bear", 120)
    with database.connect() as conn:
        status = conn.execute("SELECT status FROM commands WHERE id = %s",
                              (sent.command.id,)).fetchone()
    assert status is not None and status[0] != "sent", status


def refusals(client) -> queue.Queue:
    """Reason codes of ``client``'s PUBACKs and SUBACKs: ("puback"|"suback", code)."""
    seen: queue.Queue = queue.Queue()
    client.on_publish = lambda c, u, mid, code, props: seen.put(("puback", code.value))
    client.on_subscribe = lambda c, u, mid, codes, props: seen.put(
        ("suback", codes[0].value))
    return seen


def test_the_edges_dynsec_roles_confine_each_bear(edges, env):
    """A bear on an edge writes only its own up/ and reads only its own down/, by the core's
    own roles: another bear's topics are refused in the PUBACK and the SUBACK (reason 135),
    nothing forged reaches the core, and its own up/ does cross the bridge."""
    mallory, victim = "edge-bear-00002", "edge-bear-00003"
    admin = edges.core.admin_password_file.read_text().strip()
    watcher = raw_client(edges.core.port, "svc.admin", admin)
    seen_on_core = collector(watcher, "teddy/v1/+/up/#")
    attacker = raw_client(edges.edges[0].port, mallory, bear_password(edges.secret, mallory),
                          client_id=f"teddy-{mallory}")
    answers = refusals(attacker)
    try:
        attacker.subscribe(f"teddy/v1/{victim}/down/#", qos=1)
        assert answers.get(timeout=10) == ("suback", 135)
        attacker.subscribe("teddy/v1/+/down/#", qos=1)
        assert answers.get(timeout=10) == ("suback", 135)
        attacker.publish(f"teddy/v1/{victim}/up/turns", b"forged", qos=1)
        assert answers.get(timeout=10) == ("puback", 135)
        attacker.publish(f"teddy/v1/{mallory}/up/health", b"mine", qos=1)
        assert answers.get(timeout=10) == ("puback", 0)
        topic, payload = seen_on_core.get(timeout=10)  # its own topic does cross the bridge
        assert (topic, payload) == (f"teddy/v1/{mallory}/up/health", b"mine")
        time.sleep(0.5)
        assert seen_on_core.empty(), "a forged up/ message reached the core"
    finally:
        for client in (attacker, watcher):
            client.disconnect()
            client.loop_stop()


def test_a_bear_provisioned_once_connects_through_every_edge_only_as_itself(
        edges, database, env, tmp_path):
    """``teddy-cloud provision`` with ``fleet.edge_brokers`` makes the bear's account on the
    core and on every edge, live: its bundle's login works on each edge, bound to its own
    client id; ``--rotate`` re-keys it everywhere; a bear not provisioned gets in nowhere."""
    import tomllib

    from support.processes import run_cli

    cloud = edges.admin_env(env)
    run_cli("teddy-cloud", "fleet", "keygen", env=cloud)
    run_cli("teddy-cloud", "provision", "bear-edge-new", "--out", str(tmp_path), env=cloud)
    login = tomllib.loads((tmp_path / "bear-edge-new.toml").read_text())["mqtt"]
    for edge in edges.edges:
        client = raw_client(edge.port, login["username"], login["password"],
                            client_id="teddy-bear-edge-new")
        client.disconnect()
        client.loop_stop()
        assert not connects(edge.port, login["username"], login["password"], "someone-else")
    run_cli("teddy-cloud", "provision", "bear-edge-new", "--rotate", "--out", str(tmp_path),
            env=cloud)
    for edge in edges.edges:
        assert not connects(edge.port, login["username"], login["password"],
                            "teddy-bear-edge-new"), "the old password still works on an edge"
    assert not connects(edges.edges[0].port, "bear-never-made", "x", "teddy-bear-never-made")


def test_provisioning_with_an_edge_down_names_it_and_leaves_the_core_unchanged(edges, env):
    """The edges are set before the core: with one down, provisioning fails naming that edge
    and the core has no account yet, so the same command re-run later completes it."""
    from sync.cloud.broker_accounts import broker_auth
    from sync.cloud.provision import provision

    edges.edges[2].kill()
    with pytest.raises(Exception, match=f"edge broker {edges.edges[2].url}"):
        with broker_auth(edges.admin_settings()) as auth:
            provision(auth, "bear-edge-late")
    with edges.core.auth_of_core() as core:
        assert not core.has_device("bear-edge-late")
    edges.edges[2].start()
    with broker_auth(edges.admin_settings()) as auth:
        assert provision(auth, "bear-edge-late").created


def test_three_edges_one_killed_mid_run_every_turn_exactly_once(database, env, tmp_path):
    """3 edges x EDGE_BEARS simulated bears (own accounts) through one core and one ingest;
    edge-2 is SIGKILLed while turns flow and restarted: every turn lands exactly once and every
    bear's outbox ends fully acked."""
    secret, turns = secrets.token_hex(8), 2
    bears = 3 * EDGE_BEARS
    fleet = make_edge_fleet(tmp_path / "brokers", 3, bear_accounts("fan", bears, secret))
    fleet.start()
    ingest = IngestProcess(cloud_env(env, fleet.core), tmp_path, metrics_port=free_port())
    sync = {"ack_timeout": 5.0, "backoff_min": 0.5, "backoff_max": 5.0, "batch_max_age": 0.05}
    brokers = [Settings(mqtt={"port": edge.port, "keepalive": 30}, sync=sync)
               for edge in fleet.edges]
    outcome: dict = {}
    try:
        ingest.start()
        runner = threading.Thread(target=lambda: outcome.update(result=run_spread_fleet(
            brokers, tmp_path / "bears", bears, turns, timeout=300, prefix="fan",
            secret=secret)), daemon=True)
        started = time.monotonic()
        runner.start()
        with database.connect() as conn:
            def landed() -> int:
                return conn.execute("SELECT count(*) FROM turns WHERE device_id LIKE 'fan-%'"
                                    ).fetchone()[0]
            wait_until(lambda: landed() >= bears * turns // 5, 900,
                       lambda: f"a fifth of the turns before the kill (only {landed()} arrived)")
            fleet.edges[1].kill()
            killed_at = landed()
            time.sleep(1.0)
            fleet.edges[1].start()
        runner.join(1200)
        elapsed = time.monotonic() - started
        result = outcome["result"]
    finally:
        ingest.stop()
        fleet.kill()
    report = result.report
    print(f"{bears} bears over 3 edges: {report.max_connected} connected at once; edge-2 "
          f"killed at {killed_at} of {report.turns_appended} turns; all acked in {elapsed:.0f} s")
    assert report.devices == bears
    assert report.max_connected == bears
    assert report.turns_appended == bears * turns
    assert report.left_unacked == 0 and report.turns_acked == bears * turns
    assert result.bears_with_unsynced_outbox == 0
    with database.connect() as conn:
        rows, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (device_id, seq)) FROM turns"
            " WHERE device_id LIKE 'fan-%'").fetchone()
    assert (rows, distinct) == (bears * turns, bears * turns)


def test_a_bear_on_an_edge_syncs_after_its_edge_restarts(edges, edge_ingest, database,
                                                         tmp_path):
    """Killed mid-sync: the bear reconnects to the restarted edge and its outbox empties."""
    device = "edge-bear-00000"
    store = filled_store(tmp_path / "bear", 3000)
    settings = bear_on(edges.edges[2], device, edges.secret, batch_size=50, max_inflight=2)
    try:
        with DeviceSync(settings, store, device, "edge-test") as sync:
            sync.connect()
            syncing = threading.Thread(target=lambda: sync.sync_once(90), daemon=True)
            syncing.start()
            with database.connect() as conn:
                wait_until(lambda: conn.execute(
                    "SELECT count(*) FROM turns WHERE device_id = %s", (device,)
                ).fetchone()[0] > 300, 30, "300 turns of the bear")
            edges.edges[2].kill()
            time.sleep(0.5)
            edges.edges[2].start()
            syncing.join(100)
    finally:
        store.close()
    assert_exactly_once(database, device, tmp_path / "bear", 3000)


class ConnackMidCheck:
    """``MqttLink._attempt_at`` as the supervisor sees it when paho's network thread handles
    the CONNACK during the stall check: a time at the first read, cleared at the next."""

    def __init__(self) -> None:
        self.reads = 0

    def __get__(self, link, owner=None):
        self.reads += 1
        return time.monotonic() - 60 if self.reads == 1 else None

    def __set__(self, link, value) -> None:
        pass


def test_a_connack_during_the_stall_check_does_not_kill_the_reconnect_supervisor():
    """Found by the edge-kill test under load: the supervisor read ``_attempt_at`` twice, and a
    CONNACK in between raised TypeError in its thread, so that bear never reconnected again."""
    from sync.client import MqttLink

    class Racing(MqttLink):
        _attempt_at = ConnackMidCheck()

    with Racing(Settings().mqtt, client_id="race") as link:
        assert link._attempt_stalled() is True  # decided on the one time it read


class EndsDuringLoopStop(threading.Thread):
    """paho's network thread ending by itself while ``loop_stop()`` runs: paho clears
    ``client._thread`` as its thread ends, here right after loop_stop's None check."""

    def __init__(self, client) -> None:
        super().__init__(target=lambda: None)
        self.client = client

    def __ne__(self, other):  # loop_stop's ``current_thread() != self._thread``
        self.client._thread = None
        return True

    __hash__ = threading.Thread.__hash__


def test_the_network_thread_ending_during_loop_stop_does_not_kill_the_supervisor():
    """Found by bench-sync (f) under load: paho's loop_stop() raised AttributeError in the
    reconnect supervisor, which died, and that bear stayed offline for good."""
    from sync.client import MqttLink

    link = MqttLink(Settings().mqtt, client_id="race")
    link._client._thread = EndsDuringLoopStop(link._client)
    link._stop_network_thread()  # raised AttributeError inside paho before the fix
    assert link._client._thread is None
    link.close()
