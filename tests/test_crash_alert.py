"""The OnFailure= alert: ``python -m agent.crash_alert UNIT``, as ``teddy-alert@.service`` runs
it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from agent.crash_alert import ALERT_KIND, record_failure, take_pending


def test_the_alert_unit_command_logs_critical_and_leaves_the_alert(
    env: dict[str, str], data_dir: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agent.crash_alert", "teddy-agent.service"],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(text) for text in result.stderr.strip().splitlines()]
    critical = [line for line in lines if line["level"] == "CRITICAL"]
    assert critical and critical[0]["unit"] == "teddy-agent.service"
    assert "not sent" in lines[-1]["msg"]  # no device id yet: nothing to publish as
    alerts = take_pending(data_dir)
    assert [a["kind"] for a in alerts] == [ALERT_KIND]
    assert alerts[0]["unit"] == "teddy-agent.service" and alerts[0]["severity"] == "critical"
    assert take_pending(data_dir) == []  # raised once, then gone


def test_pending_alerts_come_oldest_first_and_bad_files_are_dropped(tmp_path: Path) -> None:
    record_failure("b.service", tmp_path, now=200.0)
    record_failure("a.service", tmp_path, now=300.0)
    record_failure("../evil/c.service", tmp_path, now=100.0)
    (tmp_path / "alerts" / "junk.json").write_text("{not json")
    assert [a["unit"] for a in take_pending(tmp_path)] == [
        "../evil/c.service", "b.service", "a.service"]
    assert list((tmp_path / "alerts").iterdir()) == []


def test_a_wrong_call_is_a_usage_error() -> None:
    result = subprocess.run([sys.executable, "-m", "agent.crash_alert"], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2 and "usage" in result.stderr


def test_the_alert_reaches_the_broker_on_up_alerts(env: dict[str, str], broker) -> None:
    import threading

    import paho.mqtt.client as mqtt

    from sync.protocol import AlertMessage

    device = "bear-failsafe-01"
    got: list[bytes] = []
    arrived = threading.Event()
    listener = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                           protocol=mqtt.MQTTv5)
    listener.on_message = lambda c, u, message: (got.append(message.payload), arrived.set())
    listener.connect("127.0.0.1", broker.port)
    listener.subscribe(f"teddy/v1/{device}/up/alerts", qos=1)
    listener.loop_start()
    try:
        time.sleep(0.3)  # the subscription is in place
        result = subprocess.run(
            [sys.executable, "-m", "agent.crash_alert", "teddy-agent.service"],
            env=dict(env, TEDDY_DEVICE__ID=device), capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert arrived.wait(10), result.stderr
    finally:
        listener.loop_stop()
        listener.disconnect()
    alert = AlertMessage.from_payload(got[0])
    assert (alert.device_id, alert.kind, alert.severity, alert.state) == (
        device, ALERT_KIND, "critical", "raised")
    assert alert.details == {"unit": "teddy-agent.service"}
