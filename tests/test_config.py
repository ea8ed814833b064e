"""Settings: file, environment, and the one-line errors of `teddy config check`."""

from __future__ import annotations

import pytest
from support import run_cli

from config.errors import ConfigError
from config.settings import load_settings


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    path = tmp_path / "teddy.toml"
    path.write_text('[mqtt]\nport = 1999\nhost = "broker.example"\n')
    monkeypatch.setenv("TEDDY_MQTT__PORT", "2000")
    settings = load_settings(path)
    assert (settings.mqtt.host, settings.mqtt.port) == ("broker.example", 2000)


def test_unknown_key_and_bad_value_are_named(tmp_path):
    path = tmp_path / "teddy.toml"
    path.write_text('[mqtt]\nprot = 1\n[dialogue]\nage_band = "4"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert "mqtt.prot" in str(caught.value) and "dialogue.age_band" in str(caught.value)


def test_config_check_prints_each_invalid_field(tmp_path, env):
    path = tmp_path / "teddy.toml"
    path.write_text('[mqtt]\nport = "abc"\n[device]\nid = "Bad Id!"\n')
    result = run_cli("teddy", "--config", str(path), "config", "check", env=env, check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert any(line.startswith("invalid: mqtt.port") for line in lines)
    assert any(line.startswith("invalid: device.id") for line in lines)


def test_config_check_accepts_defaults(env):
    result = run_cli("teddy", "config", "check", env=env)
    assert "config ok" in result.stdout


def test_missing_config_file_is_one_clear_line(env, tmp_path):
    result = run_cli("teddy", "--config", str(tmp_path / "nope.toml"), "chat", env=env,
                     stdin="", check=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "does not exist" in result.stderr


@pytest.mark.parametrize("program", ["teddy", "teddy-cloud"])
def test_help_lists_the_commands(program, env):
    out = run_cli(program, "--help", env=env).stdout
    expected = ["chat", "consent", "sync", "store", "config", "safety", "listen", "run"] \
        if program == "teddy" else ["migrate", "ingest"]
    for command in expected:
        assert command in out


def test_a_password_file_of_dash_is_the_first_line_of_standard_input(monkeypatch) -> None:
    """``mqtt.password_file = "-"``: root hands a root-only credential to a command run as
    another user on its stdin (docs/operations.md, "Check a bear on the bench"); read once,
    so loading the settings again gets the same password."""
    import io
    import sys

    import config.settings as settings_module

    monkeypatch.setattr(settings_module, "_STDIN_PASSWORD", [])
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret-line\nnot this one\n"))
    for _ in range(2):
        loaded = load_settings(mqtt={"password_file": "-"})
        assert loaded.mqtt.password.get_secret_value() == "s3cret-line"
