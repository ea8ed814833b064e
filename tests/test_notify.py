"""Cloud notifications against real things: PostgreSQL (the alerts, the delivery log), a
local HTTP receiver (webhook with its HMAC checked, Slack, PagerDuty, SMS gateway) and a
local aiosmtpd server that requires STARTTLS."""

from __future__ import annotations

import email
import hashlib
import hmac
import json
import os
import random
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.brokers import free_port
from support.database import migrated_database
from support.processes import run_cli, start_cli
from support.receivers import HttpReceiver, self_signed_cert, start_smtp
from support.waiting import wait_until

from config.errors import ConfigError
from config.notify import NotifySettings
from config.settings import load_settings
from sync.backoff import backoff_bound, full_jitter
from sync.cloud.notify import Notification, Notifier, route
from sync.cloud.notify.webhook import verify_signature

SECRET = "webhook-secret-for-tests"


@pytest.fixture(scope="module")
def pg():
    """A database of this module's own (no other test's alerts get fanned out here)."""
    with migrated_database() as db:
        yield db


@pytest.fixture
def conn(pg):
    with pg.connect() as connection:
        connection.execute("TRUNCATE alerts, devices, consents CASCADE")
        yield connection


@pytest.fixture
def http():
    receiver = HttpReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


def _alert(conn, device: str, kind: str, severity: str = "high", message: str = "something",
           details: dict | None = None, raised_at: datetime | None = None) -> int:
    conn.execute("INSERT INTO devices (device_id) VALUES (%s) ON CONFLICT DO NOTHING", (device,))
    return conn.execute(
        "INSERT INTO alerts (device_id, kind, severity, message, details, raised_at) "
        "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (device, kind, severity, message, json.dumps(details or {}),
         raised_at or datetime.now(UTC))).fetchone()[0]


def _clear(conn, alert_id: int) -> None:
    conn.execute("UPDATE alerts SET cleared_at = now() WHERE id = %s", (alert_id,))


def _settings(**channels) -> NotifySettings:
    return NotifySettings(channels=channels, timeout_s=5,
                          retry={"base_s": 0.05, "cap_s": 0.2, "max_attempts": 4})


def _webhook(http: HttpReceiver, path: str = "/hook", **extra) -> dict:
    return {"type": "webhook", "url": http.url + path, "secret": SECRET, **extra}


def _deliveries(conn, channel: str | None = None) -> list[tuple]:
    return conn.execute(
        "SELECT a.device_id, a.kind, d.event, d.channel, d.status, d.attempts "
        "FROM notification_deliveries d JOIN alerts a ON a.id = d.alert_id "
        "WHERE %s::text IS NULL OR d.channel = %s ORDER BY d.id", (channel, channel)).fetchall()


def _drain(notifier: Notifier, seconds: float = 10.0) -> None:
    """Run rounds until nothing is pending or retrying."""
    def drained() -> bool:
        notifier.run_once()
        return notifier.conn.execute(
            "SELECT count(*) FROM notification_deliveries WHERE status IN "
            "('pending', 'retrying')").fetchone()[0] == 0

    wait_until(drained, seconds, "every delivery done (none pending or retrying)")


# --- channels ----------------------------------------------------------------------------


def test_webhook_body_is_signed_and_the_signature_checks(conn, http):
    alert_id = _alert(conn, "bear-w1", "system.disk_low", "critical", "only 80 MB free")
    notifier = Notifier(_settings(ops=_webhook(http)), conn)
    _drain(notifier)
    (got,) = http.at("/hook")
    timestamp = got.headers["X-Teddy-Timestamp"]
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + got.body,
                        hashlib.sha256).hexdigest()
    assert got.headers["X-Teddy-Signature"] == f"sha256={expected}"
    assert verify_signature(SECRET.encode(), timestamp, got.body, got.headers["X-Teddy-Signature"])
    assert not verify_signature(SECRET.encode(), timestamp, got.body.replace(b"80", b"90"),
                                got.headers["X-Teddy-Signature"])
    assert not verify_signature(b"other-secret", timestamp, got.body,
                                got.headers["X-Teddy-Signature"])
    assert not verify_signature(SECRET.encode(), str(int(timestamp) - 3600), got.body,
                                got.headers["X-Teddy-Signature"])
    body = json.loads(got.body)
    assert (body["alert_id"], body["event"], body["kind"], body["device_id"]) == (
        alert_id, "raised", "system.disk_low", "bear-w1")
    assert _deliveries(conn) == [("bear-w1", "system.disk_low", "raised", "ops", "delivered", 1)]
    log = conn.execute("SELECT attempt, outcome FROM notification_attempts").fetchall()
    assert log == [(1, "delivered")]


