"""Fixtures: real brokers, real databases, and a clean environment for each bear."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from support import Mosquitto, migrated_database, start_cli, wait_for_log

_CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("TEDDY_")}


@pytest.fixture(autouse=True)
def _no_teddy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never inherit the developer's TEDDY_* settings."""
    for key in list(os.environ):
        if key.startswith("TEDDY_") and key != "TEDDY_TEST_PG_DSN":
            monkeypatch.delenv(key)


@pytest.fixture
def broker(tmp_path: Path):
    """A Mosquitto of the test's own on a free port (anonymous allowed)."""
    mosquitto = Mosquitto(tmp_path / "broker")
    mosquitto.start()
    yield mosquitto
    mosquitto.kill()


@pytest.fixture(scope="session")
def database():
    """A throwaway PostgreSQL database with the schema migrated, for the whole session."""
    with migrated_database() as db:
        yield db


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """The bear's data dir for one test."""
    return tmp_path / "bear"


@pytest.fixture
def env(data_dir: Path, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """Environment for running teddy and teddy-cloud as subprocesses."""
    variables = dict(_CLEAN_ENV)
    variables.update({
        "TEDDY_STORE__DATA_DIR": str(data_dir),
        "TEDDY_SYNC__ACK_TIMEOUT": "2",
        "TEDDY_SYNC__ONCE_TIMEOUT": "30",
        "TMPDIR": str(tmp_path),
    })
    if "broker" in request.fixturenames:
        variables["TEDDY_MQTT__PORT"] = str(request.getfixturevalue("broker").port)
    if "database" in request.fixturenames:
        variables["TEDDY_CLOUD__PG_DSN"] = request.getfixturevalue("database").dsn
    return variables


@pytest.fixture
def ingest(env: dict[str, str], tmp_path: Path, broker, database):
    """A running ``teddy-cloud ingest`` (a real subprocess), stopped with SIGTERM after."""
    log = tmp_path / "ingest.log"
    process = start_cli("teddy-cloud", "--log-level", "INFO", "ingest", env=env, log=log)
    wait_for_log(log, "ingesting")
    yield process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(15)
