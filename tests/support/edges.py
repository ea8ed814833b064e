"""Past one broker, for real: a core Mosquitto from the shipped ``config/examples/mosquitto.conf``
(dynamic security; a TLS listener for the edges' bridges, a plain loopback one for the cloud
services) and edge Mosquittos made from the shipped ``config/examples/edge-broker.conf``
(dynamic security too, the same accounts and roles), each bridged to the core; and simulated
bears, each with its own broker account, spread over the edges (``fleetsim``)."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import subprocess
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from config.settings import Settings
from fleetsim.fleet import FleetResult
from fleetsim.fleet import run_spread_fleet as run_fleetsim
from support.brokers import Mosquitto, free_port, shipped_broker_config
from support.paths import ROOT
from sync.cloud.broker_accounts import (
    DEVICE_ROLE_PREFIX,
    INGEST_LANE_SUFFIX,
    SERVICE_ACLS,
    SERVICE_ROLE_PREFIX,
    device_acls,
    device_client_id,
)

EDGE_EXAMPLE = ROOT / "config" / "examples" / "edge-broker.conf"
CLOUD_USER = "svc.cloud"
"""The cloud services' account in these tests: the shipped ``ingest`` and ``fleet`` roles."""
CLOUD_PASSWORD = secrets.token_urlsafe(16)


def bear_password(secret: str, device_id: str) -> str:
    """The password of a simulated bear's account (derived, so worker processes know it)."""
    return hmac.new(secret.encode(), device_id.encode(), hashlib.sha256).hexdigest()[:32]


def certificates(folder: Path, edges: int) -> Path:
    """A throwaway CA, a core certificate for 127.0.0.1 (``core.pem/key``, also the edges'
    admin listeners'), the administrator's client certificate (``admin.pem/key``, CN
    ``svc.admin``) and one client certificate per edge (``edge-N.pem/key``, CN
    ``svc.edge-N``: its account on the core)."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True,
                       timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
            "/CN=teddy-edge-test-ca", "-keyout", "ca.key", "-out", "ca.pem")
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("core", "admin", *(f"edge-{n}" for n in range(1, edges + 1))):
        subject = "/CN=core" if name == "core" else f"/CN=svc.{name}"
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout",
                f"{name}.key", "-out", f"{name}.csr")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "1", "-extfile", "san.cnf", "-out", f"{name}.pem")
    return folder


def seed_accounts(dynsec_file: Path, bears: dict[str, str], edges: int) -> None:
    """Add to a ``broker-init`` dynamic-security file what ``teddy-cloud provision`` makes, in
    bulk (thousands of bears one command at a time would take minutes): every bear's client
    (bound to ``teddy-<id>``) and its own role, the edges' bridge accounts ``svc.edge-N``
    (certificate only, no password) and the cloud's ``svc.cloud`` (roles ingest and fleet).
    The roles are :mod:`sync.cloud.broker_accounts`'s own."""
    data = json.loads(dynsec_file.read_text())
    for device_id, password in bears.items():
        role = DEVICE_ROLE_PREFIX + device_id
        data["roles"].append({"rolename": role, "acls": device_acls(device_id)})
        data["clients"].append({"username": device_id, "clientid": device_client_id(device_id),
                                **_password_fields(password), "roles": [{"rolename": role}]})
    for name, acls in SERVICE_ACLS.items():
        data["roles"].append({"rolename": SERVICE_ROLE_PREFIX + name, "acls": acls})
    data["clients"] += [{"username": f"svc.edge-{n}",
                         "roles": [{"rolename": SERVICE_ROLE_PREFIX + "edge"}]}
                        for n in range(1, edges + 1)]
    data["clients"].append({"username": CLOUD_USER, **_password_fields(CLOUD_PASSWORD),
                            "roles": [{"rolename": SERVICE_ROLE_PREFIX + "ingest"},
                                      {"rolename": SERVICE_ROLE_PREFIX + "fleet"}]})
    lane = CLOUD_USER + INGEST_LANE_SUFFIX  # ingest's alert lane, as provisioning makes it
    data["clients"].append({"username": lane, "clientid": lane,
                            **_password_fields(CLOUD_PASSWORD),
                            "roles": [{"rolename": SERVICE_ROLE_PREFIX + "ingest"}]})
    dynsec_file.write_text(json.dumps(data, indent=1))


