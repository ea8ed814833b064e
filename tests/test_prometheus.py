"""Prometheus rules and Grafana dashboards, checked against the real thing.

``promtool check rules`` and ``promtool test rules`` on the shipped rules, a promtool test
that fires every alert, and every alert's summary, description and runbook_url into a real
section of docs/runbook.md; the shipped prometheus.yml scrapes the shipped addresses; every
PromQL expression of the rules and the dashboards parses (promtool checks them as recording
rules); and every metric name any of them uses is exported by a real scrape of
``teddy-cloud ingest``, ``teddy-cloud notify run``, ``teddy-cloud broker-metrics`` and Debian's
``prometheus-node-exporter`` running against real PostgreSQL and Mosquitto with a few bears'
turns, an alert and its delivery behind them."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml
from support.brokers import free_port
from support.processes import run_cli, start_cli, wait_for_log
from support.receivers import HttpReceiver
from support.waiting import wait_until

REPO = Path(__file__).resolve().parent.parent
PROM = REPO / "config" / "examples" / "prometheus"
DASHBOARDS = sorted((REPO / "config" / "examples" / "grafana").glob("*.json"))
SYNTHETIC = {"up"}
"""Series Prometheus makes itself for every target."""
WORDS = {
    "sum", "min", "max", "avg", "count", "rate", "increase", "irate", "by", "without", "on",
    "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "time", "absent",
    "clamp_min", "clamp_max", "histogram_quantile", "topk", "bottomk", "offset", "vector",
    "scalar", "delta", "deriv", "abs", "le", "inf", "nan", "e",
}


def promtool() -> str:
    binary = shutil.which("promtool")
    assert binary, "promtool missing: apt-get install prometheus (scripts/setup --test)"
    return binary


def rule_exprs() -> list[str]:
    groups = yaml.safe_load((PROM / "teddy-rules.yml").read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            found += [target["expr"] for target in panel["targets"]]
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (strings, label matchers, grouping labels,
    durations, function names and keywords removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        after = text[match.end():].lstrip()
        if match.group() not in WORDS and not after.startswith("("):
            names.add(match.group())
    return names


def test_metric_names_finds_the_metrics_and_only_them():
    expr = ('sum by (channel) (increase(teddy_notify_deliveries_total{status="failed"}[30m]))'
            ' / on() clamp_min(sum(teddy_fleet_bears), 1) > 0 and time() - x_y > 26 * 3600')
    assert metric_names(expr) == {"teddy_notify_deliveries_total", "teddy_fleet_bears", "x_y"}


def rules() -> list[dict]:
    groups = yaml.safe_load((PROM / "teddy-rules.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_checks_and_unit_tests_the_rules():
    check = subprocess.run([promtool(), "check", "rules", "teddy-rules.yml"], cwd=PROM,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "SUCCESS" in check.stdout, check.stdout + check.stderr
    tested = subprocess.run([promtool(), "test", "rules", "teddy-rules.test.yml"], cwd=PROM,
                            capture_output=True, text=True, timeout=120)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
    alerts = {rule["alert"] for rule in rules()}
    assert {"TeddyIngestDown", "TeddyIngestNotConsuming", "TeddyIngestAckLag", "TeddyDeadLetters",
            "TeddyDatabaseErrors", "TeddyBearsOffline", "TeddyWellbeingNotDelivered",
            "TeddyNotifyChannelFailing", "TeddyBackupTooOld",
            # issue 23: what an on-call person also needs to hear of
            "TeddyBrokerDown", "TeddyDiskAlmostFull", "TeddyDiskFillingUp",
            "TeddyCertificateExpiresSoon", "TeddyWalArchivingFailing", "TeddyEdgeBridgeDown",
            "TeddyEdgeBearsOffline", "TeddyDeadLettersDropped",
            "TeddyRateLimitRefusals"} <= alerts


def test_every_alert_has_a_promtool_test_that_sees_it_fire():
    """Not only named: each alert has a test case expecting it to fire (a non-empty
    ``exp_alerts``), which promtool then checks."""
    cases = yaml.safe_load((PROM / "teddy-rules.test.yml").read_text())["tests"]
    fired = {check["alertname"] for case in cases for check in case["alert_rule_test"]
             if check.get("exp_alerts")}
    untested = {rule["alert"] for rule in rules()} - fired
    assert untested == set(), f"alerts without a promtool test that fires them: {untested}"


def runbook_anchors() -> set[str]:
    """The anchors of docs/runbook.md's headings, as GitHub and most renderers make them."""
    anchors = set()
    for line in (REPO / "docs" / "runbook.md").read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return anchors


