"""Per-device security against a real Mosquitto: provisioned accounts, the ACL, no anonymous.

``teddy-cloud provision`` makes every account; the broker runs with the password file and
ACL it wrote (plus the example's pattern lines). Each refusal is checked twice: the broker's
MQTT v5 reason code, and that the message really never reached anyone.
"""

from __future__ import annotations

import stat
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from support import Mosquitto, run_cli

from config.errors import SyncError
from config.settings import load_settings
from sync.client import MqttLink

ROOT = Path(__file__).resolve().parents[1]
NOT_AUTHORIZED = 135


class Peer:
    """A plain paho v5 client that records what it receives and what the broker answers."""

    def __init__(self, port: int, username: str | None, password: str | None) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        self.received: list[tuple[str, bytes]] = []
        self.subacks: dict[int, list[int]] = {}
        self.pubacks: dict[int, int] = {}
        self.connack: int | None = None
        self._answered = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.received.append((m.topic, m.payload))
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subacks.__setitem__(
            mid, [code.value for code in codes])
        self.client.on_publish = lambda c, u, mid, code, p: self.pubacks.__setitem__(
            mid, code.value)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._answered.wait(10)

    def _on_connect(self, client, userdata, flags, reason, props) -> None:
        self.connack = reason.value
        self._answered.set()

    def subscribe(self, topic: str) -> list[int]:
        """Subscribe with QoS 1 and return the SUBACK reason codes."""
        _, mid = self.client.subscribe(topic, qos=1)
        _wait_for(lambda: mid in self.subacks)
        return self.subacks[mid]

    def publish(self, topic: str, payload: bytes = b"{}") -> int:
        """Publish with QoS 1 and return the PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1)
        _wait_for(lambda: info.mid in self.pubacks)
        return self.pubacks[info.mid]

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def _wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the broker did not answer"
        time.sleep(0.02)


def _password(fragment: Path) -> str:
    return load_settings(fragment).mqtt.password.get_secret_value()


@pytest.fixture
def secured(tmp_path: Path, env: dict[str, str], database):
    """Accounts bear-a, bear-b and ingest provisioned by the CLI; a broker enforcing them."""
    passwd, acl, out = tmp_path / "passwd", tmp_path / "acl", tmp_path / "fragments"
    acl.write_text((ROOT / "config/examples/acl").read_text())
    for args in (["bear-a"], ["bear-b"], ["--ingest", "ingest"]):
        run_cli("teddy-cloud", "provision", *args, "--password-file", str(passwd),
                "--acl-file", str(acl), "--out", str(out), env=env)
    broker = Mosquitto(tmp_path / "secure-broker", anonymous=False,
                       extra_config=f"user root\npassword_file {passwd}\nacl_file {acl}\n")
    broker.start()
    yield broker, out, passwd
    broker.kill()


def test_provision_hashes_passwords_and_writes_private_fragments(secured):
    _broker, out, passwd = secured
    fragment = out / "bear-a.toml"
    assert stat.S_IMODE(fragment.stat().st_mode) == 0o600
    settings = load_settings(fragment)
    assert settings.device.id == "bear-a" and settings.mqtt.username == "bear-a"
    hashes = passwd.read_text()
    assert "bear-a:$7$" in hashes and _password(fragment) not in hashes
    assert _password(fragment) != _password(out / "bear-b.toml")


def test_provision_refuses_duplicates_and_clashing_roles(secured, tmp_path, env):
    _broker, out, passwd = secured
    acl = tmp_path / "acl"
    common = ["--password-file", str(passwd), "--acl-file", str(acl), "--out", str(out)]
    again = run_cli("teddy-cloud", "provision", "bear-a", *common, env=env, check=False)
    assert again.returncode == 1 and "--rotate" in again.stderr
    clash = run_cli("teddy-cloud", "provision", "ingest", *common, env=env, check=False)
    assert clash.returncode == 1 and "already a ingest account" in clash.stderr
    old = _password(out / "bear-a.toml")
    run_cli("teddy-cloud", "provision", "bear-a", "--rotate", *common, env=env)
    assert _password(out / "bear-a.toml") != old
    assert acl.read_text().count("user bear-a\n") == 1


def test_anonymous_and_wrong_passwords_are_refused(secured):
    broker, out, _passwd = secured
    anonymous = Peer(broker.port, None, None)
    wrong = Peer(broker.port, "bear-a", _password(out / "bear-b.toml"))
    assert anonymous.connack == NOT_AUTHORIZED and wrong.connack == NOT_AUTHORIZED
    link_settings = load_settings(out / "bear-a.toml", mqtt={"port": broker.port,
                                                             "username": None})
    with pytest.raises(SyncError, match="refused the connection"):
        MqttLink(link_settings.mqtt, "anonymous-link").connect()


def test_a_bear_touches_only_its_own_root(secured):
    broker, out, _passwd = secured
    ingest = Peer(broker.port, "ingest", _password(out / "ingest.toml"))
    bear_a = Peer(broker.port, "bear-a", _password(out / "bear-a.toml"))
    bear_b = Peer(broker.port, "bear-b", _password(out / "bear-b.toml"))
    try:
        assert ingest.subscribe("$share/ingest/teddy/v1/+/up/#") == [1]
        assert bear_b.subscribe("teddy/v1/bear-b/down/#") == [1]
        # Subscriptions outside its own down/: Mosquitto 2.0 may grant the SUBACK, but its
        # read ACL is applied to every delivery; either way nothing may ever arrive.
        for forbidden in ("teddy/v1/bear-b/down/#", "teddy/v1/+/up/#",
                          "$share/ingest/teddy/v1/+/up/turns", "teddy/v1/bear-a/up/#", "#"):
            assert bear_a.subscribe(forbidden)[0] in (1, NOT_AUTHORIZED)
        # refused publications: another bear's up/, anyone's down/
        assert bear_a.publish("teddy/v1/bear-b/up/turns", b"forged") == NOT_AUTHORIZED
        assert bear_a.publish("teddy/v1/bear-b/down/ack", b"forged") == NOT_AUTHORIZED
        assert bear_a.publish("teddy/v1/bear-a/down/ack", b"forged") == NOT_AUTHORIZED
        # what is allowed still flows
        assert bear_a.publish("teddy/v1/bear-a/up/turns", b"mine") == 0
        assert bear_b.publish("teddy/v1/bear-b/up/turns", b"b-up") == 0
        assert ingest.publish("teddy/v1/bear-b/down/ack", b"for-b") == 0
        _wait_for(lambda: ("teddy/v1/bear-a/up/turns", b"mine") in ingest.received)
        _wait_for(lambda: ("teddy/v1/bear-b/down/ack", b"for-b") in bear_b.received)
        time.sleep(0.5)
        assert all(payload != b"forged" for _, payload in ingest.received + bear_b.received)
        _wait_for(lambda: ("teddy/v1/bear-b/up/turns", b"b-up") in ingest.received)
        assert bear_a.received == [], "bear A read another bear's or the ingestor's topics"
    finally:
        for peer in (ingest, bear_a, bear_b):
            peer.close()


def test_the_pipeline_runs_on_provisioned_accounts(secured, database, tmp_path):
    from sync.cloud.ingest import Ingestor
    from sync.cloud.simulate import append_turns, open_bear_store
    from sync.device import DeviceSync

    broker, out, _passwd = secured
    cloud = {"pg_dsn": database.dsn, "client_id": "ingest-acl"}
    ingest_settings = load_settings(out / "ingest.toml", mqtt={"port": broker.port}, cloud=cloud)
    bear_settings = load_settings(out / "bear-a.toml", mqtt={"port": broker.port})
    with Ingestor(ingest_settings) as ingestor:
        worker = threading.Thread(target=ingestor.run)
        worker.start()
        store = open_bear_store(tmp_path / "bear-a")
        append_turns(store, store.start_conversation(), 25)
        try:
            with DeviceSync(bear_settings, store, "bear-a", "test") as link:
                link.connect()
                assert link.sync_once(30).turns_acked == 25
        finally:
            store.close()
            ingestor.stop()
            worker.join(15)
    with database.connect() as conn:
        assert conn.execute("SELECT count(*) FROM turns WHERE device_id = 'bear-a'"
                            ).fetchone()[0] == 25
