"""Real services for the tests: a Mosquitto broker of their own and a throwaway database."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
ADMIN_DSN = os.environ.get("TEDDY_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Block until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


class Mosquitto:
    """A Mosquitto broker on a free port, with its own config; can be killed and restarted."""

    def __init__(self, workdir: Path, extra_config: str = "", anonymous: bool = True) -> None:
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"allow_anonymous {'true' if anonymous else 'false'}\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            "max_queued_messages 100000\n"
            "log_dest stderr\n"
            + extra_config
        )
        self.process: subprocess.Popen | None = None
        self.log = workdir / "mosquitto.log"

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([binary, "-c", str(self.config)],
                                            stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port)

    def kill(self) -> None:
        """SIGKILL the broker (no clean shutdown)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        """Stop the broker cleanly."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class Database:
    """A throwaway PostgreSQL database on the machine's server."""

    def __init__(self) -> None:
        import psycopg

        self.name = f"teddy_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        base, _, _ = ADMIN_DSN.rpartition("/")
        self.dsn = f"{base}/{self.name}"

    def connect(self):
        """A new autocommit connection to this database."""
        import psycopg

        return psycopg.connect(self.dsn, autocommit=True)

    def drop(self) -> None:
        """Drop the database, disconnecting anyone still on it."""
        import psycopg

        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def run_cli(program: str, *args: str, env: dict[str, str], stdin: str | None = None,
            timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``teddy`` or ``teddy-cloud`` from the virtualenv, as a user would."""
    result = subprocess.run([str(VENV_BIN / program), *args], input=stdin, env=env,
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{program} {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def start_cli(program: str, *args: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a long-running ``teddy``/``teddy-cloud`` command with its output in ``log``."""
    handle = log.open("ab")
    return subprocess.Popen([str(VENV_BIN / program), *args], env=env,
                            stdout=handle, stderr=subprocess.STDOUT)


def wait_for_log(log: Path, text: str, timeout: float = 20.0) -> None:
    """Block until ``text`` appears in ``log``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{text!r} not in {log} after {timeout} s:\n"
                       f"{log.read_text(errors='replace') if log.exists() else ''}")


def until(check, timeout: float = 20.0):
    """Poll ``check()`` every 0.05 s until it returns something true or ``timeout`` seconds
    pass; returns its last value (so ``assert until(...)`` shows what it saw)."""
    deadline = time.monotonic() + timeout
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


@contextmanager
def migrated_database():
    """A throwaway database with the cloud schema, dropped afterwards."""
    from sync.cloud.migrate import migrate

    db = Database()
    try:
        with db.connect() as conn:
            migrate(conn)
        yield db
    finally:
        db.drop()
