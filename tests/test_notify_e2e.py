"""From the bear's rule to a person's inbox: health monitor -> up/alerts over a real Mosquitto
-> ``teddy-cloud ingest`` (a real subprocess) -> PostgreSQL -> notifier -> signed webhooks."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from support.receivers import HttpReceiver
from support.waiting import wait_until

from agent.alerts import AlertSink
from agent.health import HealthMonitor
from config.settings import load_settings
from sync.client import MqttLink
from sync.cloud.notify import Notifier, verify_signature
from sync.protocol import AlertMessage

SECRET = "e2e-secret"


def _publish(link: MqttLink, monitor: HealthMonitor, device: str) -> None:
    for message in monitor.outgoing():
        link.publish(message, device).wait(5)
        if isinstance(message, AlertMessage):
            monitor.mark_published(message)


def test_bear_alert_reaches_operators_and_wellbeing_reaches_only_the_parent(
        tmp_path: Path, broker, database, ingest):
    device = f"bear-e2e-{uuid.uuid4().hex[:8]}"
    settings = load_settings(store={"data_dir": tmp_path / "bear"}, device={"id": device},
                             mqtt={"port": broker.port})
    http = HttpReceiver()
    http.start()
    readings = {"disk_free_mb": 20.0}
    sink = AlertSink()
    try:
        with HealthMonitor(settings, sink, device, sampler=lambda now: dict(readings)) as monitor, \
                MqttLink(settings.mqtt, client_id=f"teddy-{device}") as link:
            link.connect()
            monitor.tick()
            sink.raise_alert("wellbeing.escalation", "high", "a parent should know",
                             categories=["distress"])
            _publish(link, monitor, device)
            readings["disk_free_mb"] = 5000.0
            monitor.tick()
            _publish(link, monitor, device)
        notify = load_settings(notify={"retry": {"base_s": 0.05}, "channels": {
            "ops": {"type": "webhook", "url": http.url + "/ops", "secret": SECRET},
            "parent": {"type": "webhook", "url": http.url + "/parent", "secret": SECRET,
                       "audience": "parent"},
        }}).notify
        with database.connect() as conn:
            notifier = Notifier(notify, conn)

            def ops_messages() -> list[dict]:
                notifier.run_once()
                ops = [json.loads(r.body) for r in http.at("/ops")
                       if json.loads(r.body)["device_id"] == device]
                return ops if len(ops) >= 2 else []

            ops = wait_until(ops_messages, 30, "the raise and the clear at /ops", interval=0.2)
        parent = [json.loads(r.body) for r in http.at("/parent")
                  if json.loads(r.body)["device_id"] == device]
        for request in http.at("/ops") + http.at("/parent"):
            assert verify_signature(SECRET.encode(), request.headers["X-Teddy-Timestamp"],
                                    request.body, request.headers["X-Teddy-Signature"])
    finally:
        http.stop()
    assert [(m["kind"], m["event"]) for m in ops] == [
        ("system.disk_low", "raised"), ("system.disk_low", "cleared")]
    assert [(m["kind"], m["details"]["categories"]) for m in parent] == [
        ("wellbeing.escalation", ["distress"])]
