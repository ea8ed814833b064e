"""Mosquitto brokers of a test's own: anonymous, or built from the shipped example config."""

from __future__ import annotations

import queue
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from support.waiting import wait_until


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Block until something accepts connections on 127.0.0.1:port."""
    wait_until(lambda: _accepts(port), timeout, f"something to listen on port {port}",
               interval=0.05)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Mosquitto:
    """A Mosquitto broker on a free port, with its own config; can be killed and restarted.
    Anonymous and without authorization: for tests that are not about who may do what (those
    use :class:`ShippedBroker`)."""

    def __init__(self, workdir: Path, extra_config: str = "", anonymous: bool = True) -> None:
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(self._config_text(extra_config, anonymous))
        self.process: subprocess.Popen | None = None
        self.log = workdir / "mosquitto.log"

    def _config_text(self, extra_config: str, anonymous: bool) -> str:
        return (f"listener {self.port} 127.0.0.1\n"
                f"allow_anonymous {'true' if anonymous else 'false'}\n"
                "persistence true\n"
                f"persistence_location {self.workdir}/\n"
                "max_queued_messages 100000\n"
                "log_dest stderr\n"
                + extra_config)

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




def shipped_broker_config(workdir: Path, port: int) -> str:
    """``config/examples/mosquitto.conf`` as this test's broker runs it: its loopback listener
    on ``port``, its files in ``workdir``, logging to stderr, as the test's own user, and
    without the TLS listener (no certificates here; tests/test_sync_tls.py covers TLS). Every
    other line, the dynamic-security plugin included, is the shipped one: the same rewrite
    ``teddy-cloud dev`` runs its broker with."""
    from sync.cloud.dev import broker_config

    return broker_config(workdir, port)


class ShippedBroker(Mosquitto):
    """Mosquitto built from the shipped example config with the dynamic-security plugin,
    bootstrapped by what ``teddy-cloud broker-init`` runs (in-process: tests/test_acl.py runs
    the command itself); :meth:`auth` is the cloud's
    :class:`~sync.cloud.broker_accounts.BrokerAuth` on it."""

    def __init__(self, workdir: Path) -> None:
        from sync.cloud.broker_init import init_broker

        workdir.mkdir(parents=True, exist_ok=True)
        self.dynsec_file = workdir / "dynamic-security.json"
        self.admin_password_file = workdir / "broker-admin-password"
        self.pid_file = workdir / "mosquitto.pid"
        super().__init__(workdir)
        init_broker(self.dynsec_file, self.admin_password_file, owner=None)

    def _config_text(self, extra_config: str, anonymous: bool) -> str:
        return shipped_broker_config(self.workdir, self.port) + extra_config

    def admin_settings(self, **sections: object):
        """Settings of a ``teddy-cloud`` that manages this broker's accounts."""
        from config.settings import Settings

        return Settings(mqtt={"port": self.port, **sections.pop("mqtt", {})},
                        fleet={"broker_admin_password_file": self.admin_password_file},
                        **sections)

    def auth(self):
        """The cloud's BrokerAuth of this broker (a context manager)."""
        from sync.cloud.broker_accounts import broker_auth

        return broker_auth(self.admin_settings())


def connects(port: int, username: str, password: str, client_id: str) -> bool:
    """Whether the broker on ``port`` accepts this login (CONNACK success)."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                         client_id=client_id)
    client.username_pw_set(username, password)
    answered: queue.Queue = queue.Queue()
    client.on_connect = lambda c, u, flags, code, props: answered.put(code.value)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        return answered.get(timeout=10) == 0
    finally:
        client.disconnect()
        client.loop_stop()
