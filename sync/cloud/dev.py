"""``teddy-cloud dev`` (``scripts/dev``): the whole cloud and a bear on this machine, in one
command, for a newcomer.

Starts, each on a free port and in a scratch folder of its own:

- a private Mosquitto from the shipped ``config/examples/mosquitto.conf`` with the
  dynamic-security plugin (``broker-init``), and the cloud's accounts ``svc.fleet`` and
  ``svc.ingest`` made through it;
- a private database on the machine's PostgreSQL (``--pg``), migrated;
- the fleet's signing key and the cloud key (``fleet keygen``, ``portal keygen``);
- ``teddy-cloud ingest``, ``fleet serve``, ``notify run`` and ``teddy-cloud portal`` with
  ``portal.base_url`` at the port it really listens on;
- a mail catcher (aiosmtpd) that prints every sign-in link it receives;
- a bear made as ``teddy-cloud provision`` + ``provision-device`` make one, running
  ``teddy chat --online`` wired to that broker: it prints its pairing code, then answers
  each line typed into this terminal.

Ctrl-C (SIGINT) or SIGTERM stops every process it started, drops the database and removes
the scratch folder (``--keep`` keeps both). Logs are in the scratch folder.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from config.errors import CloudError

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
BROKER_CONFIG = ROOT / "config" / "examples" / "mosquitto.conf"
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DEVICE_ID = "bear-dev"
PARENT_PORT = 8080
LINK = re.compile(r"https?://\S+/signin/[A-Za-z0-9_-]+")
STOP_WAIT_S = 10.0


def free_port(preferred: int = 0) -> int:
    """``preferred`` if nobody listens on it, else a free TCP port on 127.0.0.1."""
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise CloudError("no free TCP port on 127.0.0.1")


def wait_for_port(port: int, process: subprocess.Popen, name: str, log: Path,
                  timeout: float = 30.0) -> None:
    """Block until ``process`` accepts connections on ``port``; fail with its log if it dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CloudError(f"{name} exited ({process.returncode}) — see {log}:\n"
                             + _tail(log))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise CloudError(f"{name} did not listen on port {port} in {timeout:.0f} s — see {log}")


def _tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def broker_config(workdir: Path, port: int) -> str:
    """The shipped broker config on ``port`` with its files in ``workdir``, run as this user,
    without the TLS listener (no certificates here). The dynamic-security plugin stays."""
    text = BROKER_CONFIG.read_text()
    substitutions = {
        "listener 1883 127.0.0.1": f"listener {port} 127.0.0.1",
        "/var/lib/mosquitto/dynamic-security.json": f"{workdir}/dynamic-security.json",
        "persistence_location /var/lib/mosquitto/": f"persistence_location {workdir}/",
        "pid_file /run/mosquitto/mosquitto.pid": f"pid_file {workdir}/mosquitto.pid",
        "log_dest file /var/log/mosquitto/mosquitto.log": "log_dest stderr",
        "user mosquitto": f"user {getpass.getuser()}",
    }
    for shipped, ours in substitutions.items():
        if shipped not in text:
            raise CloudError(f"{BROKER_CONFIG} no longer has {shipped!r}: update "
                             "sync/cloud/dev.py:broker_config() with it")
        text = text.replace(shipped, ours)
    kept, in_tls = [], False
    for line in text.splitlines():
        if line.startswith("listener "):
            in_tls = line.split()[1] == "8883"
        if not in_tls:
            kept.append(line)
    return "\n".join(kept) + "\n"


@dataclass
class Children:
    """The processes started, stopped in reverse order: SIGTERM, then SIGKILL."""

    started: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str], log: Path,
              **popen: Any) -> subprocess.Popen:
        """Start ``argv`` in its own session (a terminal's Ctrl-C reaches only us)."""
        with log.open("ab") as handle:
            popen.setdefault("stdout", handle)
            process = subprocess.Popen(argv, env=env, stderr=handle, start_new_session=True,
                                       **popen)
        self.started.append((name, process))
        return process

    def pids(self) -> list[int]:
        """Process ids of every child still running."""
        return [p.pid for _, p in self.started if p.poll() is None]

    def stop(self) -> None:
        """Stop every child (newest first). Idempotent."""
        while self.started:
            name, process = self.started.pop()
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(STOP_WAIT_S)
                except subprocess.TimeoutExpired:
                    logger.warning("%s did not stop in %.0f s; killing it", name, STOP_WAIT_S)
                    process.kill()
                    process.wait()