class CoreBroker(Mosquitto):
    """The core, from the shipped ``config/examples/mosquitto.conf`` (dynamic security):
    cloud services on its loopback listener, the edges' bridges on a mutual-TLS listener
    (``use_identity_as_username``: the certificate's CN is the account). Bears may connect
    to it directly too (the single-broker comparison)."""

    def __init__(self, workdir: Path, certs: Path, edges: int, bears: dict[str, str]) -> None:
        from sync.cloud.broker_init import init_broker

        workdir.mkdir(parents=True, exist_ok=True)
        self.dynsec_file = workdir / "dynamic-security.json"
        self.admin_password_file = workdir / "broker-admin-password"
        init_broker(self.dynsec_file, self.admin_password_file, owner=None)
        seed_accounts(self.dynsec_file, bears, edges)
        self.certs = certs
        self.tls_port = free_port()
        super().__init__(workdir)

    def auth_of_core(self):
        """The administrator's BrokerAuth of the core alone (a context manager)."""
        from sync.cloud.broker_accounts import broker_auth

        return broker_auth(Settings(mqtt={"port": self.port}, fleet={
            "broker_admin_password_file": self.admin_password_file}))

    def _config_text(self, extra_config: str, anonymous: bool) -> str:
        return shipped_broker_config(self.workdir, self.port) + (
            f"listener {self.tls_port} 127.0.0.1\ncafile {self.certs}/ca.pem\n"
            f"certfile {self.certs}/core.pem\nkeyfile {self.certs}/core.key\n"
            "tls_version tlsv1.2\nrequire_certificate true\nuse_identity_as_username true\n")


def edge_config(workdir: Path, port: int, number: int, core: CoreBroker, certs: Path,
                admin_port: int) -> str:
    """The shipped edge config with this machine's paths, ports and names put in. The bears'
    listener is plain TCP on loopback here (3,000 TLS handshakes would measure RSA, not the
    bridge); the bridge to the core is TLS, as shipped. Runs as root (its files are in the
    test's private folder)."""
    text = EDGE_EXAMPLE.read_text()
    swaps = {
        "/var/lib/mosquitto/dynamic-security.json": str(workdir / "dynamic-security.json"),
        "/run/mosquitto/mosquitto.pid": str(workdir / "mosquitto.pid"),
        "/var/lib/mosquitto/": f"{workdir}/",
        "user mosquitto\n": "user root\n",
        "log_dest file /var/log/mosquitto/mosquitto.log": "log_dest stderr",
        "listener 8883\n": f"listener {port} 127.0.0.1\n",
        "listener 8885 10.0.0.2\n": f"listener {admin_port} 127.0.0.1\n",
        "cafile /etc/mosquitto/certs/ca.pem\ncertfile /etc/mosquitto/certs/broker.pem\n"
        "keyfile /etc/mosquitto/certs/broker.key\ntls_version tlsv1.2\nrequire_certificate":
        f"cafile {certs}/ca.pem\ncertfile {certs}/core.pem\nkeyfile {certs}/core.key\n"
        "tls_version tlsv1.2\nrequire_certificate",
        "address core.teddy.example:8884": f"address 127.0.0.1:{core.tls_port}",
        "teddy-edge-1": f"teddy-edge-{number}",
        "/etc/mosquitto/certs/core-ca.pem": str(certs / "ca.pem"),
        "/etc/mosquitto/certs/edge.pem": str(certs / f"edge-{number}.pem"),
        "/etc/mosquitto/certs/edge.key": str(certs / f"edge-{number}.key"),
    }
    for old, new in swaps.items():
        if old not in text:
            raise AssertionError(f"{EDGE_EXAMPLE} no longer has {old!r}: update {__file__}")
        text = text.replace(old, new)
    bear_tls = ("cafile ", "certfile ", "keyfile ", "tls_version ")
    lines, in_bears = [], False
    for line in text.splitlines():  # the bears' listener only: the admin's stays TLS
        in_bears = line == f"listener {port} 127.0.0.1" or (in_bears and line != "")
        if not (in_bears and line.startswith(bear_tls)):
            lines.append(line)
    return "\n".join(lines) + "\n"


class EdgeBroker(Mosquitto):
    """An edge from the shipped config, its dynamic-security file the core's without service
    accounts (as docs/operations.md, "Add an edge", says), bridged to ``core``."""

    def __init__(self, workdir: Path, number: int, core: CoreBroker, certs: Path) -> None:
        super().__init__(workdir)
        self.number = number
        self.admin_port = free_port()
        """Its admin listener (mutual TLS, the administrator's certificate)."""
        self.url = f"mqtts://127.0.0.1:{self.admin_port}"
        """Its address in ``fleet.edge_brokers`` (the admin listener)."""
        from sync.cloud.edge_drift import edge_dynsec  # the core's, minus service accounts

        (workdir / "dynamic-security.json").write_text(json.dumps(
            edge_dynsec(json.loads(core.dynsec_file.read_text()))))
        self.config.write_text(edge_config(workdir, self.port, number, core, certs,
                                           self.admin_port))