def test_email_goes_over_starttls_to_a_real_smtp_server(conn, tmp_path: Path):
    cert = self_signed_cert(tmp_path)
    port = free_port()
    controller, sink = start_smtp(port, cert)
    try:
        channel = {"type": "email", "host": "127.0.0.1", "port": port, "sender": "teddy@x.test",
                   "to": ["ops@x.test", "oncall@x.test"], "ca_file": str(cert[0])}
        _alert(conn, "bear-e1", "sync.broker_unreachable", "warning", "broker gone")
        _drain(Notifier(_settings(mail=channel), conn))
    finally:
        controller.stop()
    ((encrypted, sender, recipients, content),) = sink.messages
    assert encrypted, "the message was sent before STARTTLS"
    assert sender == "teddy@x.test" and recipients == ["ops@x.test", "oncall@x.test"]
    parsed = email.message_from_bytes(content)
    assert parsed["Subject"] == "[Teddy WARNING] sync.broker_unreachable on bear-e1"
    assert "broker gone" in parsed.get_payload()


def test_email_refuses_a_server_without_starttls(conn, tmp_path: Path):
    port = free_port()
    controller, sink = start_smtp(port, None)
    try:
        channel = {"type": "email", "host": "127.0.0.1", "port": port, "sender": "t@x.test",
                   "to": ["ops@x.test"]}
        _alert(conn, "bear-e2", "system.disk_low")
        _drain(Notifier(_settings(mail=channel), conn))
    finally:
        controller.stop()
    assert sink.messages == []
    status, error = conn.execute(
        "SELECT status, last_error FROM notification_deliveries").fetchone()
    assert status == "failed" and "does not offer STARTTLS" in error


def test_email_with_an_untrusted_certificate_fails_clearly(conn, tmp_path: Path):
    cert = self_signed_cert(tmp_path)
    port = free_port()
    controller, sink = start_smtp(port, cert)
    try:
        channel = {"type": "email", "host": "127.0.0.1", "port": port, "sender": "t@x.test",
                   "to": ["ops@x.test"]}  # no ca_file: the self-signed cert is not trusted
        _alert(conn, "bear-e3", "system.disk_low")
        _drain(Notifier(_settings(mail=channel), conn))
    finally:
        controller.stop()
    assert sink.messages == []
    status, error = conn.execute(
        "SELECT status, last_error FROM notification_deliveries").fetchone()
    assert status == "failed" and "certificate not trusted" in error and "ca_file" in error


def test_each_family_hears_only_about_its_own_child(conn, tmp_path: Path):
    cert = self_signed_cert(tmp_path)
    port = free_port()
    controller, sink = start_smtp(port, cert)
    for device, parent in [("bear-f1", "ann@family-a.test"), ("bear-f2", "bob@family-b.test"),
                           ("bear-f3", "cy@family-c.test")]:
        conn.execute("INSERT INTO consents (device_id, parent_email, scopes) "
                     "VALUES (%s, %s, '{keep,sync}')", (device, parent))
    conn.execute("UPDATE consents SET revoked_at = now() WHERE device_id = 'bear-f3'")
    try:
        channel = {"type": "email", "host": "127.0.0.1", "port": port, "sender": "t@x.test",
                   "audience": "parent", "to_parent": True, "ca_file": str(cert[0])}
        for device in ("bear-f1", "bear-f2", "bear-f3"):
            _alert(conn, device, "wellbeing.escalation", "high", "a parent should know",
                   {"categories": ["distress"]})
        _drain(Notifier(_settings(family=channel), conn))
    finally:
        controller.stop()
    delivered = {tuple(rcpt): email.message_from_bytes(content)["Subject"]
                 for _, _, rcpt, content in sink.messages}
    assert delivered == {("ann@family-a.test",): "Teddy: your child may need you (bear-f1)",
                         ("bob@family-b.test",): "Teddy: your child may need you (bear-f2)"}
    status, error = conn.execute(
        "SELECT d.status, d.last_error FROM notification_deliveries d JOIN alerts a "
        "ON a.id = d.alert_id WHERE a.device_id = 'bear-f3'").fetchone()
    assert status == "failed" and "no parent with an active consent" in error


