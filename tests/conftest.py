"""The fixtures the tests share, each declared once: a clean environment, real brokers and
databases, a bear's store, the safety filter, the Korean Vosk model, and the fleet (an
authenticating broker, the cloud's and a manufactured bear's settings, simulated GPIO)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from support.brokers import Mosquitto
from support.database import migrated_database
from support.fleet import SecureBroker, bear_settings, cloud_settings
from support.processes import start_cli, wait_for_log

from config.settings import Settings, load_settings

_CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("TEDDY_")}


@pytest.fixture(autouse=True)
def _no_teddy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never inherit the developer's TEDDY_* settings."""
    for key in list(os.environ):
        if key.startswith("TEDDY_") and key != "TEDDY_TEST_PG_DSN":
            monkeypatch.delenv(key)


@pytest.fixture(autouse=True)
def _no_cloud_key_left_over():
    """A cloud keyring a test installed (the parent app's, with its tmp key) is not the next
    test's: without this a later in-process pairing would seal parents' addresses under a
    key of a test long gone (sync/cloud/emails.py)."""
    yield
    from sync.cloud import family_keys

    family_keys._installed = None


@pytest.fixture
def broker(tmp_path: Path):
    """A Mosquitto of the test's own on a free port (anonymous allowed)."""
    mosquitto = Mosquitto(tmp_path / "broker")
    mosquitto.start()
    yield mosquitto
    mosquitto.kill()


@pytest.fixture
def pool(database):
    """A connection pool of the parent app on the session's database."""
    from support.portal import settings_of

    from sync.cloud import db

    pool = db.open_pool(settings_of({"cloud": {"pg_dsn": database.dsn}}).cloud)
    yield pool
    pool.close()


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


# --- a bear's store ---------------------------------------------------------------------------

@pytest.fixture
def store_settings(data_dir: Path) -> Settings:
    """Settings of a bear whose store lives in ``data_dir`` (no store made yet)."""
    return load_settings(store={"data_dir": data_dir})


@pytest.fixture
def empty_store(store_settings: Settings):
    """A new encrypted store, nobody's consent in it yet."""
    from agent.store import ConversationStore

    with ConversationStore.open(store_settings.store, create=True) as opened:
        yield opened


@pytest.fixture
def store(store_settings: Settings):
    """A new encrypted store where Mum consented to keep and sync."""
    from agent.store import ConversationStore, Scope

    with ConversationStore.open(store_settings.store, create=True) as opened:
        opened.grant_consent("Mum", [Scope.KEEP, Scope.SYNC])
        yield opened


@pytest.fixture
def consented_settings(store_settings: Settings) -> Settings:
    """``store_settings`` of a store made with Mum's consent and closed again (for tests that
    open it in other processes)."""
    from agent.store import ConversationStore, Scope

    with ConversationStore.open(store_settings.store, create=True) as opened:
        opened.grant_consent("Mum", [Scope.KEEP, Scope.SYNC])
    return store_settings


# --- the safety filter and the voice -----------------------------------------------------------

@pytest.fixture(scope="session")
def safety():
    """The bear's safety filter (built once, as the bear builds it)."""
    from agent.safety import default_filter

    return default_filter()


@pytest.fixture(scope="session")
def semantic_safety(safety):
    """The safety filter, required to have its semantic stage (``scripts/setup`` installs the
    model)."""
    assert safety.stages == "rules+semantic", "scripts/setup installs the model"
    return safety


@pytest.fixture(scope="module")
def vosk_model():
    """The small Korean Vosk model, loaded once per module."""
    from support.audio import korean_model

    from agent.voice.recognizer import load_model

    return load_model(korean_model(), 16000)


# --- the fleet ---------------------------------------------------------------------------------

@pytest.fixture
def secure_broker(tmp_path: Path):
    """An authenticating Mosquitto of the test's own."""
    broker = SecureBroker(tmp_path / "broker")
    broker.start()
    yield broker
    broker.kill()


@pytest.fixture
def cloud(secure_broker: SecureBroker, database, tmp_path: Path) -> Settings:
    """The cloud's settings, in-process."""
    return cloud_settings(secure_broker, database.dsn, tmp_path)


@pytest.fixture
def bear(cloud: Settings, database, data_dir: Path) -> Settings:
    """A new bear's settings, made at manufacture (registered, own login, cloud keys)."""
    return bear_settings(cloud, database, data_dir)


@pytest.fixture
def pins():
    """gpiozero's MockFactory with PWM pins (the simulated twin of the Pi's GPIO)."""
    from hardware.pins import make_pin_factory

    factory = make_pin_factory(Settings().pins)
    yield factory
    factory.close()


@pytest.fixture
def smtp():
    """A local SMTP server capturing what the parent app sends (sign-in links): its port and
    the list of messages received."""
    from support.brokers import free_port
    from support.receivers import start_smtp

    controller, sink = start_smtp(free_port(), None)
    yield controller.port, sink
    controller.stop()
