"""Who may do what on the broker (issue 12): the shipped Mosquitto config with its
dynamic-security plugin, accounts made by ``teddy-cloud broker-init`` and ``teddy-cloud
provision``, the real ingest and PostgreSQL.

Each refusal is checked twice: the broker's MQTT v5 reason code (at CONNECT, SUBSCRIBE,
PUBLISH), and that the message really never reached anyone. The attacks are the issue's:
a bear joining the ingest's shared subscription, a bear or a service connecting with another
bear's client id, a bear publishing as another bear or to anyone's ``down/``.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import stat
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from support.brokers import ShippedBroker
from support.processes import run_cli
from support.waiting import wait_until

from config.errors import SyncError
from config.settings import load_settings
from sync.client import MqttLink

NOT_AUTHORIZED = 135
BAD_CREDENTIALS = (134, 135)


class Peer:
    """A plain paho v5 client that records what it receives and what the broker answers."""

    def __init__(self, port: int, username: str | None, password: str | None,
                 client_id: str = "", clean_start: bool = True, expiry: int = 0) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        self.received: list[tuple[str, bytes]] = []
        self.subacks: dict[int, list[int]] = {}
        self.pubacks: dict[int, int] = {}
        self.connack: int | None = None
        self.disconnects: list[int] = []
        self._answered = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda c, u, f, reason, p: self.disconnects.append(
            reason.value)
        self.client.on_message = lambda c, u, m: self.received.append((m.topic, m.payload))
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subacks.__setitem__(
            mid, [code.value for code in codes])
        self.client.on_publish = lambda c, u, mid, code, p: self.pubacks.__setitem__(
            mid, code.value)
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = expiry
        self.client.connect("127.0.0.1", port, clean_start=clean_start, properties=properties)
        self.client.loop_start()
        self._answered.wait(10)

    def _on_connect(self, client, userdata, flags, reason, props) -> None:
        self.connack = reason.value
        self._answered.set()

    @property
    def connected(self) -> bool:
        """Whether the broker accepted us and has not disconnected us since."""
        return self.connack == 0 and not self.disconnects

    def subscribe(self, topic: str) -> list[int]:
        """Subscribe with QoS 1 and return the SUBACK reason codes."""
        _, mid = self.client.subscribe(topic, qos=1)
        wait_until(lambda: mid in self.subacks, 10, "the SUBACK")
        return self.subacks[mid]

    def publish(self, topic: str, payload: bytes = b"{}") -> int:
        """Publish with QoS 1 and return the PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1)
        wait_until(lambda: info.mid in self.pubacks, 10, "the PUBACK")
        return self.pubacks[info.mid]

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def _password(fragment: Path) -> str:
    return load_settings(fragment).mqtt.password.get_secret_value()


class Fleet:
    """A shipped broker with two bears and the ingest service, made by the CLI."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        from sync.cloud.provision import provision

        self.broker = ShippedBroker(tmp_path / "broker")
        self.broker.start()
        self.out = tmp_path / "fragments"
        suffix = secrets.token_hex(3)
        self.a, self.b = f"bear-a-{suffix}", f"bear-b-{suffix}"
        self.env = dict(env, TEDDY_MQTT__PORT=str(self.broker.port),
                        TEDDY_FLEET__BROKER_ADMIN_PASSWORD_FILE=str(
                            self.broker.admin_password_file))
        run_cli("teddy-cloud", "fleet", "keygen", env=self.env)  # once per fleet
        with self.broker.auth() as auth:  # what `teddy-cloud provision` runs
            for name, role in ((self.a, "bear"), (self.b, "bear"), ("svc.ingest", "ingest")):
                provision(auth, name, role=role, fragment_dir=self.out)

    def provision(self, *args: str, check: bool = True):
        """``teddy-cloud provision ARGS --out <fragments>``."""
        return run_cli("teddy-cloud", "provision", *args, "--out", str(self.out),
                       env=self.env, check=check)

    def password(self, name: str) -> str:
        """The password in ``name``'s config fragment."""
        return _password(self.out / f"{name}.toml")

    def peer(self, name: str, client_id: str | None = None, **options) -> Peer:
        """A paho client logged in as ``name`` (its own client id unless told otherwise)."""
        own = f"teddy-{name}" if not name.startswith("svc.") else name
        return Peer(self.broker.port, name, self.password(name), client_id or own, **options)