def test_every_alert_says_what_it_means_and_where_its_runbook_section_is():
    anchors = runbook_anchors()
    assert "teddybrokerdown" in anchors  # the reader sees the headings at all
    for rule in rules():
        annotations = rule.get("annotations", {})
        missing = {"summary", "description", "runbook_url"} - set(annotations)
        assert not missing, f"{rule['alert']} has no {sorted(missing)}"
        url = annotations["runbook_url"]
        assert re.fullmatch(r"https://teddy\.example\.com/docs/runbook\.md#[a-z0-9-]+", url), url
        assert url.split("#", 1)[1] in anchors, f"{rule['alert']}: {url} has no section"
    text = (REPO / "docs" / "runbook.md").read_text()
    for rule in rules():  # each section says how to confirm and what to do, as commands
        section = text.split(f"## {rule['alert']}\n", 1)[1].split("\n## ", 1)[0]
        assert "Confirm" in section and "Do" in section and "```sh" in section, rule["alert"]


def test_the_shipped_prometheus_config_scrapes_where_the_shipped_services_listen():
    """Targets of ``prometheus.yml`` = the shipped bind address (``cloud.metrics_host``'s
    default) and ports: ``cloud.toml``'s ``metrics_port`` + N for ingest@N, the notifier's
    ``metrics_port``, the broker exporter unit's ``--port``, the node exporter's default;
    and every job a rule names is scraped."""
    import tomllib

    from config.settings import Settings

    host = Settings().cloud.metrics_host
    cloud_toml = (REPO / "config" / "examples" / "cloud.toml").read_text()
    base = tomllib.loads(cloud_toml)["cloud"]["metrics_port"]
    notify_port = int(re.search(r"^# metrics_port = (\d+)", cloud_toml, re.MULTILINE)[1])
    unit = (REPO / "systemd" / "teddy-cloud-broker-metrics.service").read_text()
    broker_port = int(re.search(r"broker-metrics --port (\d+)", unit)[1])
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
            for job in config["scrape_configs"]}
    assert jobs["teddy-ingest"] == [f"{host}:{base + 1}", f"{host}:{base + 2}"]
    assert jobs["teddy-notify"] == [f"{host}:{notify_port}"]
    assert jobs["teddy-broker"] == [f"{host}:{broker_port}"]
    assert jobs["node"] == [f"{host}:9100"]
    named = set(re.findall(r'job="([^"]+)"', (PROM / "teddy-rules.yml").read_text()))
    assert named <= set(jobs), named - set(jobs)
    check = subprocess.run([promtool(), "check", "config", "--syntax-only", "prometheus.yml"],
                           cwd=PROM, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def test_every_expression_of_the_rules_and_dashboards_parses(tmp_path):
    exprs = rule_exprs() + dashboard_exprs()
    assert len(DASHBOARDS) == 3 and len(dashboard_exprs()) >= 20
    rules = {"groups": [{"name": "syntax", "rules": [
        {"record": f"teddy_check:expr_{n}", "expr": expr} for n, expr in enumerate(exprs)]}]}
    path = tmp_path / "all-exprs.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    path.write_text(yaml.safe_dump({"groups": [{"name": "bad", "rules": [
        {"record": "teddy_check:bad", "expr": "sum(rate(teddy_ingest_messages_total[5m])"}]}]}))
    broken = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert broken.returncode != 0  # the check can fail