@dataclass
class EdgeFleet:
    """A core and its edges, started and stopped together."""

    core: CoreBroker
    """The core broker."""
    edges: list[EdgeBroker]
    """The edge brokers."""

    def start(self) -> EdgeFleet:
        """Start the core, then every edge (whose bridges then connect)."""
        self.core.start()
        for edge in self.edges:
            edge.start()
        return self

    def kill(self) -> None:
        """SIGKILL every broker."""
        for broker in (*self.edges, self.core):
            broker.kill()

    def admin_env(self, base: dict[str, str]) -> dict[str, str]:
        """:meth:`admin_settings` as the environment of a ``teddy-cloud`` process."""
        fleet = self.admin_settings().fleet
        return dict(base, TEDDY_MQTT__PORT=str(self.core.port),
                    TEDDY_FLEET__BROKER_ADMIN_PASSWORD_FILE=str(self.core.admin_password_file),
                    TEDDY_FLEET__EDGE_BROKERS=json.dumps(fleet.edge_brokers),
                    TEDDY_FLEET__EDGE_CA_FILE=str(fleet.edge_ca_file),
                    TEDDY_FLEET__EDGE_ADMIN_CERT_FILE=str(fleet.edge_admin_cert_file),
                    TEDDY_FLEET__EDGE_ADMIN_KEY_FILE=str(fleet.edge_admin_key_file))

    def admin_settings(self, **sections: Any) -> Settings:
        """Settings of a ``teddy-cloud`` that provisions bears on the core and every edge."""
        certs = self.core.certs
        return Settings(mqtt={"port": self.core.port},
                        fleet={"broker_admin_password_file": self.core.admin_password_file,
                               "edge_brokers": [edge.url for edge in self.edges],
                               "edge_ca_file": certs / "ca.pem",
                               "edge_admin_cert_file": certs / "admin.pem",
                               "edge_admin_key_file": certs / "admin.key"},
                        **sections)


def make_edge_fleet(workdir: Path, edges: int, bears: dict[str, str],
                    direct_bears: bool = False) -> EdgeFleet:
    """A core and ``edges`` edges in ``workdir`` (not started). Every broker has every bear's
    account (the edges' files are copies of the core's), so bears may connect to any of them;
    ``direct_bears`` is kept for callers of the password-file days (the core always has them)."""
    certs = certificates(workdir / "certs", edges)
    core = CoreBroker(workdir / "core", certs, edges, bears)
    return EdgeFleet(core, [EdgeBroker(workdir / f"edge-{n}", n, core, certs)
                            for n in range(1, edges + 1)])


def cloud_env(base: dict[str, str], core: CoreBroker) -> dict[str, str]:
    """``teddy-cloud`` as the cloud services' account on the core's loopback listener."""
    return dict(base, TEDDY_MQTT__PORT=str(core.port), TEDDY_MQTT__USERNAME=CLOUD_USER,
                TEDDY_MQTT__PASSWORD=CLOUD_PASSWORD)


# --- simulated bears with their own accounts, spread over brokers ---------------------------

def bear_ids(prefix: str, count: int) -> list[str]:
    """The device ids a fleet of ``count`` bears with ``prefix`` gets."""
    return [f"{prefix}-{index:05d}" for index in range(count)]


def run_spread_fleet(brokers: list[Settings], workdir: Path, devices: int, turns: int,
                     timeout: float, prefix: str, secret: str,
                     senders: int | None = None) -> FleetResult:
    """``devices`` bears dealt round the ``brokers``, each logged in as itself with its
    :func:`bear_password`; the first ``senders`` (default: all) append ``turns`` each from
    their real stores, the rest hold idle connections (``fleetsim.fleet.run_spread_fleet``)."""
    return run_fleetsim(brokers, workdir, devices, turns, timeout, prefix,
                        password=partial(bear_password, secret), senders=senders)


def bear_accounts(prefix: str, count: int, secret: str) -> dict[str, str]:
    """Every simulated bear's account (user name = device id)."""
    return {device: bear_password(secret, device) for device in bear_ids(prefix, count)}


def _password_fields(password: str) -> dict[str, Any]:
    """A dynamic-security client's password fields, as ``mosquitto_ctrl`` writes them
    (PBKDF2-SHA512, 101 iterations, 12-byte salt, base64)."""
    import base64
    import os

    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101, 64)
    return {"password": base64.b64encode(digest).decode(),
            "salt": base64.b64encode(salt).decode(), "iterations": 101}
