"""``teddy-cloud setup`` installs a cloud host under a scratch root (a private PostgreSQL
cluster, a real Mosquitto started from the config setup wrote, pgBackRest), says what it did,
and says ``already done`` for every step on a re-run; ``teddy-cloud doctor`` is clean on it
with ingest running from setup's credentials, and names the one right problem when one thing
is broken at a time (the broker stopped, a certificate expiring, an account drifted, no
backup, ingest down)."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from support.brokers import connects, free_port
from support.pg_cluster import PG_BIN, PrivateCluster
from support.processes import run_cli, start_cli

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("mosquitto", "pgbackrest",
                                                          "openssl", "runuser"))
    or not (PG_BIN / "initdb").exists(),
    reason="a whole cloud host: root (PostgreSQL's own user), mosquitto, pgbackrest, openssl")


class Host:
    """The scratch root, its cluster, and its site file."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="teddy-setup-", dir="/var/tmp"))
        self.root.chmod(0o755)
        self.cluster = PrivateCluster().init(archive=False)
        self.cluster.start()
        self.metrics = free_port()
        conf = self.root / "etc/mosquitto/mosquitto.conf"
        self.pid_file = self.root / "run/mosquitto/mosquitto.pid"
        self.broker_port, self.tls_port = free_port(), free_port()
        restart = (f"if [ -s {self.pid_file} ]; then kill $(cat {self.pid_file}); "
                   f"while kill -0 $(cat {self.pid_file}) 2>/dev/null; do sleep 0.1; done; fi; "
                   f"mosquitto -d -c {conf}")
        pg_restart = (f"runuser -u postgres -- {PG_BIN}/pg_ctl -D {self.cluster.data} -w "
                      f"-l {self.cluster.log} restart")
        self.site = self.root / "cloud-site.toml"
        self.site.write_text(
            f'root = "{self.root}"\nbroker_names = ["mqtt.example.com", "127.0.0.1"]\n'
            f"broker_port = {self.broker_port}\ntls_port = {self.tls_port}\n"
            f"broker_restart = '{restart}'\ningest_instances = 1\n"
            f"metrics_port = {self.metrics - 1}\nnotify_metrics_port = {free_port()}\n"
            f'portal_port = {free_port()}\nservices = ["ingest"]\nsystemctl = ""\n\n'
            f'[db]\nhost = "127.0.0.1"\nport = {self.cluster.port}\n'
            f'admin_dsn = "postgresql://postgres@127.0.0.1:{self.cluster.port}/postgres"\n'
            f"admin_user = \"\"\nrestart = '{pg_restart}'\n\n"
            "[backup]\narchive_timeout = 5\n")
        self.ingest: subprocess.Popen | None = None

    def cli(self, command: str, check: bool = True) -> subprocess.CompletedProcess:
        """``teddy-cloud COMMAND --config SITE``."""
        return run_cli("teddy-cloud", command, "--config", str(self.site), env=_env(),
                       check=check, timeout=300)

    def start_ingest(self) -> None:
        """``teddy-cloud-ingest@1`` as its unit runs it, from setup's files."""
        creds = self.root / "etc/teddy/credentials"
        env = dict(_env(), TEDDY_CONFIG=str(self.root / "etc/teddy/cloud.toml"),
                   TEDDY_MQTT__USERNAME="svc.ingest-1", TEDDY_CLOUD__INSTANCE="1",
                   TEDDY_MQTT__PASSWORD_FILE=str(creds / "mqtt-password-1"),
                   PGPASSFILE=str(creds / "pgpass"),
                   TEDDY_PORTAL__CLOUD_KEY_FILE=str(creds / "portal-cloud.key"))
        self.ingest = start_cli("teddy-cloud", "ingest", env=env, log=self.root / "ingest.log")
        deadline = time.monotonic() + 60
        while not _listening(self.metrics):
            assert self.ingest.poll() is None, (self.root / "ingest.log").read_text()
            assert time.monotonic() < deadline, (self.root / "ingest.log").read_text()
            time.sleep(0.2)

    def stop_ingest(self) -> None:
        if self.ingest is not None and self.ingest.poll() is None:
            self.ingest.send_signal(signal.SIGTERM)
            self.ingest.wait(20)
        self.ingest = None

    def stop_broker(self) -> None:
        if self.pid_file.exists() and self.pid_file.read_text().strip():
            pid = int(self.pid_file.read_text())
            try:
                os.kill(pid, signal.SIGTERM)
                while True:
                    os.kill(pid, 0)
                    time.sleep(0.1)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        self.stop_ingest()
        self.stop_broker()
        self.cluster.close()
        shutil.rmtree(self.root, ignore_errors=True)


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("TEDDY_", "PG"))}


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def test_a_bad_site_file_is_one_line_naming_the_key(tmp_path):
    """Every field is checked; the error names the key and the way out."""
    site = tmp_path / "cloud-site.toml"
    for text, expected in (
            ("ingest_instances = 0\n", "ingest_instances = 0 is outside 1..64"),
            ("brokr_names = []\n", "unknown key 'brokr_names'"),
            ('broker_names = ["bad name!"]\n', "broker_names"),
            ('[db]\nrole = "Robert; DROP"\n', "db_role"),
            ('services = ["ingest", "mail"]\n', "services holds 'mail'"),
            ("root = 'relative'\n", "must be an absolute path")):
        site.write_text(text)
        done = run_cli("teddy-cloud", "doctor", "--config", str(site), env=_env(), check=False)
        assert done.returncode == 1
        assert done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr


