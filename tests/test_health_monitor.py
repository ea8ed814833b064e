"""The health monitor end to end on the bear: real psutil readings, a real SQLite journal,
the real AlertSink and conversation pipeline, and ``teddy health`` as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.processes import run_cli
from support.waiting import wait_until

from agent.alerts import Alert, AlertSink
from agent.health import HealthMonitor, Signals, UnknownSignalError
from agent.health.journal import HealthJournal
from agent.health.sampler import SystemSampler, outbox_metrics, parse_throttled
from config.errors import ProtocolError
from config.settings import Settings, load_settings
from sync.protocol import AlertMessage, HealthSample

DEVICE = "bear-health-1"


@pytest.fixture
def health_settings(data_dir: Path) -> Settings:
    """A bear with a device id, its store in ``data_dir``, alerts never suppressed."""
    return load_settings(store={"data_dir": data_dir}, device={"id": DEVICE},
                         health={"suppress_s": 0})


class SyntheticSystem:
    """A system half of the sample whose readings the test sets (no real CPU to heat)."""

    def __init__(self, **readings: float | None) -> None:
        self.readings: dict[str, float | None] = {
            "cpu_percent": 5.0, "memory_percent": 20.0, "disk_free_mb": 5000.0,
            **readings}

    def __call__(self, now: float) -> dict[str, float | None]:
        return dict(self.readings)


@pytest.fixture
def sink() -> AlertSink:
    return AlertSink()


def _heard(sink: AlertSink) -> list[Alert]:
    heard: list[Alert] = []
    sink.subscribe(heard.append)
    return heard


# --- the real sampler ---------------------------------------------------------------------


def test_real_sampler_reads_this_machine(tmp_path: Path):
    key = tmp_path / "teddy.key"
    key.write_bytes(b"k" * 32)
    key.chmod(0o600)
    sampler = SystemSampler(tmp_path / "not-yet" / "data", key)
    time.sleep(0.1)
    first = sampler.sample()
    assert 0.0 <= first["cpu_percent"] <= 100.0
    assert 0.0 < first["memory_percent"] < 100.0
    assert first["disk_free_mb"] > 1.0
    assert first["rss_mb"] > 5.0 and first["open_files"] >= 3
    assert first["uptime_s"] > 0 and first["process_uptime_s"] > 0
    assert first["key_file_insecure"] == 0.0
    assert first["clock_synchronised"] in (0.0, 1.0, None)
    key.chmod(0o644)
    assert sampler.sample()["key_file_insecure"] == 1.0


@pytest.mark.parametrize("output, expected", [
    ("throttled=0x0\n", 0.0), ("throttled=0x50005\n", 1.0), ("throttled=0x50000\n", 0.0),
    ("VCHI initialization failed", None),
])
def test_vcgencmd_throttling_bits(output, expected):
    assert parse_throttled(output) == expected


def test_outbox_depth_and_age_from_a_real_store(health_settings: Settings):
    from agent.runtime import open_bear
    from agent.store import ConversationStore, Scope

    with ConversationStore.open(health_settings.store, create=True) as store:
        store.grant_consent("parent@example.org", [Scope.KEEP, Scope.SYNC])
    with open_bear(health_settings) as bear:
        bear.respond("hello bear")
        bear.respond("tell me a joke")
    metrics = outbox_metrics(health_settings.store.db_path, now=time.time() + 100)
    assert metrics["outbox_depth"] == 4.0
    assert 99.0 <= metrics["oldest_unsynced_age_s"] < 200.0
    assert "retention_overdue_days" not in metrics
    later = time.time() + (health_settings.store.retention_days + 3) * 86400
    overdue = outbox_metrics(health_settings.store.db_path, now=later,
                             retention_days=health_settings.store.retention_days)
    assert 2.9 < overdue["retention_overdue_days"] < 3.1
    # The monitor's own (real) sampler reads the same store and raises the privacy alert.
    sink = AlertSink()
    heard = _heard(sink)
    with HealthMonitor(health_settings, sink, DEVICE) as monitor:
        monitor.tick(now=later)
        assert monitor.snapshot().metrics["outbox_depth"] == 4.0
    assert "privacy.retention_overdue" in [a.kind for a in heard]


# --- signals --------------------------------------------------------------------------------


def test_signals_count_events_in_a_window_and_summarise_latency():
    now = [1000.0]
    signals = Signals(window_s=60, clock=lambda: now[0])
    signals.count("store_errors", at=900.0)  # outside the window
    signals.count("store_errors", 2)
    signals.total("audio_overflows", 10)  # first total is the baseline
    signals.total("audio_overflows", 17)
    for latency in [0.1] * 18 + [2.0, 5.0]:
        signals.observe("recognition_latency", latency)
    signals.set("broker_connected", False)
    snap = signals.snapshot()
    assert snap["store_errors"] == 2.0 and snap["audio_overflows"] == 7.0
    assert snap["recognition_latency_p95_s"] == 2.0
    assert snap["broker_connected"] == 0.0 and snap["outbox_depth"] is None
    now[0] = 1100.0
    assert signals.snapshot()["store_errors"] == 0.0


def test_a_misspelt_signal_is_an_error_naming_the_known_ones():
    with pytest.raises(UnknownSignalError, match="broker_connected"):
        Signals().set("broker_conected", 1)


def test_alerts_from_parts_are_counted_as_signals():
    signals = Signals()
    for kind in ["store.disk_full", "audio.device_lost", "audio.speaker_failed", "other.thing"]:
        signals.on_alert(Alert(kind, "high", "x"))
    snap = signals.snapshot()
    assert (snap["store_errors"], snap["audio_device_errors"], snap["speech_errors"]) == (1, 1, 1)


# --- the monitor ---------------------------------------------------------------------------


def test_rule_alert_is_announced_journaled_and_cleared(health_settings: Settings, sink: AlertSink):
    heard = _heard(sink)
    system = SyntheticSystem(disk_free_mb=120.0)
    with HealthMonitor(health_settings, sink, DEVICE, sampler=system) as monitor:
        monitor.tick(now=1000.0)
        assert [(a.kind, a.severity.value, a.cleared) for a in heard] == [
            ("system.disk_low", "critical", False)]
        assert [a.kind for a in monitor.open_alerts()] == ["system.disk_low"]
        assert monitor.worst_open_severity() == "critical"
        system.readings["disk_free_mb"] = 250.0  # inside the hysteresis band
        monitor.tick(now=1010.0)
        assert len(heard) == 1
        system.readings["disk_free_mb"] = 900.0
        monitor.tick(now=1020.0)
        assert [(a.kind, a.cleared) for a in heard[1:]] == [("system.disk_low", True)]
        assert monitor.open_alerts() == [] and monitor.worst_open_severity() is None
    journal_file = health_settings.store.data_dir / "health.db"
    assert journal_file.stat().st_mode & 0o777 == 0o600


def test_alerts_wait_in_the_journal_while_offline_and_publish_once(health_settings, sink):
    system = SyntheticSystem(disk_free_mb=50.0)
    with HealthMonitor(health_settings, sink, DEVICE, sampler=system) as monitor:
        monitor.tick(now=1000.0)
        system.readings["disk_free_mb"] = 900.0
        monitor.tick(now=1100.0)
        sink.raise_alert("wellbeing.escalation", "high", "the child said something",
                         categories=["distress"], transcript="never kept")
    # A new process (the bear restarted, still offline): everything still waits.
    with HealthMonitor(health_settings, AlertSink(), DEVICE, sampler=system) as monitor:
        pending = monitor.pending_alerts()
        assert [(m.kind, m.state) for m in pending] == [
            ("system.disk_low", "raised"), ("system.disk_low", "cleared"),
            ("wellbeing.escalation", "raised")]
        for message in pending:
            parsed = AlertMessage.from_payload(message.to_payload())
            assert parsed == message and parsed.device_id == DEVICE
        escalation = pending[2]
        assert escalation.details == {"categories": ["distress"]}
        assert "never kept" not in escalation.to_payload().decode()
        assert pending[0].alert_id == pending[1].alert_id and pending[1].cleared_at == 1100.0
        for message in pending[:2]:
            monitor.mark_published(message)
        assert [m.kind for m in monitor.pending_alerts()] == ["wellbeing.escalation"]


def test_health_sample_message_round_trips(health_settings, sink):
    with HealthMonitor(health_settings, sink, DEVICE,
                       sampler=SyntheticSystem(cpu_temp_c=None)) as monitor:
        assert monitor.health_sample() is None
        monitor.signals.set("broker_connected", True)
        monitor.tick(now=5000.0)
        sample = monitor.health_sample()
    parsed = HealthSample.from_payload(sample.to_payload())
    assert parsed.metrics["broker_connected"] == 1.0 and parsed.metrics["cpu_temp_c"] is None
    assert parsed.sampled_at == 5000.0 and parsed.device_id == DEVICE


def test_a_non_finite_reading_travels_as_unknown(health_settings, sink):
    """The protocol refuses NaN/Infinity; a sensor that reads one must not stop the sample
    (nor the alerts published with it)."""
    system = SyntheticSystem(cpu_percent=float("nan"), cpu_temp_c=float("inf"))
    with HealthMonitor(health_settings, sink, DEVICE, sampler=system) as monitor:
        monitor.tick(now=5000.0)
        sample = monitor.health_sample()
    parsed = HealthSample.from_payload(sample.to_payload())
    assert parsed.metrics["cpu_percent"] is None and parsed.metrics["cpu_temp_c"] is None


@pytest.mark.parametrize("payload, fragment", [
    (b'{"v": 2, "device_id": "bear-1", "sampled_at": 1, "metrics": {}}', "field v"),
    (b'{"v": 1, "device_id": "bear-1", "sampled_at": 1, "metrics": {"x": "hot"}}', "metrics.x"),
    (b'{"v": 1, "device_id": "bear-1", "sampled_at": 1, "metrics": {}, "pad": "'
     + b"x" * 20000 + b'"}', "over the 16384-byte limit"),
])
def test_health_sample_refuses_bad_payloads(payload, fragment):
    with pytest.raises(ProtocolError, match=fragment):
        HealthSample.from_payload(payload)


def test_crash_loop_counts_unclean_restarts_only(health_settings, sink):
    journal = HealthJournal(health_settings.store.data_dir / "health.db")
    now = time.time()
    for ago in (3000, 2000, 1000):
        journal.record_boot(now - ago)  # these processes died without a clean exit
    clean = journal.record_boot(now - 500)
    journal.record_clean_exit(clean, now - 400)
    journal.close()
    heard = _heard(sink)
    with HealthMonitor(health_settings, sink, DEVICE, sampler=SyntheticSystem()) as monitor:
        monitor.tick(now=now)
        assert monitor.snapshot().metrics["crash_restarts"] == 3.0
    assert [a.kind for a in heard] == ["agent.crash_loop"]
    # This monitor exited cleanly: the next start sees no new crash.
    with HealthMonitor(health_settings, AlertSink(), DEVICE, sampler=SyntheticSystem()) as monitor:
        monitor.tick(now=now + 10)
        assert monitor.snapshot().metrics["crash_restarts"] == 3.0


def test_repeated_escalations_alert_the_parent_and_nothing_is_spoken(health_settings, sink):
    from agent.runtime import open_bear

    with open_bear(health_settings) as bear:
        heard = _heard(bear.alerts)
        with HealthMonitor(health_settings, bear.alerts, DEVICE,
                           sampler=SyntheticSystem()) as monitor:
            replies = [bear.respond(text).reply for text in
                       ["i feel sad all the time", "nobody loves me", "i am scared every night"]]
            monitor.tick()
            kinds = [a.kind for a in heard]
            assert kinds.count("wellbeing.escalation") == 3
            assert kinds[-1] == "wellbeing.repeated_escalations"
            assert heard[-1].severity.value == "critical"
            assert monitor.snapshot().metrics["safety_escalations"] == 3.0
    for reply in replies:  # the child hears comfort, never the alert
        assert "parent should know" not in reply and "worrying" not in reply


def test_health_package_has_no_path_to_the_speaker():
    code = ("import sys, agent.health, agent.health.cli, agent.health.monitor; "
            "bad = [m for m in sys.modules if m.startswith(('agent.voice', 'pyttsx3', "
            "'hardware.speaker', 'sounddevice'))]; print(','.join(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).parent.parent, timeout=60, check=True)
    assert result.stdout.strip() == ""


# --- teddy health -------------------------------------------------------------------------


def test_teddy_health_prints_snapshot_and_open_alerts(health_settings, sink, env):
    system = SyntheticSystem(memory_percent=97.0)
    with HealthMonitor(health_settings, sink, DEVICE, sampler=system) as monitor:
        monitor.signals.set("outbox_depth", 12)
        monitor.tick(now=time.time() - 120)
        monitor.tick()
    env = {**env, "TEDDY_DEVICE__ID": DEVICE}
    report = json.loads(run_cli("teddy", "health", "--json", env=env).stdout)
    assert report["agent_signals_at"] is not None
    assert report["metrics"]["outbox_depth"] == 12.0
    assert 0.0 <= report["metrics"]["cpu_percent"] <= 100.0  # fresh, real reading
    assert [(a["kind"], a["severity"]) for a in report["open_alerts"]] == [
        ("system.memory_high", "high")]
    text = run_cli("teddy", "health", env=env).stdout
    assert "open alerts: 1" in text and "system.memory_high" in text


def test_teddy_health_on_a_fresh_bear(env, data_dir):
    result = run_cli("teddy", "health", env=env)
    assert "open alerts: none" in result.stdout
    assert "agent signals unknown" in result.stdout
    assert (data_dir / "health.db").exists() is False  # looking does not start a journal


# --- the up/alerts + up/health contract over a real broker -------------------------------


def _cloud_listener(port: int, received: list):
    import paho.mqtt.client as mqtt

    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                         client_id="test-cloud", protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, msg: received.append((msg.topic, msg.payload))
    client.connect("127.0.0.1", port)
    client.subscribe("teddy/v1/+/up/#", qos=1)
    client.loop_start()
    return client


def _publish(link, monitor: HealthMonitor) -> int:
    """What the sync link does with ``monitor.outgoing()``; returns how many it sent."""
    from sync.protocol import AlertMessage

    sent = 0
    for message in monitor.outgoing():
        published = link.publish(message, DEVICE).wait(5)
        if isinstance(message, AlertMessage) and published:
            monitor.mark_published(message)
        sent += 1
    return sent


def test_alerts_raised_offline_reach_the_cloud_after_reconnect(health_settings, sink, broker):
    from sync.client import MqttLink

    received: list = []
    cloud = _cloud_listener(broker.port, received)
    mqtt_settings = health_settings.mqtt.model_copy(update={"port": broker.port})
    system = SyntheticSystem()
    with HealthMonitor(health_settings, sink, DEVICE, sampler=system) as monitor:
        link = MqttLink(mqtt_settings, client_id=f"teddy-{DEVICE}")
        link.connect()
        monitor.signals.set("broker_connected", link.connected)
        monitor.tick(now=1000.0)
        assert _publish(link, monitor) == 1  # only the health sample: no alert yet
        link.close()
        # Offline: the disk fills up and a wellbeing escalation happens.
        monitor.signals.set("broker_connected", False)
        system.readings["disk_free_mb"] = 10.0
        monitor.tick(now=1100.0)
        sink.raise_alert("wellbeing.escalation", "high", "a parent should know",
                         categories=["distress"])
        assert len(monitor.pending_alerts()) == 2
        link = MqttLink(mqtt_settings, client_id=f"teddy-{DEVICE}")
        link.connect()
        _publish(link, monitor)
        assert monitor.pending_alerts() == []
        link.close()
    wait_until(lambda: len(received) >= 3, 10, "two alerts and a health sample",
               interval=0.05)
    cloud.loop_stop()
    cloud.disconnect()
    alerts = [AlertMessage.from_payload(p) for t, p in received if t.endswith("/up/alerts")]
    assert [(a.kind, a.state) for a in alerts] == [
        ("system.disk_low", "raised"), ("wellbeing.escalation", "raised")]
    samples = [HealthSample.from_payload(p) for t, p in received if t.endswith("/up/health")]
    assert samples and samples[0].metrics["broker_connected"] == 1.0


def test_journal_prunes_only_published_old_alerts(health_settings):
    with HealthJournal(health_settings.store.data_dir / "health.db") as journal:
        old = journal.record_raise(DEVICE, None, "store.disk_full", "critical", "full", {},
                                   at=1000.0, one_shot=True)
        unsent = journal.record_raise(DEVICE, None, "store.disk_full", "critical", "full", {},
                                      at=1000.0, one_shot=True)
        fresh = journal.record_raise(DEVICE, None, "store.disk_full", "critical", "full", {},
                                     at=time.time(), one_shot=True)
        for alert_id in (old, fresh):
            journal.mark_published(alert_id, "raised")
        assert journal.prune(keep_days=30) == 1
        assert {a.id for a in journal.recent(0)} == {unsent, fresh}


def test_background_loop_ticks_until_closed(data_dir):
    settings = load_settings(store={"data_dir": data_dir}, health={"sample_interval_s": 0.05})
    sink = AlertSink()
    heard = _heard(sink)
    monitor = HealthMonitor(settings, sink, DEVICE, sampler=SyntheticSystem(disk_free_mb=1.0))
    monitor.start()
    wait_until(lambda: heard, 10, "the disk alert")
    monitor.close()
    monitor.close()  # idempotent
    assert [a.kind for a in heard] == ["system.disk_low"]
    assert monitor.snapshot() is not None


def test_idle_led_shows_open_alerts_but_never_wellbeing_ones(health_settings: Settings,
                                                             sink: AlertSink):
    """The appliance's idle LED: ``alert`` while an operational rule alert is open, back to
    ``off`` when it clears; a wellbeing escalation never shows (the child sees the LED)."""
    from agent.lifecycle import Lifecycle
    from sync.systemd_notify import SystemdNotifier

    system = SyntheticSystem()
    with HealthMonitor(health_settings, sink, DEVICE, sampler=system) as monitor:
        lifecycle = Lifecycle(health_settings, None, None, None, SystemdNotifier(None))
        lifecycle._monitor = monitor
        monitor.tick(now=1000.0)
        sink.raise_alert("wellbeing.escalation", "high", "the child said something")
        assert lifecycle.idle_state() == "off"
        system.readings["disk_free_mb"] = 50.0
        monitor.tick(now=1010.0)
        assert lifecycle.idle_state() == "alert"
        system.readings["disk_free_mb"] = 900.0
        monitor.tick(now=1020.0)
        assert lifecycle.idle_state() == "off"
