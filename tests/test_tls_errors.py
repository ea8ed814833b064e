"""Errors an operator meets setting up TLS, as ``teddy`` prints them: a missing or unreadable
CA/certificate/key is caught by ``teddy config check`` and named in one line by ``teddy sync``;
a broker certificate from another CA is said to be that, not a host/port problem."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from support.brokers import Mosquitto
from support.processes import run_cli
from support.syncing import filled_store

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is missing")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(folder: Path, name: str) -> Path:
    """A throwaway CA ``<name>.pem`` (+ key) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
             f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=folder)
    return folder / f"{name}.pem"


def _broker_cert(folder: Path, ca: str) -> None:
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=broker", "-keyout",
             "broker.key", "-out", "broker.csr", cwd=folder)
    _openssl("x509", "-req", "-in", "broker.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-days", "1", "-extfile", "san.cnf", "-out", "broker.pem",
             cwd=folder)


@pytest.mark.parametrize("field", ["ca_file", "cert_file", "key_file"])
def test_config_check_names_a_missing_tls_file(env, tmp_path, field):
    present = _ca(tmp_path / "certs", "real-ca")
    files = {"ca_file": present, "cert_file": present, "key_file": present}
    files[field] = tmp_path / "nowhere" / f"{field}.pem"
    env = dict(env, **{f"TEDDY_MQTT__TLS__{k.upper()}": str(v) for k, v in files.items()})
    checked = run_cli("teddy", "config", "check", env=env, check=False)
    assert checked.returncode == 1, checked.stdout
    assert "config ok" not in checked.stdout
    lines = checked.stderr.strip().splitlines()
    assert len(lines) == 1, checked.stderr
    assert f"mqtt.tls.{field}" in lines[0] and str(files[field]) in lines[0]
    assert f"TEDDY_MQTT__TLS__{field.upper()}" in lines[0]  # the way out


def test_config_check_names_an_unreadable_ca_file(env, tmp_path):
    ca = tmp_path / "ca-dir"
    ca.mkdir()  # a directory where a file should be: cannot be read as a CA bundle
    env = dict(env, TEDDY_MQTT__TLS__CA_FILE=str(ca))
    checked = run_cli("teddy", "config", "check", env=env, check=False)
    assert checked.returncode == 1 and "mqtt.tls.ca_file" in checked.stderr
    good = dict(env, TEDDY_MQTT__TLS__CA_FILE=str(_ca(tmp_path / "certs", "real-ca")))
    assert run_cli("teddy", "config", "check", env=good).stdout.strip() == "config ok"


def test_sync_with_a_missing_ca_file_is_one_line_naming_the_field(env, data_dir, tmp_path):
    filled_store(data_dir, 2).close()
    env = dict(env, TEDDY_MQTT__TLS__CA_FILE=str(tmp_path / "missing-ca.pem"))
    result = run_cli("teddy", "sync", "--once", env=env, check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "FileNotFoundError" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "mqtt.tls.ca_file" in lines[0] and "missing-ca.pem" in lines[0]


def test_a_broker_certificate_from_another_ca_is_named_as_such(env, data_dir, tmp_path):
    certs = tmp_path / "certs"
    _ca(certs, "broker-ca")
    _broker_cert(certs, "broker-ca")
    other = _ca(certs, "other-ca")
    broker = Mosquitto(tmp_path / "tls-broker")
    broker.config.write_text(broker.config.read_text().replace(
        f"listener {broker.port} 127.0.0.1\n",
        f"listener {broker.port} 127.0.0.1\ncafile {certs}/broker-ca.pem\n"
        f"certfile {certs}/broker.pem\nkeyfile {certs}/broker.key\n") + "user root\n")
    broker.start()
    try:
        filled_store(data_dir, 2).close()
        env = dict(env, TEDDY_MQTT__PORT=str(broker.port), TEDDY_MQTT__TLS__CA_FILE=str(other),
                   TEDDY_MQTT__CONNECT_TIMEOUT="5")
        result = run_cli("teddy", "sync", "--once", env=env, check=False)
    finally:
        broker.kill()
    assert result.returncode != 0
    assert "TEDDY_MQTT__HOST" not in result.stderr, result.stderr
    assert "not signed by the CA in mqtt.tls.ca_file" in result.stderr, result.stderr
    assert str(other) in result.stderr
