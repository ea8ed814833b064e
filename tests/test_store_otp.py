"""The store key sealed to the board (``agent.store.otp``), run as users run ``teddy``, on a
simulated Raspberry Pi: fake ``vcmailbox``/``rpi-otp-private-key`` executables on PATH
(tests/support/otp_board.py), so the real subprocess calls, parsing and errors are exercised.

A memory card moved to another board (another OTP secret) cannot open its store; the same
card in its own bear can. The file key stays the default for laptops and CI."""

from __future__ import annotations

import base64
import json
import os
import secrets

import pytest
from support.otp_board import fake_board, on_path, random_rows
from support.processes import run_cli

from agent.store.otp import SEALED_PREFIX

LINE = "my favourite dinosaur is the stegosaurus"
PROVIDERS = ["customer_otp", "private_key"]


def _board(tmp_path, name: str, provider: str, **kwargs):
    if provider == "customer_otp":
        return fake_board(tmp_path / name, customer=random_rows(), **kwargs)
    return fake_board(tmp_path / name, private=secrets.token_hex(32), **kwargs)


def _bear(env, bin_dir, provider: str) -> dict[str, str]:
    return on_path(dict(env, TEDDY_STORE__KEY_PROVIDER=f"agent.store.otp:{provider}"), bin_dir)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_card_moved_to_another_board_cannot_open_its_store(env, data_dir, tmp_path, provider):
    own = _bear(env, _board(tmp_path, "own", provider), provider)
    run_cli("teddy", "consent", "grant", "--parent", "Mum", env=own)
    run_cli("teddy", "chat", env=own, stdin=LINE + "\n")
    key_file = (data_dir / "teddy.key").read_bytes()
    assert key_file.startswith(SEALED_PREFIX)
    exported = run_cli("teddy", "store", "export", "--format", "text", env=own).stdout
    assert "stegosaurus" in exported

    thief = _bear(env, _board(tmp_path, "thief", provider), provider)  # same card, other Pi
    stolen = run_cli("teddy", "store", "export", env=thief, check=False)
    assert stolen.returncode != 0 and "stegosaurus" not in stolen.stdout
    lines = stolen.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not open with this board's OTP secret" in lines[0], lines
    plain = run_cli("teddy", "store", "export", env=env, check=False)  # as a file key
    assert plain.returncode != 0 and "stegosaurus" not in plain.stdout
    assert (data_dir / "teddy.key").read_bytes() == key_file  # nothing was rewritten
    assert "stegosaurus" in run_cli("teddy", "store", "export", "--format", "text",
                                    env=own).stdout  # back in its own bear: readable


def test_the_private_key_is_programmed_with_the_pi_tool_then_seals_the_key(env, data_dir,
                                                                           tmp_path):
    """The manufacture step of docs/operations.md, on the simulated board."""
    bin_dir = fake_board(tmp_path / "pi5")
    bear = _bear(env, bin_dir, "private_key")
    unset = run_cli("teddy", "consent", "grant", "--parent", "Mum", env=bear, check=False)
    assert unset.returncode != 0 and "not programmed" in unset.stderr
    assert "rpi-otp-private-key -w" in unset.stderr
    assert not (data_dir / "teddy.key").exists() and not (data_dir / "teddy.db").exists()
    tool = str(bin_dir / "rpi-otp-private-key")
    import subprocess

    subprocess.run([tool, "-w", secrets.token_hex(32), "-y"], env=bear, check=True, timeout=30)
    assert subprocess.run([tool, "-c"], env=bear, timeout=30).returncode == 0
    run_cli("teddy", "consent", "grant", "--parent", "Mum", env=bear)
    assert (data_dir / "teddy.key").read_bytes().startswith(SEALED_PREFIX)


def test_a_plain_key_file_is_sealed_at_first_load_and_rotation_keeps_it_sealed(env, data_dir,
                                                                              tmp_path):
    run_cli("teddy", "consent", "grant", "--parent", "Mum", env=env)  # the file key
    raw = base64.b64decode((data_dir / "teddy.key").read_bytes().strip())
    assert len(raw) == 32
    bear = _bear(env, _board(tmp_path, "pi4", "customer_otp"), "customer_otp")
    run_cli("teddy", "chat", env=bear, stdin=LINE + "\n")
    sealed = (data_dir / "teddy.key").read_bytes()
    assert sealed.startswith(SEALED_PREFIX) and base64.b64encode(raw) not in sealed
    run_cli("teddy", "keys", "rotate", env=bear)
    rotated = (data_dir / "teddy.key").read_bytes()
    assert rotated.startswith(SEALED_PREFIX) and rotated != sealed
    assert not (data_dir / "teddy.key.next").exists()
    shown = json.loads(run_cli("teddy", "consent", "show", env=bear).stdout)
    assert shown["parent"] == "Mum"
    assert "stegosaurus" in run_cli("teddy", "store", "export", env=bear).stdout


@pytest.mark.parametrize(("provider", "board", "expected"), [
    ("customer_otp", None, "vcmailbox is not installed (not on PATH)"),
    ("private_key", None, "rpi-otp-private-key is not installed (not on PATH)"),
    ("customer_otp", {"vcio": "denied"}, "vcmailbox failed (exit 1: Unable to open /dev/vcio"),
    ("customer_otp", {}, "is not programmed (all zeros)"),
], ids=["no-vcmailbox", "no-private-key-tool", "vcio-denied", "unprogrammed"])
def test_otp_problems_are_one_line_and_nothing_is_written(env, data_dir, tmp_path, provider,
                                                          board, expected):
    bear = dict(env, TEDDY_STORE__KEY_PROVIDER=f"agent.store.otp:{provider}")
    if board is not None:
        bear = on_path(bear, fake_board(tmp_path / "board", **board))
    result = run_cli("teddy", "consent", "grant", "--parent", "Mum", env=bear, check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (data_dir / "teddy.key").exists() and not (data_dir / "teddy.db").exists()


def test_the_file_key_stays_the_default_off_a_pi(env, data_dir):
    run_cli("teddy", "consent", "grant", "--parent", "Mum", env=env)
    content = (data_dir / "teddy.key").read_bytes()
    assert not content.startswith(SEALED_PREFIX)
    assert len(base64.b64decode(content.strip())) == 32


def test_the_fleet_credentials_key_is_sealed_to_the_board_too(tmp_path, monkeypatch):
    """The bear's broker login from pairing (``fleet.sealed``) is not readable from the card
    either: its key file is sealed like the store's."""
    from agent.credentials import CredentialVault, FleetCredentials
    from config.errors import KeyFileError
    from config.settings import StoreSettings

    store = StoreSettings(data_dir=tmp_path / "card", key_provider="agent.store.otp:private_key")
    own = fake_board(tmp_path / "own", private=secrets.token_hex(32))
    monkeypatch.setenv("PATH", on_path({"PATH": os.environ["PATH"]}, own)["PATH"])
    credentials = FleetCredentials("bear-otp-01", "bear-otp-01", "broker-pw-123456", b"k" * 32,
                                   1.0)
    CredentialVault(store).save(credentials)
    assert (tmp_path / "card" / "fleet.key").read_bytes().startswith(SEALED_PREFIX)
    assert CredentialVault(store).load().mqtt_password == "broker-pw-123456"
    thief = fake_board(tmp_path / "thief", private=secrets.token_hex(32))
    monkeypatch.setenv("PATH", on_path({"PATH": os.environ["PATH"]}, thief)["PATH"])
    with pytest.raises(KeyFileError, match="does not open with this board"):
        CredentialVault(store).load()
