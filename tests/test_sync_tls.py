"""TLS from config: the bear syncs over a TLS listener with the CA (and its own cert and
key) named in ``mqtt.tls``; without the CA it cannot connect at all."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from support.brokers import Mosquitto
from support.syncing import IngestProcess, assert_exactly_once, filled_store

from config.errors import SyncError
from config.settings import Settings
from sync.device import DeviceSync

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is missing")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _certificates(folder: Path) -> Path:
    """A throwaway CA, a broker certificate for 127.0.0.1 and a client certificate."""
    folder.mkdir(parents=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
             "/CN=teddy-test-ca", "-keyout", "ca.key", "-out", "ca.pem", cwd=folder)
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("broker", "bear"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=folder)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "1", "-extfile", "san.cnf", "-out", f"{name}.pem",
                 cwd=folder)
    return folder


def test_sync_over_mutual_tls(database, env, tmp_path):
    certs = _certificates(tmp_path / "certs")
    secure = Mosquitto(tmp_path / "tls-broker")
    secure.config.write_text(secure.config.read_text().replace(
        f"listener {secure.port} 127.0.0.1\n",
        f"listener {secure.port} 127.0.0.1\ncafile {certs}/ca.pem\ncertfile {certs}/broker.pem\n"
        f"keyfile {certs}/broker.key\nrequire_certificate true\n") + "user root\n")
    secure.start()
    env = dict(env, TEDDY_MQTT__PORT=str(secure.port), TEDDY_MQTT__TLS__CA_FILE=f"{certs}/ca.pem",
               TEDDY_MQTT__TLS__CERT_FILE=f"{certs}/bear.pem",
               TEDDY_MQTT__TLS__KEY_FILE=f"{certs}/bear.key")
    ingest = IngestProcess(env, tmp_path).start()
    store = filled_store(tmp_path / "bear", 50)
    tls = {"ca_file": certs / "ca.pem", "cert_file": certs / "bear.pem",
           "key_file": certs / "bear.key"}
    try:
        plain = Settings(mqtt={"port": secure.port, "connect_timeout": 3})
        with pytest.raises(SyncError):
            DeviceSync(plain, store, "bear-tls", "t").connect()
        settings = Settings(mqtt={"port": secure.port, "tls": tls}, sync={"ack_timeout": 2})
        with DeviceSync(settings, store, "bear-tls", "t") as link:
            link.connect()
            assert link.sync_once(30).turns_acked == 50
    finally:
        store.close()
        ingest.stop()
        secure.kill()
    assert_exactly_once(database, "bear-tls", tmp_path / "bear", 50)
