"""The fleet's command-signing key is made once, on purpose: ``teddy-cloud fleet keygen``.

A key silently minted wherever ``store.data_dir`` points would be a second key on a second
host, and every bear would reject that host's commands. So a missing key is one clear line
naming the file and the command, and nothing is written."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from support.processes import run_cli

from config.settings import Settings
from sync.cloud.fleet import FleetError, load_signing_key


def test_a_missing_key_names_the_file_and_the_command_and_mints_nothing(
        env, broker, database, tmp_path: Path) -> None:
    key = tmp_path / "keys" / "fleet-signing.key"
    env = dict(env, TEDDY_FLEET__SIGNING_KEY_FILE=str(key))
    with database.connect() as conn:
        conn.execute("INSERT INTO devices (device_id) VALUES ('bear-keyless') "
                     "ON CONFLICT DO NOTHING")
    result = run_cli("teddy-cloud", "fleet", "send", "bear-keyless", "ping", env=env, check=False)
    assert result.returncode != 0
    assert str(key) in result.stderr and "teddy-cloud fleet keygen" in result.stderr
    assert "Traceback" not in result.stderr
    assert not key.exists()


def test_keygen_makes_one_key_0600_and_refuses_to_replace_it(env, tmp_path: Path) -> None:
    key = tmp_path / "keys" / "fleet-signing.key"
    env = dict(env, TEDDY_FLEET__SIGNING_KEY_FILE=str(key))
    made = run_cli("teddy-cloud", "fleet", "keygen", env=env)
    assert str(key) in made.stdout and "public key" in made.stdout
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = key.read_bytes()
    again = run_cli("teddy-cloud", "fleet", "keygen", env=env, check=False)
    assert again.returncode != 0 and "already exists" in again.stderr
    assert key.read_bytes() == before
    settings = Settings(fleet={"signing_key_file": key})
    assert load_signing_key(settings).public_key() is not None


def test_the_default_path_under_the_data_dir_is_not_minted_either(tmp_path: Path) -> None:
    settings = Settings(store={"data_dir": tmp_path / "data"})
    with pytest.raises(FleetError, match="teddy-cloud fleet keygen"):
        load_signing_key(settings)
    assert not (tmp_path / "data" / "fleet-signing.key").exists()
