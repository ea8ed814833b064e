"""The MQTT seam: paho lives only in ``sync/client.py``, and a message class's declared
route (topic, QoS, retain flag) is exactly what goes on the wire."""

from __future__ import annotations

import ast
import queue
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.subscribeoptions import SubscribeOptions

from config.settings import Settings
from sync.client import MqttLink
from sync.cloud.messages import KINDS
from sync.protocol import (
    Ack,
    AlertMessage,
    ClaimAnswer,
    ClaimRequest,
    Command,
    CommandResult,
    ConfigDesired,
    ConfigReported,
    HealthSample,
    Message,
    Receipt,
    Status,
    TurnRecord,
    TurnsBatch,
    routed_messages,
)

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "sync", "config", "hardware")
"""Where production code lives."""
THE_ADAPTER = REPO / "sync" / "client.py"
DEVICE = "bear-seam"
NOW = 1_700_000_000.0


def _paho_imports(path: Path) -> list[int]:
    """Line numbers of every ``import paho...`` / ``from paho... import`` in ``path``."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        if any(name == "paho" or name.startswith("paho.") for name in names):
            lines.append(node.lineno)
    return lines


def test_paho_is_imported_only_by_the_one_adapter():
    offenders = {
        f"{path.relative_to(REPO)}:{line}"
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        if path != THE_ADAPTER
        for line in _paho_imports(path)
    }
    assert offenders == set(), ("paho is imported outside sync/client.py — use MqttLink's "
                                f"publish/subscribe instead: {sorted(offenders)}")
    assert _paho_imports(THE_ADAPTER), "the scan must see the adapter's own paho import"


def _samples() -> list[Message]:
    """One valid message of every class that has a route."""
    turn = TurnRecord(seq=1, conversation_id="c1", role="child", text="hello",
                      created_at=NOW, action="allow")
    return [
        ClaimRequest(claim_id="c" + "a" * 24, ephemeral_key="A" * 43 + "=", sealed="B" * 40),
        ClaimAnswer(device_id=DEVICE, claim_id="c" + "a" * 24, nonce="0" * 32,
                    status="rejected", reason="test", expires_at=NOW),
        Command(id="cmd-seam-1", device_id=DEVICE, name="ping", issued_at=NOW,
                expires_at=NOW + 60),
        CommandResult(id="cmd-seam-1", device_id=DEVICE, status="done", finished_at=NOW),
        ConfigDesired(device_id=DEVICE, version=1, issued_at=NOW),
        ConfigReported(device_id=DEVICE, version=1, reported_at=NOW),
        HealthSample(device_id=DEVICE, sampled_at=NOW, metrics={"cpu_percent": 3.0}),
        AlertMessage(device_id=DEVICE, alert_id="a1", state="raised", kind="test.seam",
                     severity="info", message="a test", raised_at=NOW),
        Receipt(kind="alerts", ids=["a1"]),
        Status(state="online", firmware="test"),
        TurnsBatch(device_id=DEVICE, batch_id="b1", turns=[turn]),
        Ack(batch_id="b1", ranges=[(1, 1)]),
    ]


CONTRACT = {
    ClaimRequest: ("up", "claim", 1, True),
    ClaimAnswer: ("down", "claim", 1, True),
    Command: ("down", "cmd", 1, False),
    CommandResult: ("up", "cmd-result", 1, False),
    ConfigDesired: ("down", "config", 1, True),
    ConfigReported: ("up", "config", 1, True),
    HealthSample: ("up", "health", 1, False),
    AlertMessage: ("up", "alerts", 1, False),
    Receipt: ("down", "receipt", 1, False),
    Status: ("up", "status", 1, True),
    TurnsBatch: ("up", "turns", 1, False),
    Ack: ("down", "ack", 1, False),
}
"""The wire contract of docs/protocol.md: direction, topic name, QoS, retained. A change
here is a protocol change (both ends, the broker's ACL, the docs)."""


def test_the_declared_routes_are_the_documented_contract():
    declared = {cls: (cls.route().direction, cls.route().name, cls.route().qos,
                      cls.route().retain) for cls in routed_messages()}
    assert declared == CONTRACT
    table = (REPO / "docs" / "protocol.md").read_text().partition("## Topics")[2]
    for cls, (direction, name, qos, retain) in CONTRACT.items():
        delivery = f"QoS {qos}" + (", retained" if retain else "")
        row = (f"| `teddy/v1/<device_id>/{direction}/{name}` | "
               f"{'bear -> cloud' if direction == 'up' else 'cloud -> bear'} | "
               f"[`{cls.__name__}`](#{cls.__name__.lower()}) | {delivery} |")
        assert row in table, row


def test_every_routed_message_has_a_sample_here():
    """A new message class with a route must be added to the wire test below."""
    assert {type(m) for m in _samples()} == set(routed_messages())


def test_ingest_takes_exactly_the_up_routes_marked_ingested():
    assert KINDS == {"turns": TurnsBatch, "status": Status, "health": HealthSample,
                     "alerts": AlertMessage, "cmd-result": CommandResult,
                     "config": ConfigReported}


class RawPeer:
    """A plain paho client outside the seam: sees every message under the bears' roots
    with the QoS and retain flag it was published with (QoS 2, retain-as-published)."""

    def __init__(self, port: int) -> None:
        self.received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.subscribed = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda c, u, m: self.received.put(m)
        self.client.on_subscribe = lambda *args: self.subscribed.put(True)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        options = SubscribeOptions(qos=2, retainAsPublished=True)
        self.client.subscribe([("teddy/v1/+/up/#", options), ("teddy/v1/+/down/#", options)])
        self.subscribed.get(timeout=10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.parametrize("index", range(12), ids=lambda i: type(_samples()[i]).__name__)
def test_a_message_goes_on_the_wire_as_its_class_declares(broker, index):
    message = _samples()[index]
    route = type(message).route()
    peer = RawPeer(broker.port)
    try:
        with MqttLink(Settings(mqtt={"port": broker.port}).mqtt, client_id="seam-test") as link:
            link.connect()
            assert link.publish(message, DEVICE).wait(10)
            seen = peer.received.get(timeout=10)
            if route.retain:
                link.clear_retained(type(message), DEVICE).wait(10)
    finally:
        peer.close()
    assert seen.topic == f"teddy/v1/{DEVICE}/{route.direction}/{route.name}"
    assert (seen.qos, bool(seen.retain)) == (route.qos, route.retain)
    assert type(message).from_payload(seen.payload) == message


def test_a_subscription_survives_a_reconnect(broker):
    """The link subscribes again after a reconnect, without the caller doing anything."""
    inbox: queue.Queue[bytes] = queue.Queue()
    with MqttLink(Settings(mqtt={"port": broker.port}).mqtt, client_id="seam-sub") as link:
        link.subscribe_to(Ack, lambda m: inbox.put(m.payload), device_id=DEVICE)
        link.connect()
        assert link.wait_subscribed(10)
        broker.kill()
        broker.start()
        deadline = time.monotonic() + 30
        while link.connects < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert link.connects >= 2, "the link never reconnected"
        assert link.wait_subscribed(10)
        ack = Ack(batch_id="b2", ranges=[(1, 2)])
        peer = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        peer.connect("127.0.0.1", broker.port)
        peer.loop_start()
        try:
            peer.publish(f"teddy/v1/{DEVICE}/down/ack", ack.to_payload(), qos=1).wait_for_publish(5)
            assert Ack.from_payload(inbox.get(timeout=10)) == ack
        finally:
            peer.disconnect()
            peer.loop_stop()