def exported_names(text: str) -> set[str]:
    """Metric names a scrape exports: every sample's name, and every family's TYPE line
    (a labelled family with no series yet still says it exists), with histogram suffixes."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def _answers(port: int) -> bool:
    try:
        return bool(scrape(port))
    except OSError:
        return False


@pytest.fixture
def http():
    receiver = HttpReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


def test_every_metric_the_rules_and_dashboards_use_is_exported_by_a_real_scrape(
        broker, database, env, tmp_path, http):
    ingest_port, notify_port, broker_port, node_port = (free_port() for _ in range(4))
    config = tmp_path / "notify.toml"
    config.write_text(
        f'[cloud]\npg_dsn = "{database.dsn}"\n[notify]\npoll_interval_s = 0.2\n'
        f'metrics_port = {notify_port}\n[notify.channels.ops]\ntype = "webhook"\n'
        f'url = "{http.url}/hook"\nsecret = "s"\nmin_severity = "info"\n')
    processes = []
    try:
        processes.append(start_cli("teddy-cloud", "--log-level", "INFO", "ingest", log=(
            tmp_path / "ingest.log"), env=dict(env, TEDDY_CLOUD__METRICS_PORT=str(ingest_port))))
        wait_for_log(tmp_path / "ingest.log", "ingesting")
        notify_env = {k: v for k, v in env.items() if k != "TEDDY_CLOUD__PG_DSN"}
        processes.append(start_cli("teddy-cloud", "--log-level", "INFO", "notify", "run",
                                   log=tmp_path / "notify.log",
                                   env=dict(notify_env, TEDDY_CONFIG=str(config))))
        processes.append(start_cli("teddy-cloud", "--log-level", "INFO", "broker-metrics",
                                   "--port", str(broker_port), log=tmp_path / "broker.log",
                                   env=dict(env, TEDDY_MQTT__PORT=str(broker.port))))
        node_exporter = shutil.which("prometheus-node-exporter")
        assert node_exporter, "apt-get install prometheus-node-exporter (scripts/setup --test)"
        processes.append(subprocess.Popen(
            [node_exporter, f"--web.listen-address=127.0.0.1:{node_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        run_cli("teddy-sim", "fleet", "--devices", "2", "--turns", "3", "--prefix", "prom",
                "--workdir", str(tmp_path / "fleet"),
                env=dict(env, TEDDY_SYNC__BATCH_MAX_AGE="0.1"), timeout=120)
        with database.connect() as conn:
            conn.execute("INSERT INTO alerts (device_id, kind, severity, message, raised_at) "
                         "VALUES ('prom-00000', 'system.disk_low', 'high', 'x', now())")
        wait_until(lambda: http.at("/hook"), 30,
                   lambda: f"the webhook call: {(tmp_path / 'notify.log').read_text()}")
        wait_for_log(tmp_path / "notify.log", "fleet metrics on")
        with database.connect() as conn:
            devices = conn.execute("SELECT count(*) FROM devices").fetchone()[0]
        fleet = scrape(notify_port)  # the first scrape: the collector's cache is fresh
        wait_for_log(tmp_path / "broker.log", "broker metrics on")
        wait_until(lambda: "teddy_broker_up 1.0" in scrape(broker_port), 30,
                   lambda: (tmp_path / "broker.log").read_text())
        wait_until(lambda: _answers(node_port), 30, "the node exporter")
        exported = (exported_names(scrape(ingest_port)) | exported_names(fleet)
                    | exported_names(scrape(broker_port)) | exported_names(scrape(node_port)))
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
            process.wait(15)
    used = set().union(*(metric_names(e) for e in rule_exprs() + dashboard_exprs()))
    assert used - exported - SYNTHETIC == set(), sorted(used - exported - SYNTHETIC)
    assert 'teddy_fleet_open_alerts{kind="system.disk_low",severity="high"} 1.0' in fleet
    bears = sum(float(line.rsplit(" ", 1)[1]) for line in fleet.splitlines()
                if line.startswith("teddy_fleet_bears{"))
    assert bears == devices >= 2  # the simulated bears are counted, online or not
    assert "teddy_fleet_db_up 1.0" in fleet
    assert "teddy_pg_archive_mode_on " in fleet