@pytest.fixture
def fleet(tmp_path: Path, env: dict[str, str], database):
    """Bears A and B and svc.ingest provisioned by the CLI on the shipped broker."""
    made = Fleet(tmp_path, env)
    yield made
    made.broker.kill()


def test_provision_writes_private_fragments_and_never_the_password(fleet):
    bear_c = fleet.a.replace("bear-a", "bear-c")
    done = fleet.provision(bear_c)
    assert done.stdout.startswith(f"created bear account {bear_c}")
    fragment = fleet.out / f"{bear_c}.toml"
    assert stat.S_IMODE(fragment.stat().st_mode) == 0o600
    settings = load_settings(fragment)
    assert settings.device.id == bear_c and settings.mqtt.username == bear_c
    assert fleet.password(bear_c) != fleet.password(fleet.a)
    time.sleep(0.2)  # the plugin saves its file after each change
    accounts = fleet.broker.dynsec_file.read_text()
    assert f'"{bear_c}"' in accounts and fleet.password(bear_c) not in accounts
    peer = fleet.peer(bear_c)
    try:
        assert peer.connack == 0
    finally:
        peer.close()


def test_broker_init_hands_the_broker_its_file(fleet, tmp_path):
    """Debian's Mosquitto runs as ``mosquitto``: broker-init gives it its file, 0600; the
    administrator's password is 0600 too. A second init never overwrites the accounts."""
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    run_cli("teddy-cloud", "broker-init", "--dynsec-file", str(fresh / "dynsec.json"),
            "--admin-password-file", str(fresh / "admin-password"), env=fleet.env)
    info = (fresh / "dynsec.json").stat()
    assert pwd.getpwuid(info.st_uid).pw_name == "mosquitto"
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert stat.S_IMODE((fresh / "admin-password").stat().st_mode) == 0o600
    tree = json.loads((fresh / "dynsec.json").read_text())
    assert [client["username"] for client in tree["clients"]] == ["svc.admin"]
    again = run_cli("teddy-cloud", "broker-init", "--dynsec-file", str(fresh / "dynsec.json"),
                    "--admin-password-file", str(fresh / "other"), env=fleet.env, check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    assert not (fresh / "other").exists()


def test_provision_keeps_bears_and_services_apart(fleet):
    again = fleet.provision(fleet.a, check=False)
    assert again.returncode == 1 and "--rotate" in again.stderr
    for args, says in ((["svc.x"], "not a device id"),
                       (["svc.ingest"], "not a device id"),
                       (["--service", "ingest", "ingest"], "not a service account name"),
                       (["--service", "fleet", fleet.a], "not a service account name"),
                       (["Bear_A"], "not a device id")):
        refused = fleet.provision(*args, check=False)
        assert refused.returncode == 1 and says in refused.stderr, (args, refused.stderr)
        assert len(refused.stderr.strip().splitlines()) == 1
    old = fleet.password(fleet.a)
    fleet.provision(fleet.a, "--rotate")
    assert fleet.password(fleet.a) != old
    stale = Peer(fleet.broker.port, fleet.a, old, f"teddy-{fleet.a}")
    fresh = fleet.peer(fleet.a)
    try:
        assert stale.connack in BAD_CREDENTIALS and fresh.connack == 0
    finally:
        stale.close()
        fresh.close()


def test_an_account_that_is_not_teddys_is_never_replaced(fleet):
    """A bear named like an account someone else made (here the administrator's own role
    holder) is refused rather than taking that account over."""
    with fleet.broker.auth() as auth:
        auth._run({"command": "createClient", "username": "admin", "password": "x",  # noqa: SLF001
                   "roles": [{"rolename": "admin"}]})
    refused = fleet.provision("admin", check=False)
    assert refused.returncode == 1 and "not Teddy's to replace" in refused.stderr


def test_anonymous_and_wrong_passwords_are_refused(fleet):
    anonymous = Peer(fleet.broker.port, None, None, "teddy-anonymous")
    wrong = Peer(fleet.broker.port, fleet.a, fleet.password(fleet.b), f"teddy-{fleet.a}")
    try:
        assert anonymous.connack in BAD_CREDENTIALS and wrong.connack in BAD_CREDENTIALS
    finally:
        anonymous.close()
        wrong.close()
    settings = load_settings(fleet.out / f"{fleet.a}.toml",
                             mqtt={"port": fleet.broker.port, "username": None})
    with pytest.raises(SyncError, match="refused the connection"):
        MqttLink(settings.mqtt, f"teddy-{fleet.a}").connect()


def test_a_bear_is_refused_at_subscribe(fleet):
    """``$share/...``, wildcards and other bears' topics: refused in the SUBACK itself."""
    bear_a = fleet.peer(fleet.a)
    try:
        for forbidden in ("$share/ingest/teddy/v1/+/up/turns",
                          "$share/ingest/teddy/v1/+/up/alerts",
                          f"$share/x/teddy/v1/{fleet.a}/down/#",
                          "teddy/v1/+/up/#", "teddy/v1/+/down/#", "#", "teddy/#",
                          f"teddy/v1/{fleet.b}/down/#", f"teddy/v1/{fleet.b}/down/cmd",
                          f"teddy/v1/{fleet.a}/up/#", "$CONTROL/dynamic-security/v1/response"):
            assert bear_a.subscribe(forbidden) == [NOT_AUTHORIZED], forbidden
        assert bear_a.subscribe(f"teddy/v1/{fleet.a}/down/cmd") == [1]
        assert bear_a.subscribe(f"teddy/v1/{fleet.a}/down/#") == [1]
    finally:
        bear_a.close()


def test_a_bear_publishes_only_under_its_own_up(fleet):
    ingest = fleet.peer("svc.ingest")
    bear_a, bear_b = fleet.peer(fleet.a), fleet.peer(fleet.b)
    try:
        assert ingest.subscribe("$share/ingest/teddy/v1/+/up/#") == [1]
        assert bear_b.subscribe(f"teddy/v1/{fleet.b}/down/#") == [1]
        assert bear_a.publish(f"teddy/v1/{fleet.b}/up/turns", b"forged") == NOT_AUTHORIZED
        assert bear_a.publish(f"teddy/v1/{fleet.b}/down/ack", b"forged") == NOT_AUTHORIZED
        assert bear_a.publish(f"teddy/v1/{fleet.a}/down/ack", b"forged") == NOT_AUTHORIZED
        assert bear_a.publish("$CONTROL/dynamic-security/v1", b"forged") == NOT_AUTHORIZED
        assert bear_a.publish(f"teddy/v1/{fleet.a}/up/turns", b"mine") == 0
        assert ingest.publish(f"teddy/v1/{fleet.b}/down/ack", b"for-b") == 0
        wait_until(lambda: (f"teddy/v1/{fleet.a}/up/turns", b"mine") in ingest.received, 20,
                   "ingest to get bear a's own turns")
        wait_until(lambda: (f"teddy/v1/{fleet.b}/down/ack", b"for-b") in bear_b.received, 20,
                   "bear b to get its own ack")
        time.sleep(0.3)
        assert all(payload != b"forged" for _, payload in ingest.received + bear_b.received)
        assert bear_a.received == []
    finally:
        for peer in (ingest, bear_a, bear_b):
            peer.close()


def test_nobody_takes_over_a_bears_client_id(fleet):
    """Bear A, or a service, connecting as ``teddy-<B>`` is refused; B stays connected, and
    its persistent session keeps a ``down/cmd`` queued while it is away."""
    bear_b = fleet.peer(fleet.b, clean_start=False, expiry=3600)
    ingest = fleet.peer("svc.ingest")
    try:
        assert bear_b.subscribe(f"teddy/v1/{fleet.b}/down/cmd") == [1]
        for name in (fleet.a, "svc.ingest"):
            thief = fleet.peer(name, client_id=f"teddy-{fleet.b}")
            assert thief.connack == NOT_AUTHORIZED, name
            thief.close()
        time.sleep(0.3)
        assert bear_b.connected, "bear B was disconnected by a refused thief"
        bear_b.close()
        assert ingest.publish(f"teddy/v1/{fleet.b}/down/cmd", b"queued-cmd") == 0
        wiper = fleet.peer(fleet.a, client_id=f"teddy-{fleet.b}", clean_start=True)
        assert wiper.connack == NOT_AUTHORIZED
        wiper.close()
        back = fleet.peer(fleet.b, clean_start=False, expiry=3600)
        try:
            wait_until(lambda: back.received, 10, "the queued command")
            assert back.received == [(f"teddy/v1/{fleet.b}/down/cmd", b"queued-cmd")]
        finally:
            back.close()
    finally:
        ingest.close()


def test_a_bear_in_the_ingest_share_group_steals_nothing(fleet, database, tmp_path):
    """The issue's attack during real traffic: bear A asks to join ``$share/ingest`` for
    turns and alerts; the ingest still gets every turn and alert of bear B, once."""
    from fleetsim.simulation import append_turns, open_bear_store
    from sync.cloud.ingest import Ingestor
    from sync.device import DeviceSync
    from sync.protocol import AlertMessage

    ingest_settings = load_settings(fleet.out / "svc.ingest.toml",
                                    mqtt={"port": fleet.broker.port},
                                    cloud={"pg_dsn": database.dsn, "metrics_port": 0})
    attacker = fleet.peer(fleet.a)
    assert attacker.subscribe("$share/ingest/teddy/v1/+/up/turns") == [NOT_AUTHORIZED]
    assert attacker.subscribe("$share/ingest/teddy/v1/+/up/alerts") == [NOT_AUTHORIZED]
    bear_settings = load_settings(fleet.out / f"{fleet.b}.toml",
                                  mqtt={"port": fleet.broker.port})
    store = open_bear_store(tmp_path / "bear-b")
    append_turns(store, store.start_conversation(), 40)
    with Ingestor(ingest_settings) as ingestor:
        worker = threading.Thread(target=ingestor.run)
        worker.start()
        try:
            wait_until(lambda: ingestor.metrics.port, 10, "the metrics port")
            host = ingestor.metrics.address
            assert host == "127.0.0.1", "the unauthenticated /metrics must stay on loopback"
            with DeviceSync(bear_settings, store, fleet.b, "test") as link:
                link.connect()
                for number in range(20):
                    alert = AlertMessage(device_id=fleet.b, alert_id=f"wellbeing-{number}",
                                         state="raised", kind="wellbeing.sad", severity="high",
                                         message="sounded sad", raised_at=time.time())
                    link.link.publish(alert, fleet.b).wait(10)
                assert link.sync_once(30).turns_acked == 40
            with database.connect() as conn:
                wait_until(lambda: conn.execute(
                    "SELECT count(*) FROM alerts WHERE device_id = %s", (fleet.b,)
                ).fetchone()[0] == 20, 15, "20 alerts in PostgreSQL")
                turns = conn.execute("SELECT count(*), count(DISTINCT seq) FROM turns "
                                     "WHERE device_id = %s", (fleet.b,)).fetchone()
            assert turns == (40, 40)
            assert ingestor.counters.duplicates == 0, "a batch had to be resent"
        finally:
            store.close()
            ingestor.stop()
            worker.join(15)
    assert attacker.received == []
    attacker.close()


def test_metrics_listen_on_loopback_unless_configured():
    from config.settings import Settings
    from sync.cloud.metrics import IngestMetrics

    assert Settings().cloud.metrics_host == "127.0.0.1"
    metrics = IngestMetrics()
    try:
        metrics.serve(0)
        assert metrics.address == "127.0.0.1"
    finally:
        metrics.close()


def test_the_pipeline_runs_on_provisioned_accounts(fleet, database, tmp_path):
    from fleetsim.simulation import append_turns, open_bear_store
    from sync.cloud.ingest import Ingestor
    from sync.device import DeviceSync

    ingest_settings = load_settings(fleet.out / "svc.ingest.toml",
                                    mqtt={"port": fleet.broker.port},
                                    cloud={"pg_dsn": database.dsn})
    bear_settings = load_settings(fleet.out / f"{fleet.a}.toml", mqtt={"port": fleet.broker.port})
    with Ingestor(ingest_settings) as ingestor:
        worker = threading.Thread(target=ingestor.run)
        worker.start()
        store = open_bear_store(tmp_path / "bear-a")
        append_turns(store, store.start_conversation(), 25)
        try:
            with DeviceSync(bear_settings, store, fleet.a, "test") as link:
                link.connect()
                assert link.sync_once(30).turns_acked == 25
        finally:
            store.close()
            ingestor.stop()
            worker.join(15)
    with database.connect() as conn:
        assert conn.execute("SELECT count(*) FROM turns WHERE device_id = %s",
                            (fleet.a,)).fetchone()[0] == 25
    assert os.path.exists(fleet.broker.dynsec_file)


def test_the_failsafe_alert_goes_out_as_the_bear_and_leaves_its_queue_alone(fleet):
    """``python -m agent.crash_alert`` (systemd's OnFailure= alert) logs in with the bear's own
    bound client id; the ``down/cmd`` queued for the crashed agent still waits for it."""
    import subprocess
    import sys

    ingest = fleet.peer("svc.ingest")
    bear_b = fleet.peer(fleet.b, clean_start=False, expiry=3600)
    try:
        assert ingest.subscribe("$share/ingest/teddy/v1/+/up/alerts") == [1]
        assert bear_b.subscribe(f"teddy/v1/{fleet.b}/down/cmd") == [1]
        bear_b.close()
        assert ingest.publish(f"teddy/v1/{fleet.b}/down/cmd", b"queued-cmd") == 0
        result = subprocess.run(
            [sys.executable, "-m", "agent.crash_alert", "teddy-agent.service"],
            env=dict(fleet.env, TEDDY_DEVICE__ID=fleet.b, TEDDY_MQTT__USERNAME=fleet.b,
                     TEDDY_MQTT__PASSWORD=fleet.password(fleet.b)),
            capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        wait_until(lambda: ingest.received, 10,
                   lambda: f"the alert on up/alerts; crash_alert said {result.stderr}")
        assert ingest.received[0][0] == f"teddy/v1/{fleet.b}/up/alerts"
        back = fleet.peer(fleet.b, clean_start=False, expiry=3600)
        try:
            wait_until(lambda: back.received, 10, "the queued command, still queued")
            assert back.received == [(f"teddy/v1/{fleet.b}/down/cmd", b"queued-cmd")]
        finally:
            back.close()
    finally:
        ingest.close()


def test_a_wrong_administrator_password_is_one_clear_line(fleet, tmp_path):
    wrong = tmp_path / "wrong-admin-password"
    wrong.write_text("not-it\n")
    refused = run_cli("teddy-cloud", "provision", "bear-zz", "--out", str(tmp_path / "x"),
                      env=dict(fleet.env, TEDDY_FLEET__BROKER_ADMIN_PASSWORD_FILE=str(wrong)),
                      check=False)
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1] == (
        "teddy-cloud: error: the broker refused its administrator 'svc.admin' — check "
        "fleet.broker_admin_password_file and fleet.broker_admin_username")
    assert not (tmp_path / "x").exists()
