"""Past one broker, for real: a core Mosquitto (TLS listener for the edges' bridges, a plain
loopback one for the cloud services) and edge Mosquittos made from the shipped
``config/examples/edge-broker.conf``, each bridged to the core; and simulated bears, each
with its own broker account, spread over the edges (``fleetsim``)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import subprocess
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from support import Mosquitto, free_port

from config.settings import Settings
from fleetsim.fleet import FleetResult
from fleetsim.fleet import run_spread_fleet as run_fleetsim

ROOT = Path(__file__).resolve().parents[1]
EDGE_EXAMPLE = ROOT / "config" / "examples" / "edge-broker.conf"
CLOUD_PASSWORD = secrets.token_urlsafe(16)

EDGE_ACL = """\
pattern write teddy/v1/%u/up/#
pattern read teddy/v1/%u/down/#
"""
"""The ACL of every edge: the shipped ``config/examples/acl`` patterns."""


def core_acl(edges: int) -> str:
    """The core's ACL: the cloud user, one bridge account per edge, bears' patterns."""
    bridges = "".join(
        f"user edge-{n}\ntopic write teddy/v1/+/up/#\ntopic read teddy/v1/+/down/#\n"
        f"topic write teddy/v1/claim/+/up/#\ntopic read teddy/v1/claim/+/down/#\n"
        for n in range(1, edges + 1))
    return "user cloud\ntopic readwrite teddy/#\n\n" + bridges + "\n" + EDGE_ACL


def bear_password(secret: str, device_id: str) -> str:
    """The password of a simulated bear's account (derived, so worker processes know it)."""
    return hmac.new(secret.encode(), device_id.encode(), hashlib.sha256).hexdigest()[:32]


def write_accounts(path: Path, accounts: dict[str, str]) -> None:
    """A Mosquitto password file with ``accounts`` (mosquitto_passwd's 101 iterations)."""
    lines = [f"{user}:{_password_hash(password)}"
             for user, password in accounts.items()]
    path.write_text("\n".join(lines) + "\n")


def certificates(folder: Path, edges: int) -> Path:
    """A throwaway CA, a core certificate for 127.0.0.1 (``core.pem/key``) and one client
    certificate per edge (``edge-N.pem/key``, CN ``edge-N``: its account on the core)."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True,
                       timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
            "/CN=teddy-edge-test-ca", "-keyout", "ca.key", "-out", "ca.pem")
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("core", *(f"edge-{n}" for n in range(1, edges + 1))):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout",
                f"{name}.key", "-out", f"{name}.csr")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "1", "-extfile", "san.cnf", "-out", f"{name}.pem")
    return folder


class CoreBroker(Mosquitto):
    """The core: cloud services on the plain loopback listener, edges' bridges over TLS.
    With ``bears``, it also takes bears directly (the single-broker comparison)."""

    def __init__(self, workdir: Path, certs: Path, edges: int,
                 bears: dict[str, str] | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.passwd, self.acl = workdir / "passwd", workdir / "acl"
        accounts = {"cloud": CLOUD_PASSWORD, **(bears or {})}
        write_accounts(self.passwd, accounts)
        self.acl.write_text(core_acl(edges))
        self.tls_port = free_port()
        super().__init__(workdir, anonymous=False, extra_config=(
            f"password_file {self.passwd}\nacl_file {self.acl}\nuser root\n"
            "max_inflight_messages 100\nmax_packet_size 1048576\n"
            f"listener {self.tls_port} 127.0.0.1\ncafile {certs}/ca.pem\n"
            f"certfile {certs}/core.pem\nkeyfile {certs}/core.key\ntls_version tlsv1.2\n"
            "require_certificate true\nuse_identity_as_username true\n"))


def edge_config(workdir: Path, port: int, number: int, core: CoreBroker, certs: Path) -> str:
    """The shipped edge config with this machine's paths, ports and names put in. The bears'
    listener is plain TCP on loopback here (3,000 TLS handshakes would measure RSA, not the
    bridge); the bridge to the core is TLS, as shipped."""
    text = EDGE_EXAMPLE.read_text()
    swaps = {
        "/etc/mosquitto/passwd": str(workdir / "passwd"),
        "/etc/mosquitto/acl": str(workdir / "acl"),
        "/run/mosquitto/mosquitto.pid": str(workdir / "mosquitto.pid"),
        "/var/lib/mosquitto/": f"{workdir}/",
        "listener 8883\n": f"listener {port} 127.0.0.1\n",
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
    lines = [line for line in text.splitlines() if not line.startswith(bear_tls)]
    return "log_dest stderr\nuser root\n" + "\n".join(lines) + "\n"


class EdgeBroker(Mosquitto):
    """An edge from the shipped config: bear accounts + the bears' ACL, bridged to ``core``."""

    def __init__(self, workdir: Path, number: int, core: CoreBroker, certs: Path,
                 bears: dict[str, str]) -> None:
        super().__init__(workdir)
        self.number = number
        write_accounts(workdir / "passwd", bears)
        (workdir / "acl").write_text(EDGE_ACL)
        self.config.write_text(edge_config(workdir, self.port, number, core, certs))


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


def make_edge_fleet(workdir: Path, edges: int, bears: dict[str, str],
                    direct_bears: bool = False) -> EdgeFleet:
    """A core and ``edges`` edges in ``workdir`` (not started); every edge knows every bear
    account (as when one password file is copied to each edge)."""
    certs = certificates(workdir / "certs", edges)
    core = CoreBroker(workdir / "core", certs, edges, bears if direct_bears else None)
    return EdgeFleet(core, [EdgeBroker(workdir / f"edge-{n}", n, core, certs, bears)
                            for n in range(1, edges + 1)])


def cloud_env(base: dict[str, str], core: CoreBroker) -> dict[str, str]:
    """``teddy-cloud`` as the cloud user on the core's loopback listener."""
    return dict(base, TEDDY_MQTT__PORT=str(core.port), TEDDY_MQTT__USERNAME="cloud",
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


def _password_hash(password: str) -> str:
    """A Mosquitto password-file hash (``$7$``, PBKDF2-SHA512, as ``mosquitto_passwd``): the
    edges in these tests keep a password file (their accounts are copied from the core's
    provisioning; see docs/operations.md, "Past one broker")."""
    import base64
    import hashlib
    import os

    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101, 64)
    return f"$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