def problems(output: str) -> list[str]:
    """doctor's problem lines (not its ``ok:`` notes or its summary)."""
    return [line for line in output.splitlines()
            if line and not line.startswith(("ok:", "doctor:"))]


@pytest.fixture(scope="module")
def host():
    made = Host()
    try:
        yield made
    finally:
        made.close()


def test_setup_does_every_step_once_and_says_already_done_after(host):
    first = host.cli("setup").stdout
    steps = [line for line in first.splitlines() if line.startswith("setup: ") and
             line.count(":") >= 2]
    assert len(steps) == 15, first
    assert all("already done" not in line for line in steps), first
    again = host.cli("setup").stdout
    assert again.count("already done") == 15, again
    assert "setup: nothing to change" in again

    creds = host.root / "etc/teddy/credentials"
    assert oct(creds.stat().st_mode & 0o777) == "0o700"
    for name in ("pgpass", "mqtt-password-1", "fleet-mqtt-password", "broker-admin-password",
                 "fleet-signing.key", "claim.key", "portal-cloud.key", "notify.toml",
                 "replicator-pgpass", "teddy_ro-pgpass"):
        assert oct((creds / name).stat().st_mode & 0o777) == "0o600", name
    assert (host.root / "etc/pgbackrest.conf").exists()  # Debian's path
    assert (host.root / "etc/systemd/system/teddy-cloud-ingest@.service").exists()
    # the ingest account logs in with the credential setup wrote, bound to its own name
    password = (creds / "mqtt-password-1").read_text().strip()
    assert connects(host.broker_port, "svc.ingest-1", password, "svc.ingest-1")
    assert not connects(host.broker_port, "svc.ingest-1", "wrong", "svc.ingest-1")
    # the bears' listener: TLS, verified against the CA setup made, for a name on the cert
    context = ssl.create_default_context(cafile=str(host.root / "etc/teddy/ca.pem"))
    import socket
    with socket.create_connection(("127.0.0.1", host.tls_port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() is not None
    # the read-only role reads and cannot write
    ro = (creds / "teddy_ro-pgpass").read_text().strip().rsplit(":", 1)[1]
    dsn = f"postgresql://teddy_ro:{ro}@127.0.0.1:{host.cluster.port}/teddy"
    import psycopg
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT count(*) FROM turns").fetchone()
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM turns")
    rows = host.cluster.sql("SELECT rolreplication FROM pg_roles WHERE rolname = 'replicator'",
                            database="postgres")
    assert rows == [(True,)]


def test_doctor_is_clean_then_names_each_broken_thing(host):
    if not (host.root / "etc/teddy/cloud.toml").exists():
        host.cli("setup")
    host.start_ingest()
    clean = host.cli("doctor", check=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "doctor: everything is in order" in clean.stdout
    assert "a restore can reach from" in clean.stdout

    def broken() -> list[str]:
        done = host.cli("doctor", check=False)
        assert done.returncode == 1, done.stdout
        return problems(done.stdout)

    # a drifted account: an edge bridged to the core that no edge_brokers entry names
    from sync.cloud.broker_accounts import broker_auth
    from sync.cloud.setup import cloud_settings
    from sync.cloud.setup_site import load_site
    site = load_site(host.site)
    with broker_auth(cloud_settings(site)) as auth:
        auth.set_service("svc.edge-9", "edge", "x" * 24)
    found = broken()
    assert len(found) == 1 and found[0].startswith("edges: ") and "svc.edge-9" in found[0], found
    with broker_auth(cloud_settings(site)) as auth:
        auth._run({"command": "deleteClient", "username": "svc.edge-9"})
    assert host.cli("doctor", check=False).returncode == 0

    # a certificate about to expire
    ca = host.root / "root/teddy-ca"
    pem = host.root / "etc/mosquitto/certs/broker.pem"
    kept = pem.read_text()
    subprocess.run(["openssl", "x509", "-req", "-in", str(ca / "broker.csr"), "-CA",
                    str(ca / "ca.pem"), "-CAkey", str(ca / "ca.key"), "-days", "5",
                    "-copy_extensions", "copy", "-out", str(pem)], check=True,
                   capture_output=True)
    found = broken()
    assert len(found) == 1 and "expires in 5 days" in found[0] \
        and "teddy-cloud setup" in found[0], found
    pem.write_text(kept)

    # no backup in the repository
    repo = host.root / "var/lib/pgbackrest/backup"
    repo.rename(repo.with_name("backup.aside"))
    try:
        found = broken()
    finally:
        repo.with_name("backup.aside").rename(repo)
    assert found == ["backup: no backup in the repository — teddy-cloud backup take "
                     "--type full"], found

    # WAL archiving failing (archive_command broken): the one line, and setup repairs it
    host.cluster.sql("ALTER SYSTEM SET archive_command = 'false'", database="postgres")
    host.cluster.sql("SELECT pg_reload_conf()", database="postgres")
    host.cluster.sql("CREATE TABLE IF NOT EXISTS wal_poke (n int); INSERT INTO wal_poke VALUES (1)")
    host.cluster.sql("SELECT pg_switch_wal()", database="postgres")
    _wait(lambda: host.cluster.sql("SELECT failed_count FROM pg_stat_archiver",
                                   database="postgres")[0][0] > 0)
    found = broken()
    assert len(found) == 1 and found[0].startswith("WAL archiving: failing since") \
        and "teddy-cloud backup check" in found[0], found
    assert "setup: WAL archiving: set archive_command" in host.cli("setup").stdout
    _wait(lambda: host.cli("doctor", check=False).returncode == 0)

    # the broker stopped
    host.stop_broker()
    found = broken()
    assert len(found) == 1 and found[0].startswith("broker: nothing listens") \
        and "systemctl start mosquitto" in found[0], found
    # setup brings the broker back (a re-run restarts a broker that is not listening)
    assert "setup: broker: (re)started" in host.cli("setup").stdout
    assert host.cli("doctor", check=False).returncode == 0

    # ingest down
    host.stop_ingest()
    found = broken()
    assert len(found) == 1 and found[0].startswith("ingest@1: nothing listens") \
        and "systemctl restart teddy-cloud-ingest@1" in found[0], found



@pytest.mark.xfail(strict=True, reason="issue 23 bar not met: the walkthrough (9 blocks, "
                   "33 command lines, 117 s) installs the package, runs setup, starts "
                   "every unit incl. the parent app and ingest@2 and ends with doctor "
                   "clean, but has 0 steps that restore a backup, scrape with a real "
                   "Prometheus, ship logs or sign a parent in")
def test_the_walkthrough_restores_a_backup_scrapes_metrics_ships_logs_and_signs_a_parent_in():
    """What the issue's walkthrough also does beyond setup and doctor."""
    import importlib.machinery
    import importlib.util

    from support.paths import ROOT
    loader = importlib.machinery.SourceFileLoader("walkthrough", str(ROOT / "scripts/walkthrough"))
    spec = importlib.util.spec_from_loader("walkthrough", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    text = "\n".join(body for _, body in
                     module.blocks((ROOT / "docs" / "operations.md").read_text()))
    for step in ("teddy-cloud backup restore", "prometheus", "systemd-journal-upload",
                 "signin"):
        assert step in text, step
