"""Fixtures of the pairing, command and fleet tests (``pytest_plugins = ["fleet_fixtures"]``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fleet_support import SecureBroker, bear_settings, cloud_settings

from config.settings import Settings


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