class MailCatcher:
    """A local SMTP server that prints the sign-in links in the mails it receives."""

    def __init__(self, out: Callable[[str], None]) -> None:
        self.port = free_port()
        self._out = out
        self._controller: Any = None

    def start(self) -> None:
        """Listen on 127.0.0.1:``port``."""
        from aiosmtpd.controller import Controller

        catcher = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                catcher.received(envelope.rcpt_tos, envelope.content)
                return "250 OK"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def received(self, recipients: list[str], content: bytes | str) -> None:
        """Print the sign-in link of one mail (or say a mail came without one)."""
        from email import message_from_bytes, message_from_string, policy

        message = (message_from_bytes(content, policy=policy.default)
                   if isinstance(content, bytes)
                   else message_from_string(content, policy=policy.default))
        body = message.get_body(("plain", "html"))
        text = body.get_content() if body is not None else str(message)
        to = ", ".join(recipients)
        found = LINK.search(text)
        if found:
            self._out(f"mail: sign-in link for {to}: {found.group(0)}")
        else:
            self._out(f"mail: to {to}: {message.get('Subject', '(no subject)')}")

    def close(self) -> None:
        """Stop listening. Idempotent."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


class DevCloud:
    """Everything ``teddy-cloud dev`` runs; a context manager that stops all of it."""

    def __init__(self, admin_dsn: str = ADMIN_DSN, port: int = PARENT_PORT,
                 keep: bool = False, out: Callable[[str], None] = print) -> None:
        self.admin_dsn = admin_dsn
        self.workdir = Path(tempfile.mkdtemp(prefix="teddy-dev-"))
        self.keep = keep
        self.out = out
        self.children = Children()
        self.mail = MailCatcher(out)
        self.portal_port = free_port(port)
        self.url = f"http://127.0.0.1:{self.portal_port}"
        self.database: str | None = None
        self.bear: subprocess.Popen | None = None
        self._passwords = {"svc.fleet": secrets.token_urlsafe(18),
                           "svc.ingest": secrets.token_urlsafe(18)}

    # -- the parts ----------------------------------------------------------------------

    def __enter__(self) -> DevCloud:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        self.out(f"teddy-cloud dev: scratch folder and logs in {self.workdir}")
        self._start_broker()
        self._make_database()
        self.mail.start()
        env = self.cloud_env("svc.fleet")
        self._keys()
        self._cloud_process("ingest", ["ingest"], self.cloud_env("svc.ingest"))
        self._cloud_process("fleet", ["fleet", "serve"], env)  # signs and sends for the app
        self._cloud_process("notify", ["notify", "run"], env)
        portal = self._cloud_process("portal", ["portal"], self.portal_env(env))
        wait_for_port(self.portal_port, portal, "the parent app", self.workdir / "portal.log")
        self._start_bear()

    def _start_broker(self) -> None:
        from sync.cloud.broker_init import init_broker

        broker = self.workdir / "broker"
        broker.mkdir()
        self.mqtt_port = free_port()
        (broker / "mosquitto.conf").write_text(broker_config(broker, self.mqtt_port))
        self.admin_password_file = broker / "broker-admin-password"
        init_broker(broker / "dynamic-security.json", self.admin_password_file, owner=None)
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise CloudError("mosquitto is not installed — apt-get install mosquitto")
        log = self.workdir / "mosquitto.log"
        process = self.children.start("mosquitto", [binary, "-c", str(broker / "mosquitto.conf")],
                                      dict(os.environ), log)
        wait_for_port(self.mqtt_port, process, "Mosquitto", log)
        from sync.cloud.broker_accounts import broker_auth

        with broker_auth(self.settings("svc.fleet")) as auth:
            auth.set_service("svc.fleet", "fleet", self._passwords["svc.fleet"])
            auth.set_service("svc.ingest", "ingest", self._passwords["svc.ingest"])

    def _make_database(self) -> None:
        import psycopg

        from sync.cloud.migrate import migrate

        name = f"teddy_dev_{secrets.token_hex(5)}"
        try:
            with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
        except psycopg.Error as exc:
            raise CloudError(f"cannot create a database with {self.admin_dsn} ({exc}) — start "
                             "PostgreSQL or pass --pg with a DSN that may CREATE DATABASE"
                             ) from None
        self.database = name
        base, _, _ = self.admin_dsn.rpartition("/")
        self.dsn = f"{base}/{name}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            applied = migrate(conn)
        self.out(f"database {name}: {len(applied)} migrations applied")

    def _keys(self) -> None:
        """``fleet keygen`` and ``portal keygen``: the fleet's signing key, the cloud key."""
        from config.keyfile import load_key_file
        from sync.cloud.fleet import generate_signing_key

        cloud = self.workdir / "cloud"
        generate_signing_key(cloud / "fleet-signing.key", exist_ok=True)
        load_key_file(cloud / "portal-cloud.key", create=True)

    def _cloud_process(self, name: str, args: list[str], env: dict[str, str]
                       ) -> subprocess.Popen:
        argv = [_program("teddy-cloud"), "--log-level", "INFO", *args]
        return self.children.start(name, argv, env, self.workdir / f"{name}.log")

    def _start_bear(self) -> None:
        import psycopg

        from sync.cloud.identity import manufacture

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            made = manufacture(self.settings("svc.fleet"), conn, DEVICE_ID)
        env = _clean_env()
        env.update({
            "TEDDY_DEVICE__ID": DEVICE_ID,
            "TEDDY_STORE__DATA_DIR": str(self.workdir / "bear"),
            "TEDDY_MQTT__PORT": str(self.mqtt_port),
            "TEDDY_MQTT__USERNAME": DEVICE_ID,
            "TEDDY_MQTT__PASSWORD": made.password,
            "TEDDY_SYNC__BATCH_MAX_AGE": "0.5",
            **{f"TEDDY_PAIRING__{k.upper()}": v for k, v in made.keys.items()},
        })
        self.bear = self.children.start(
            "bear", [_program("teddy"), "chat", "--online"], env, self.workdir / "bear.log",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        threading.Thread(target=self._relay_bear, args=(self.bear.stdout,), daemon=True,
                         name="bear-out").start()

    def _relay_bear(self, stream: IO[str] | None) -> None:
        for line in stream or ():
            self.out(f"bear: {line.rstrip()}")

    # -- settings of the parts ------------------------------------------------------------

    def settings(self, username: str):
        """The cloud's settings as ``username`` (in-process steps)."""
        from config.settings import Settings

        cloud = self.workdir / "cloud"
        return Settings.model_validate({
            "mqtt": {"port": self.mqtt_port, "username": username,
                     "password": self._passwords[username]},
            "cloud": {"pg_dsn": getattr(self, "dsn", "postgresql://invalid/none")},
            "store": {"data_dir": cloud},
            "fleet": {"signing_key_file": cloud / "fleet-signing.key",
                      "broker_admin_password_file": self.admin_password_file},
            "portal": {"cloud_key_file": cloud / "portal-cloud.key"}})

    @staticmethod
    def portal_env(env: dict[str, str]) -> dict[str, str]:
        """The parent app's environment: no broker account, no fleet key (it asks the fleet
        service, as in production)."""
        held_back = ("TEDDY_MQTT__USERNAME", "TEDDY_MQTT__PASSWORD",
                     "TEDDY_FLEET__SIGNING_KEY_FILE", "TEDDY_FLEET__BROKER_ADMIN_PASSWORD_FILE")
        return {name: value for name, value in env.items() if name not in held_back}

    def cloud_env(self, username: str) -> dict[str, str]:
        """Environment of a ``teddy-cloud`` process as ``username``."""
        cloud = self.workdir / "cloud"
        channels = {"mail": {"type": "email", "audience": "parent", "host": "127.0.0.1",
                             "port": self.mail.port, "starttls": False,
                             "sender": "teddy@localhost", "to_parent": True}}
        env = _clean_env()
        env.update({
            "TEDDY_CLOUD__PG_DSN": self.dsn,
            "TEDDY_MQTT__PORT": str(self.mqtt_port),
            "TEDDY_MQTT__USERNAME": username,
            "TEDDY_MQTT__PASSWORD": self._passwords[username],
            "TEDDY_STORE__DATA_DIR": str(cloud),
            "TEDDY_FLEET__SIGNING_KEY_FILE": str(cloud / "fleet-signing.key"),
            "TEDDY_FLEET__BROKER_ADMIN_PASSWORD_FILE": str(self.admin_password_file),
            "TEDDY_PORTAL__CLOUD_KEY_FILE": str(cloud / "portal-cloud.key"),
            "TEDDY_PORTAL__HOST": "127.0.0.1",
            "TEDDY_PORTAL__PORT": str(self.portal_port),
            "TEDDY_PORTAL__BASE_URL": self.url,
            "TEDDY_PORTAL__MAIL_CHANNEL": "mail",
            "TEDDY_PORTAL__SECURE_COOKIES": "false",
            "TEDDY_NOTIFY__CHANNELS": json.dumps(channels),
        })
        return env

    # -- running and stopping ---------------------------------------------------------------

    def say_to_bear(self, line: str) -> None:
        """Hand one typed line to the bear."""
        if self.bear is not None and self.bear.stdin is not None and self.bear.poll() is None:
            self.bear.stdin.write(line if line.endswith("\n") else line + "\n")
            self.bear.stdin.flush()

    def close(self) -> None:
        """Stop everything; drop the database and the scratch folder unless kept.
        Idempotent."""
        self.children.stop()
        self.mail.close()
        if self.database is not None and not self.keep:
            self._drop_database()
        if not self.keep and self.workdir.exists():
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _drop_database(self) -> None:
        import psycopg

        try:
            with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        except psycopg.Error as exc:
            logger.warning("could not drop database %s: %s", self.database, exc)
        self.database = None


def _clean_env() -> dict[str, str]:
    """This environment without the developer's own TEDDY_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TEDDY_")}


def _program(name: str) -> str:
    """``teddy`` or ``teddy-cloud`` of this Python's environment."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def run_dev(admin_dsn: str, port: int, keep: bool) -> int:
    """Run the local cloud until SIGINT or SIGTERM; lines on stdin go to the bear."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with DevCloud(admin_dsn, port, keep, out=_print) as dev:
            _print(f"parent app: {dev.url}  (sign in with any e-mail address; the link is "
                   "printed here)")
            _print("the bear: press Pair the bear in the app, type the code the bear says; "
                   "then type lines here to talk to the bear. Ctrl-C stops everything.")
            threading.Thread(target=_forward_stdin, args=(dev,), daemon=True,
                             name="stdin").start()
            while not stop.wait(0.5):
                if dev.bear is not None and dev.bear.poll() is not None:
                    _print(f"the bear stopped ({dev.bear.returncode}) — see "
                           f"{dev.workdir / 'bear.log'}")
                    dev.bear = None
            _print("stopping…")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _print("stopped: every process ended" + ("" if keep else ", database dropped"))
    return 0


def _forward_stdin(dev: DevCloud) -> None:
    for line in sys.stdin:
        if line.strip():
            dev.say_to_bear(line)


_print_lock = threading.Lock()


def _print(text: str) -> None:
    with _print_lock:
        print(text, flush=True)


def register(commands: Any) -> None:
    """Add ``dev`` to the ``teddy-cloud`` parser."""
    dev = commands.add_parser(
        "dev", help="the whole cloud and a bear on this machine, for development: private "
                    "broker and database, ingest, notify, the parent app, a mail catcher "
                    "that prints sign-in links, a bear in this terminal; Ctrl-C stops all")
    dev.add_argument("--pg", default=os.environ.get("TEDDY_DEV_PG_DSN", ADMIN_DSN),
                     help="a PostgreSQL DSN allowed to CREATE DATABASE (default "
                          f"$TEDDY_DEV_PG_DSN or {ADMIN_DSN})")
    dev.add_argument("--port", type=int, default=PARENT_PORT,
                     help=f"the parent app's port if free (default {PARENT_PORT}; else any)")
    dev.add_argument("--keep", action="store_true",
                     help="keep the database and the scratch folder (logs) afterwards")
    dev.set_defaults(func=lambda args, settings: run_dev(args.pg, args.port, args.keep))
