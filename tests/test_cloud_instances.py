"""``teddy-cloud-ingest@N`` instances side by side on one host, as the unit starts them:
the same cloud.toml, ``TEDDY_CLOUD__INSTANCE=N`` from ``%i``; each serves its metrics on
``cloud.metrics_port + N`` and both take their share of the bears' turns."""

from __future__ import annotations

import signal
import tomllib
import urllib.request
from pathlib import Path

import pytest
from support.brokers import free_port
from support.processes import run_cli, start_cli, wait_for_log

from config.errors import ConfigError
from config.settings import Settings, load_settings
from sync.cloud.cli import instance_settings

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "examples" / "cloud.toml"
UNIT = Path(__file__).resolve().parent.parent / "systemd" / "teddy-cloud-ingest@.service"


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def _free_pair() -> int:
    """A base port whose +1 and +2 are free."""
    for _ in range(50):
        base = free_port()
        if base < 65000:
            try:
                import socket
                for offset in (1, 2):
                    with socket.socket() as sock:
                        sock.bind(("127.0.0.1", base + offset))
                return base
            except OSError:
                continue
    raise RuntimeError("no free port range")


def test_two_instances_run_side_by_side_and_share_the_turns(broker, database, env, tmp_path):
    base = _free_pair()
    config = tmp_path / "cloud.toml"
    config.write_text(f'[cloud]\npg_dsn = "{database.dsn}"\nmetrics_port = {base}\n')
    bears_env = dict(env, TEDDY_SYNC__BATCH_MAX_AGE="0.1", TEDDY_SYNC__BATCH_SIZE="2")
    env = {k: v for k, v in env.items() if k != "TEDDY_CLOUD__PG_DSN"}
    env["TEDDY_CONFIG"] = str(config)
    processes = []
    try:
        for n in (1, 2):
            log = tmp_path / f"ingest{n}.log"
            processes.append(start_cli(
                "teddy-cloud", "--log-level", "INFO", "ingest", log=log,
                env=dict(env, TEDDY_CLOUD__INSTANCE=str(n),
                         TEDDY_CLOUD__CLIENT_ID=f"ingest-test-{n}")))
            wait_for_log(log, "ingesting")
        for n, process in enumerate(processes, 1):
            assert process.poll() is None, (tmp_path / f"ingest{n}.log").read_text()
        result = run_cli("teddy-sim", "fleet", "--devices", "8", "--turns", "10",
                         "--prefix", "inst", "--workdir", str(tmp_path / "fleet"),
                         env=bears_env, timeout=120)
        assert "postgresql: 80 rows, 80 distinct (device_id, seq)" in result.stdout
        rows = [_scrape(base + n).get("teddy_ingest_turn_rows_total", 0.0) for n in (1, 2)]
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(15)
    assert sum(rows) == 80 and min(rows) > 0, rows
    assert "Address already in use" not in (tmp_path / "ingest2.log").read_text()


def test_the_instance_offsets_the_metrics_port_and_refuses_past_65535():
    settings = instance_settings(Settings(cloud={"metrics_port": 9410, "instance": 3}))
    assert settings.cloud.metrics_port == 9413
    assert instance_settings(Settings(cloud={"metrics_port": 0, "instance": 3})
                             ).cloud.metrics_port == 0
    assert instance_settings(Settings(cloud={"metrics_port": 9410})).cloud.metrics_port == 9410
    with pytest.raises(ConfigError, match="cloud.metrics_port"):
        instance_settings(Settings(cloud={"metrics_port": 65535, "instance": 1}))
    with pytest.raises(ConfigError, match="cloud.instance"):
        load_settings(cloud={"instance": "blue"})


def test_the_unit_sets_the_instance_from_its_name():
    assert "Environment=TEDDY_CLOUD__INSTANCE=%i" in UNIT.read_text().splitlines()


def test_the_shipped_cloud_toml_loads_and_holds_no_secret(tmp_path):
    data = tomllib.loads(EXAMPLE.read_text())
    assert "password" not in data["mqtt"] and "@" in data["cloud"]["pg_dsn"]
    assert ":" not in data["cloud"]["pg_dsn"].split("//")[1].split("@")[0]  # no user:password
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    data["mqtt"]["tls"]["ca_file"] = str(ca)
    settings = Settings(**data)
    # no login in the shared file: each ingest@N unit logs in as its own svc.ingest-N
    assert settings.cloud.metrics_port == 9410 and settings.mqtt.username is None
    assert "Environment=TEDDY_MQTT__USERNAME=svc.ingest-%i" in UNIT.read_text().splitlines()


def test_a_taken_metrics_port_is_one_line_naming_the_setting(database, env, tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("teddy-cloud", "ingest", check=False, timeout=60,
                         env=dict(env, TEDDY_CLOUD__METRICS_PORT=str(port)))
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") or "metrics port" in lines[-1], result.stderr
    assert f"127.0.0.1:{port} is already in use" in lines[-1]
    assert "cloud.metrics_port" in lines[-1] and "Traceback" not in result.stderr
