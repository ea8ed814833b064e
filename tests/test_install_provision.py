"""``scripts/provision-device`` on an SD card's root: what the bear then loads is what it wrote."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agent.identity import device_id
from agent.store.keys import FileKeyProvider
from config.settings import load_settings

PROVISION = Path(__file__).resolve().parent.parent / "scripts" / "provision-device"


def card(tmp_path: Path, uid: int) -> Path:
    """A bear's root filesystem after install-pi: a passwd with teddy, an empty config."""
    root = tmp_path / f"card-{uid}"
    (root / "etc/teddy/credentials").mkdir(parents=True)
    (root / "var/lib/teddy").mkdir(parents=True)
    (root / "etc/passwd").write_text(
        f"root:x:0:0:root:/root:/bin/bash\nteddy:x:{uid}:{uid}::/var/lib/teddy:/sbin/nologin\n")
    (root / "etc/teddy/teddy.toml").write_text('[voice]\nmodel_path = "/opt/teddy/model"\n')
    return root


def provision(root: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PROVISION), "--root", str(root), *args],
                          capture_output=True, text=True, timeout=30, cwd=cwd)


def test_the_provisioned_bear_loads_its_identity_key_and_broker_credentials(
    tmp_path: Path,
) -> None:
    root = card(tmp_path, os.geteuid())  # the test plays the teddy user
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nfake\n")
    record_path = tmp_path / "record.json"
    result = provision(root, "--broker", "mqtt.example.invalid:8883", "--ca-file",
                       str(tmp_path / "ca.pem"), "--record", str(record_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads(record_path.read_text())
    assert stat.S_IMODE(record_path.stat().st_mode) == 0o600
    assert record["mqtt_password"] not in result.stdout and len(record["mqtt_password"]) >= 24

    state = root / "var/lib/teddy"
    settings = load_settings(
        root / "etc/teddy/teddy.toml",
        store={"data_dir": state},  # the card's /var/lib/teddy, seen from here
        mqtt={"password_file": root / "etc/teddy/credentials/mqtt-password",
              "host": "mqtt.example.invalid", "port": 8883, "username": record["device_id"],
              "tls": {"ca_file": root / "etc/teddy/ca.pem"}},
    )
    assert device_id(settings, create=False) == record["device_id"]
    assert (state / "device_id").read_text().strip() == record["device_id"]
    assert settings.mqtt.password.get_secret_value() == record["mqtt_password"]
    assert len(FileKeyProvider(state / "teddy.key").load()) == 32
    config = load_settings(root / "etc/teddy/teddy.toml", store={"data_dir": state})
    assert (config.mqtt.host, config.mqtt.port) == ("mqtt.example.invalid", 8883)
    assert config.mqtt.username == record["device_id"] and config.mqtt.password is None
    assert str(config.mqtt.tls.ca_file) == "/etc/teddy/ca.pem"
    assert str(config.voice.model_path) == "/opt/teddy/model"  # install-pi's keys are kept
    assert config.pairing.fleet_key is None  # no cloud bundle: no cloud keys either
    assert stat.S_IMODE((root / "etc/teddy/teddy.toml").stat().st_mode) == 0o644  # no secret


def test_files_belong_to_teddy_or_root_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    root = card(tmp_path, 4321)
    first = provision(root, "--device-id", "bear-test-01", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    owners = {path: (os.stat(root / path).st_uid, stat.S_IMODE(os.stat(root / path).st_mode))
              for path in ("var/lib/teddy/device_id", "var/lib/teddy/teddy.key",
                           "etc/teddy/credentials/mqtt-password", "etc/teddy/teddy.toml")}
    assert owners == {
        "var/lib/teddy/device_id": (4321, 0o600), "var/lib/teddy/teddy.key": (4321, 0o600),
        "etc/teddy/credentials/mqtt-password": (0, 0o600),
        "etc/teddy/teddy.toml": (0, 0o644),  # no secret in it (no shared claim password)
    }
    key_before = (root / "var/lib/teddy/teddy.key").read_bytes()
    record = root / "etc/teddy/credentials/bear-test-01.provision.json"
    record_before = json.loads(record.read_text())
    second = provision(root, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "writing" not in second.stdout and "0 files changed" in second.stdout
    assert (root / "var/lib/teddy/teddy.key").read_bytes() == key_before
    assert json.loads(record.read_text()) == record_before


def test_the_credentials_dir_is_root_only_and_the_secret_record_stays_in_it(
    tmp_path: Path,
) -> None:
    """Reproduces issue 15: the credentials dir was left 0755 and ``<id>.provision.json``
    (the broker password in the clear) was dropped into whatever directory one ran it in."""
    root = card(tmp_path, os.geteuid())
    creds = root / "etc/teddy/credentials"
    creds.chmod(0o755)  # as a plain mkdir (or an older provision-device) leaves it
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    result = provision(root, "--device-id", "bear-private-01", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert list(workdir.iterdir()) == []  # nothing secret where the operator stood
    assert stat.S_IMODE(creds.stat().st_mode) == 0o700
    assert (creds.stat().st_uid, creds.stat().st_gid) == (0, 0) or os.geteuid() != 0
    record = creds / "bear-private-01.provision.json"
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert json.loads(record.read_text())["device_id"] == "bear-private-01"
    assert "/etc/teddy/credentials/bear-private-01.provision.json" in result.stdout
    # an explicit --record that already exists with a loose mode is tightened, not kept
    loose = tmp_path / "loose.json"
    loose.write_text("{}")
    loose.chmod(0o644)
    again = provision(root, "--record", str(loose), cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600


def test_one_line_errors_name_the_way_out(tmp_path: Path) -> None:
    root = card(tmp_path, os.geteuid())
    assert provision(root, "--device-id", "bear-one", cwd=tmp_path).returncode == 0
    clash = provision(root, "--device-id", "bear-two", cwd=tmp_path)
    assert clash.returncode == 1 and "already 'bear-one'" in clash.stderr
    bad = provision(card(tmp_path / "b", os.geteuid()), "--device-id", "Bad_Id", cwd=tmp_path)
    assert bad.returncode == 1 and "lowercase letters" in bad.stderr
    bare = tmp_path / "bare"
    bare.mkdir()
    missing = provision(bare, cwd=tmp_path)
    assert missing.returncode == 1 and "run scripts/install-pi" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    root = card(tmp_path, os.geteuid())
    result = provision(root, "--dry-run", cwd=tmp_path)
    assert result.returncode == 0 and "would" in result.stdout
    assert not (root / "var/lib/teddy/device_id").exists()
    assert not list(tmp_path.glob("*.provision.json"))


def test_cloud_provisioned_bear_connects_to_a_password_protected_broker(
    tmp_path: Path, env: dict[str, str], database
) -> None:
    """teddy-cloud provision -> provision-device --from-cloud -> the bear's settings log in;
    the bear is registered as manufactured and holds the cloud's public keys."""
    from support.brokers import ShippedBroker

    from config.errors import SyncError
    from sync.client import MqttLink

    broker = ShippedBroker(tmp_path / "broker")
    broker.start()
    try:
        cloud_env = dict(env, TEDDY_MQTT__PORT=str(broker.port),
                         TEDDY_FLEET__BROKER_ADMIN_PASSWORD_FILE=str(broker.admin_password_file))
        from support.processes import run_cli
        run_cli("teddy-cloud", "fleet", "keygen", env=cloud_env)  # once per fleet
        made = subprocess.run(
            [str(Path(sys.executable).parent / "teddy-cloud"), "provision", "bear-frag-01",
             "--out", str(tmp_path / "out")],
            env=dict(env, TEDDY_MQTT__PORT=str(broker.port),
                     TEDDY_FLEET__BROKER_ADMIN_PASSWORD_FILE=str(broker.admin_password_file)),
            capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr
        root = card(tmp_path, os.geteuid())
        result = provision(root, "--from-cloud", str(tmp_path / "out/bear-frag-01.toml"),
                           "--broker", f"127.0.0.1:{broker.port}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "password" not in (root / "etc/teddy/teddy.toml").read_text()
        assert not list(tmp_path.glob("*.provision.json"))  # the cloud knows it all already
        settings = load_settings(  # as teddy-agent.service sees it, credential and all
            root / "etc/teddy/teddy.toml", store={"data_dir": root / "var/lib/teddy"},
            mqtt={"password_file": root / "etc/teddy/credentials/mqtt-password"})
        assert settings.device.id == "bear-frag-01"
        bundle = tomllib.loads((tmp_path / "out/bear-frag-01.toml").read_text())["pairing"]
        assert settings.pairing.fleet_key == bundle["fleet_key"]
        assert (settings.pairing.claim_key, settings.pairing.claim_verify_key) == (
            bundle["claim_key"], bundle["claim_verify_key"])
        with database.connect() as conn:
            assert conn.execute("SELECT manufactured_at IS NOT NULL FROM devices WHERE"
                                " device_id = 'bear-frag-01'").fetchone() == (True,)
        with MqttLink(settings.mqtt, "teddy-bear-frag-01") as link:
            link.connect()
            assert link.connected
        wrong = settings.mqtt.model_copy(update={"password": None})
        with MqttLink(wrong, "teddy-bear-frag-01") as link, pytest.raises(SyncError):
            link.connect()  # the broker really checks: no password, no entry
    finally:
        broker.kill()