def test_slack_pagerduty_and_sms_payloads(conn, http):
    channels = {
        "slack": {"type": "slack", "url": http.url + "/slack/T000/B000/XXXX"},
        "pd": {"type": "pagerduty", "routing_key": "R" * 32, "url": http.url + "/pd",
               "min_severity": "critical"},
        "sms": {"type": "sms", "url": http.url + "/sms", "token": "gw-token",
                "to": ["+15550001", "+15550002"]},
    }
    alert_id = _alert(conn, "bear-s1", "system.disk_low", "critical", "only 80 MB free")
    notifier = Notifier(_settings(**channels), conn)
    _drain(notifier)
    _clear(conn, alert_id)
    _drain(notifier)
    slack = [json.loads(r.body) for r in http.at("/slack/T000/B000/XXXX")]
    assert len(slack) == 2 and "system.disk_low" in slack[0]["text"]
    assert "RESOLVED" in slack[1]["text"]
    trigger, resolve = [json.loads(r.body) for r in http.at("/pd")]
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"] == "teddy/bear-s1/system.disk_low"
    assert trigger["routing_key"] == "R" * 32
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["source"] == "bear-s1"
    sms = http.at("/sms")
    assert [json.loads(r.body)["to"] for r in sms] == ["+15550001", "+15550002"] * 2
    assert all(r.headers["Authorization"] == "Bearer gw-token" for r in sms)
    assert all(len(json.loads(r.body)["text"]) <= 320 for r in sms)


def test_a_clear_is_never_sent_before_its_raise(conn, http):
    http.script["/pd"] = [500]  # the trigger fails once
    channels = {"pd": {"type": "pagerduty", "routing_key": "R" * 32, "url": http.url + "/pd"}}
    alert_id = _alert(conn, "bear-s2", "system.disk_low", "critical")
    _clear(conn, alert_id)  # raise and clear reach the cloud before the first round
    _drain(Notifier(_settings(**channels), conn))
    actions = [json.loads(r.body)["event_action"] for r in http.at("/pd")]
    assert actions == ["trigger", "trigger", "resolve"]


# --- routing -----------------------------------------------------------------------------


def test_wellbeing_goes_to_parents_only_and_operations_to_operators_only(conn, http):
    channels = {
        "parent-hook": _webhook(http, "/parent", audience="parent", min_severity="info"),
        "ops-hook": _webhook(http, "/ops", audience="operator", min_severity="info"),
        "ops-critical": _webhook(http, "/critical", min_severity="critical"),
        "ops-sync-only": _webhook(http, "/sync", kinds=["sync.*"], min_severity="info"),
    }
    _alert(conn, "bear-r1", "wellbeing.escalation", "high", "the child said something",
           {"categories": ["distress"]})
    _alert(conn, "bear-r1", "system.cpu_high", "warning", "CPU busy")
    _alert(conn, "bear-r1", "sync.backlog", "critical", "backlog")
    _drain(Notifier(_settings(**channels), conn))
    kinds = {path: sorted(json.loads(r.body)["kind"] for r in http.at(path))
             for path in ["/parent", "/ops", "/critical", "/sync"]}
    assert kinds == {
        "/parent": ["wellbeing.escalation"],
        "/ops": ["sync.backlog", "system.cpu_high"],
        "/critical": ["sync.backlog"],
        "/sync": ["sync.backlog"],
    }


def test_parent_message_has_no_operator_jargon_and_no_transcript():
    note = Notification(1, "raised", "bear-p1", "wellbeing.escalation", "high",
                        "the child said something a parent should know about",
                        datetime(2026, 1, 2, 19, 30, tzinfo=UTC),
                        details={"categories": ["distress"]})
    assert note.subject() == "Teddy: your child may need you (bear-p1)"
    # the category in a parent's words (issue 22), never the filter's name for it
    assert "Sad, scared or upset" in note.text() and "talk with your child" in note.text()
    assert "distress" not in note.text()
    operator = NotifySettings(channels={"o": {"type": "slack", "url": "http://x/y"}})
    assert route(operator.channels, note) == []


# --- dedupe, rate limits, retries -----------------------------------------------------------


def test_the_same_news_goes_to_a_channel_once_per_window(conn, http):
    settings = _settings(ops=_webhook(http, min_severity="info"))
    notifier = Notifier(settings, conn)
    _alert(conn, "bear-d1", "audio.device_errors")
    _drain(notifier)
    _alert(conn, "bear-d1", "audio.device_errors")  # re-raised by a restarted bear
    _alert(conn, "bear-d2", "audio.device_errors")  # another bear: not a duplicate
    _drain(notifier)
    statuses = [(d[0], d[4]) for d in _deliveries(conn)]
    assert statuses == [("bear-d1", "delivered"), ("bear-d1", "deduplicated"),
                        ("bear-d2", "delivered")]
    assert len(http.at("/hook")) == 2
    # Outside the window the same news is news again.
    conn.execute("UPDATE notification_deliveries SET created_at = created_at - interval '1 day'")
    _alert(conn, "bear-d1", "audio.device_errors")
    _drain(notifier)
    assert [d[4] for d in _deliveries(conn)][-1] == "delivered"


