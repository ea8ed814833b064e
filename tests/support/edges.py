"""Past one broker, for real: a core Mosquitto (TLS listener for the edges' bridges, a plain
loopback one for the cloud services) and edge Mosquittos made from the shipped
``config/examples/edge-broker.conf``, each bridged to the core; and simulated bears, each
with its own broker account, spread over the edges (one ``Simulation`` per process)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from config.settings import Settings
from support.brokers import Mosquitto, free_port
from support.paths import ROOT
from sync.cloud.simulate import (
    BEARS_PER_PROCESS,
    Latencies,
    SimulatedBear,
    Simulation,
    SimulationReport,
    _merge,
)

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

class AccountSimulation(Simulation):
    """A :class:`Simulation` whose bears log in as themselves (user name = device id)."""

    def __init__(self, settings: Settings, workdir: Path, devices: int, prefix: str,
                 first_index: int, secret: str) -> None:
        super().__init__(settings, workdir, devices, prefix, first_index)
        self._secret = secret

    def start(self, connect_timeout: float = 60.0) -> int:
        """Make every bear (its own account) and connect it; returns how many connected."""
        import time
        from concurrent.futures import ThreadPoolExecutor

        def make(index: int) -> SimulatedBear:
            device_id = f"{self._prefix}-{self._first + index:05d}"
            mqtt = self._settings.mqtt.model_copy(update={
                "username": device_id,
                "password": SecretStr(bear_password(self._secret, device_id))})
            return SimulatedBear(self._settings.model_copy(update={"mqtt": mqtt}), device_id,
                                 self._workdir, self.latencies)

        with ThreadPoolExecutor(max_workers=16) as pool:
            self.bears.extend(pool.map(make, range(self._count)))
        for bear in self.bears:
            bear.start(self._stop)
        deadline = time.monotonic() + connect_timeout
        while time.monotonic() < deadline and self.connected() < len(self.bears):
            time.sleep(0.1)
        return self.connected()


def bear_ids(prefix: str, count: int) -> list[str]:
    """The device ids a fleet of ``count`` bears with ``prefix`` gets."""
    return [f"{prefix}-{index:05d}" for index in range(count)]


def _worker(settings: Settings, workdir: Path, count: int, prefix: str, first: int,
            turns: int, timeout: float, secret: str, barrier: Any, results: Any) -> None:
    with AccountSimulation(settings, workdir, count, prefix, first, secret) as simulation:
        connected = simulation.start(connect_timeout=600)
        barrier.wait(900)
        at_once = simulation.connected()
        report = simulation.drive(turns, None, timeout)
        report.max_connected = max(report.max_connected, at_once, connected)
        unsynced = sum(1 for bear in simulation.bears if bear.store.outbox_depth())
        results.put((report, simulation.latencies.values, unsynced))


@dataclass
class FleetResult:
    """What a fleet over several brokers did."""

    report: SimulationReport
    """Merged report of every process."""
    bears_with_unsynced_outbox: int
    """Bears whose outbox still held turns at the end."""


def run_spread_fleet(brokers: list[Settings], workdir: Path, devices: int, turns: int,
                     timeout: float, prefix: str, secret: str) -> FleetResult:
    """``devices`` bears (up to BEARS_PER_PROCESS a process), process groups dealt round
    the ``brokers`` in turn; each appends ``turns`` once every process has connected."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    groups = [(first, min(BEARS_PER_PROCESS, devices - first))
              for first in range(0, devices, BEARS_PER_PROCESS)]
    barrier, results = context.Barrier(len(groups)), context.Queue()
    workers = [context.Process(target=_worker, daemon=True, args=(
        brokers[index % len(brokers)], workdir, count, prefix, first, turns, timeout, secret,
        barrier, results)) for index, (first, count) in enumerate(groups)]
    for worker in workers:
        worker.start()
    merged, latencies, unsynced = SimulationReport(), Latencies(), 0
    for _ in workers:
        report, values, left = results.get(timeout=timeout + 1200)
        _merge(merged, report)
        latencies.values.extend(values)
        unsynced += left
    for worker in workers:
        worker.join(60)
    merged.p50, merged.p99 = latencies.percentile(50), latencies.percentile(99)
    return FleetResult(merged, unsynced)


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
