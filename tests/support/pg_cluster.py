"""A private PostgreSQL cluster for the tests that stop, crash, destroy and restore one.

``initdb`` + ``pg_ctl`` on a free port, in a folder of its own (owned by the ``postgres``
user when the tests run as root, as PostgreSQL refuses to run as root), with WAL archiving
through pgBackRest into a repository next to it. The machine's PostgreSQL is never touched.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support.brokers import free_port
from support.waiting import wait_until

PG_BIN = Path(os.environ.get("TEDDY_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
OWNER = "postgres"


def _as_owner(command: list[str]) -> list[str]:
    return ["runuser", "-u", OWNER, "--", *command] if os.geteuid() == 0 else command


class PrivateCluster:
    """One cluster: start, stop (fast or immediate: a crash), destroy, restore."""

    def __init__(self, stanza: str = "teddy") -> None:
        self.root = Path(tempfile.mkdtemp(prefix="teddy-pg-", dir="/var/tmp"))
        self.data = self.root / "pgdata"
        self.port = free_port()
        self.stanza = stanza
        self.backrest_conf = self.root / "pgbackrest.conf"
        for sub in ("repo", "log", "lock", "spool"):
            (self.root / sub).mkdir()
        self.backrest_conf.write_text(
            "[global]\n"
            f"repo1-path={self.root}/repo\nrepo1-retention-full=2\n"
            f"log-path={self.root}/log\nlock-path={self.root}/lock\n"
            f"spool-path={self.root}/spool\n"
            "log-level-console=warn\nlog-level-file=info\nstart-fast=y\ncompress-type=lz4\n"
            f"\n[{stanza}]\npg1-path={self.data}\npg1-port={self.port}\n"
            f"pg1-socket-path={self.root}\npg1-user=postgres\n")
        if os.geteuid() == 0:
            owner = pwd.getpwnam(OWNER)
            for path in [self.root, *self.root.rglob("*")]:
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self.log = self.root / "postgres.log"

    @property
    def dsn(self) -> str:
        """DSN of database ``teddy`` over TCP."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/teddy"

    def _run(self, *command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(_as_owner(list(command)), capture_output=True, text=True,
                                timeout=timeout, cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n"
                               f"{result.stdout}\n{result.stderr}")
        return result

    def init(self, archive_timeout: int = 1, archive: bool = True) -> PrivateCluster:
        """``initdb`` with 1 MB WAL segments and (``archive``) pgBackRest as
        ``archive_command``."""
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U",
                  "postgres", "--wal-segsize=1", "--no-sync")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\n"
                "wal_level = replica\n"
                f"archive_mode = {'on' if archive else 'off'}\n"
                f"archive_command = 'pgbackrest --config={self.backrest_conf} "
                f"--stanza={self.stanza} archive-push %p'\n"
                f"archive_timeout = {archive_timeout}\nmax_wal_senders = 3\n"
                "fsync = on\nshared_buffers = 16MB\nmax_connections = 40\n"
                # no read-only connections during recovery: clients (ingest) wait for
                # the promoted primary instead of failing on a read-only server
                "hot_standby = off\n")
        return self

    def start(self) -> None:
        """Start and wait until it accepts connections."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", "120", "start")

    def wait_primary(self, timeout: float = 120.0) -> None:
        """Block until it takes writes: recovery (WAL replay) over and promoted."""
        import psycopg

        def primary() -> bool:
            try:
                return self.sql("SELECT NOT pg_is_in_recovery()", database="postgres")[0][0]
            except psycopg.OperationalError:
                return False

        wait_until(primary, timeout, lambda: f"the cluster to be a primary: "
                                             f"{self.log.read_text()[-2000:]}", interval=0.1)

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m MODE``: ``immediate`` is a crash (no checkpoint)."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        """Crash it and delete its data directory (the disaster)."""
        if (self.data / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.data)
        self.data.mkdir(mode=0o700)
        if os.geteuid() == 0:
            owner = pwd.getpwnam(OWNER)
            os.chown(self.data, owner.pw_uid, owner.pw_gid)

    def sql(self, query: str, database: str = "teddy"):
        """Run one statement (autocommit) and return its rows, or None."""
        import psycopg

        dsn = f"postgresql://postgres@127.0.0.1:{self.port}/{database}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            cursor = conn.execute(query)
            return cursor.fetchall() if cursor.description else None

    def backup_env(self) -> dict[str, str]:
        """``TEDDY_BACKUP__*`` for ``teddy-cloud backup`` against this cluster."""
        return {"TEDDY_BACKUP__CONFIG_FILE": str(self.backrest_conf),
                "TEDDY_BACKUP__STANZA": self.stanza}

    def close(self) -> None:
        """Stop it if it runs and delete everything. Idempotent."""
        if (self.data / "postmaster.pid").exists():
            try:
                self.stop("immediate")
            except RuntimeError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


class ClusterDatabase:
    """What support.syncing expects of a database (``dsn``, ``connect()``), on a cluster."""

    def __init__(self, cluster: PrivateCluster) -> None:
        self.dsn = cluster.dsn

    def connect(self):
        """A new autocommit connection to the cluster's ``teddy`` database."""
        import psycopg

        return psycopg.connect(self.dsn, autocommit=True)


@contextmanager
def running_cluster(**init: int) -> Iterator[PrivateCluster]:
    """A started private cluster with an empty ``teddy`` database; deleted afterwards."""
    cluster = PrivateCluster().init(**init)
    try:
        cluster.start()
        cluster.sql("CREATE DATABASE teddy", database="postgres")
        yield cluster
    finally:
        cluster.close()