def test_a_new_kind_of_worry_is_news_even_within_the_window(conn, http):
    notifier = Notifier(_settings(parent=_webhook(http, audience="parent")), conn)
    for categories in (["distress"], ["distress"], ["abuse"]):
        _alert(conn, "bear-d3", "wellbeing.escalation", "high", "a parent should know",
               {"categories": categories})
        _drain(notifier)
    assert [d[4] for d in _deliveries(conn)] == ["delivered", "deduplicated", "delivered"]


def test_a_channel_takes_at_most_its_rate_limit(conn, http):
    settings = _settings(ops=_webhook(http, min_severity="info", rate_limit=2,
                                      rate_window_s=60))
    for i in range(5):
        _alert(conn, f"bear-l{i}", "system.cpu_high")
    _drain(Notifier(settings, conn))
    assert [d[4] for d in _deliveries(conn)] == ["delivered"] * 2 + ["rate_limited"] * 3
    assert len(http.at("/hook")) == 2


def test_failed_deliveries_are_retried_with_backoff_until_delivered(conn, http):
    http.script["/hook"] = [500, 503, 429]
    settings = _settings(ops=_webhook(http))
    _alert(conn, "bear-t1", "system.memory_high")
    started = time.monotonic()
    _drain(Notifier(settings, conn, rng=random.Random(7)))
    assert len(http.at("/hook")) == 4
    log = conn.execute("SELECT attempt, outcome, retry_in_s, error FROM notification_attempts "
                       "ORDER BY attempt").fetchall()
    assert [(a, o) for a, o, _, _ in log] == [
        (1, "retry"), (2, "retry"), (3, "retry"), (4, "delivered")]
    for attempt, _, wait, _ in log[:3]:
        assert 0.0 <= wait <= backoff_bound(attempt, 0.05, 0.2)
    assert "HTTP 500" in log[0][3] and "HTTP 429" in log[2][3]
    assert time.monotonic() - started < 5
    assert _deliveries(conn)[0][4:] == ("delivered", 4)


def test_permanent_failure_is_not_retried_and_retries_end(conn, http):
    http.script["/bad"] = [400]
    http.script["/down"] = [500] * 10
    settings = _settings(bad=_webhook(http, "/bad"), down=_webhook(http, "/down"))
    _alert(conn, "bear-t2", "system.memory_high")
    _drain(Notifier(settings, conn))
    assert len(http.at("/bad")) == 1 and len(http.at("/down")) == 4  # max_attempts
    rows = {d[3]: d[4:] for d in _deliveries(conn)}
    assert rows == {"bad": ("failed", 1), "down": ("failed", 4)}


def test_unreachable_receiver_is_retried(conn):
    settings = _settings(gone={"type": "webhook", "url": f"http://127.0.0.1:{free_port()}/x",
                               "secret": SECRET})
    _alert(conn, "bear-t3", "system.memory_high")
    _drain(Notifier(settings, conn))
    outcomes = [r[0] for r in conn.execute(
        "SELECT outcome FROM notification_attempts ORDER BY attempt").fetchall()]
    assert outcomes == ["retry", "retry", "retry", "failed"]


def test_full_jitter_stays_under_an_exponential_cap_and_spreads():
    rng = random.Random(1)
    assert [backoff_bound(n, 2.0, 60.0) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]
    waits = [full_jitter(5, 2.0, 60.0, rng) for _ in range(2000)]
    assert all(0.0 <= w <= 32.0 for w in waits)
    assert 14.0 < sum(waits) / len(waits) < 18.0  # uniform over [0, 32]: mean 16
    assert min(waits) < 2.0 and max(waits) > 30.0


def test_two_notifiers_never_send_one_delivery_twice(pg, conn, http):
    settings = _settings(ops=_webhook(http, min_severity="info", rate_limit=1000))
    for i in range(30):
        _alert(conn, f"bear-c{i}", "system.cpu_high")
    with pg.connect() as other:
        notifiers = [Notifier(settings, conn), Notifier(settings, other)]
        threads = [threading.Thread(target=_drain, args=(n,)) for n in notifiers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    ids = sorted(json.loads(r.body)["alert_id"] for r in http.at("/hook"))
    assert len(ids) == 30 and len(set(ids)) == 30


def test_old_alerts_are_logged_not_sent(conn, http):
    _alert(conn, "bear-o1", "system.cpu_high", raised_at=datetime.now(UTC) - timedelta(days=3))
    counts = Notifier(_settings(ops=_webhook(http, min_severity="info")), conn).run_once()
    assert counts["stale"] == 1 and http.at("/hook") == []
    assert conn.execute("SELECT count(*) FROM notification_events").fetchone()[0] == 1


# --- config --------------------------------------------------------------------------------


def test_email_without_tls_to_a_remote_host_is_a_config_error():
    with pytest.raises(ConfigError, match="must use STARTTLS"):
        load_settings(notify={"channels": {"m": {
            "type": "email", "host": "smtp.example.org", "sender": "a@b.c", "to": ["d@e.f"],
            "starttls": False}}})


def test_parent_addresses_are_never_given_to_operator_channels():
    with pytest.raises(ConfigError, match="to_parent needs audience"):
        load_settings(notify={"channels": {"m": {
            "type": "email", "host": "smtp.example.org", "sender": "a@b.c", "to_parent": True}}})


def test_unknown_channel_type_names_the_field():
    with pytest.raises(ConfigError, match="notify.channels.x"):
        load_settings(notify={"channels": {"x": {"type": "pigeon"}}})


def test_errors_never_carry_the_slack_url(conn):
    secret_path = "/services/T000/B000/very-secret-token"
    settings = _settings(slack={"type": "slack", "url": f"http://127.0.0.1:{free_port()}"
                                + secret_path})
    _alert(conn, "bear-x1", "system.memory_high")
    _drain(Notifier(settings, conn))
    errors = [r[0] for r in conn.execute("SELECT error FROM notification_attempts").fetchall()]
    assert errors and all("very-secret-token" not in e for e in errors)


def _cloud_env(tmp_path: Path, pg, http, **notify: object) -> dict[str, str]:
    """The environment of ``teddy-cloud`` with a cloud.toml naming the database and a webhook
    channel, as an operator would write it."""
    config = tmp_path / "cloud.toml"
    extra = "".join(f"{key} = {json.dumps(value)}\n" for key, value in notify.items())
    config.write_text(
        f'[cloud]\npg_dsn = "{pg.dsn}"\n\n[notify]\npoll_interval_s = 0.1\n{extra}\n'
        f'[notify.channels.ops]\ntype = "webhook"\nurl = "{http.url}/hook"\n'
        f'secret = "{SECRET}"\nmin_severity = "info"\n')
    return {"PATH": os.environ["PATH"], "TEDDY_CONFIG": str(config), "HOME": str(tmp_path)}


def test_notify_commands_run_once_and_show_the_log(pg, conn, http, tmp_path):
    """``teddy-cloud notify run --once`` and ``notify log`` as the installed command."""
    env = _cloud_env(tmp_path, pg, http)
    _alert(conn, "bear-cli1", "system.cpu_high")
    result = run_cli("teddy-cloud", "notify", "run", "--once", env=env)
    assert json.loads(result.stdout) == {"delivered": 1, "pending": 1}
    (got,) = http.at("/hook")
    assert json.loads(got.body)["device_id"] == "bear-cli1"
    result = run_cli("teddy-cloud", "notify", "log", "--status", "delivered", env=env)
    (line,) = result.stdout.splitlines()
    assert json.loads(line)["device_id"] == "bear-cli1" and json.loads(line)["channel"] == "ops"


def test_notify_run_keeps_delivering_until_sigterm(pg, conn, http, tmp_path):
    """``teddy-cloud notify run`` (the unit's command) delivers alerts raised while it runs
    and exits 0 on SIGTERM, as ``systemctl stop`` sends."""
    env = _cloud_env(tmp_path, pg, http)
    log = tmp_path / "notify.log"
    process = start_cli("teddy-cloud", "--log-level", "INFO", "notify", "run", env=env, log=log)
    try:
        _alert(conn, "bear-cli2", "system.disk_low", "critical")
        wait_until(lambda: http.at("/hook"), 20,
                   lambda: f"the first webhook call: {log.read_text()}")
        _alert(conn, "bear-cli3", "system.disk_low", "critical")
        wait_until(lambda: len(http.at("/hook")) == 2, 20,
                   lambda: f"the second webhook call: {log.read_text()}")
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(15)
    assert code == 0, log.read_text()
    assert sorted(json.loads(r.body)["device_id"] for r in http.at("/hook")) == [
        "bear-cli2", "bear-cli3"]
