"""Shared parts of the pairing, command and fleet tests: an authenticating Mosquitto with
the production ACL shape, a bear made at manufacture, a speaking fake, and a real pairing."""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from config.settings import Settings
from support.brokers import ShippedBroker
from sync.cloud.fleet import generate_signing_key

FLEET_PASSWORD = secrets.token_urlsafe(16)
INGEST_PASSWORD = secrets.token_urlsafe(16)


class SecureBroker(ShippedBroker):
    """The shipped broker config (dynamic-security plugin, no anonymous clients) with the
    cloud's accounts made by the real BrokerAuth: ``svc.fleet`` (fleet operator: commands,
    config, pairing) and ``svc.ingest`` (ingest). Bears' accounts are made at manufacture
    (``teddy-cloud provision``), through the same BrokerAuth."""

    def start(self) -> None:
        """Start the broker; the first time, make the cloud's accounts."""
        super().start()
        if getattr(self, "_made", False):
            return
        with self.auth() as auth:
            auth.set_service("svc.fleet", "fleet", FLEET_PASSWORD)
            auth.set_service("svc.ingest", "ingest", INGEST_PASSWORD)
        self._made = True


def cloud_env(base: dict[str, str], broker: SecureBroker, tmp_path: Path,
              username: str = "svc.fleet") -> dict[str, str]:
    """Environment of ``teddy-cloud`` as the fleet's operator (with the fleet's signing key,
    made as ``teddy-cloud fleet keygen`` would; ``username="svc.ingest"``: as ingest)."""
    generate_signing_key(tmp_path / "cloud" / "fleet-signing.key", exist_ok=True)
    env = dict(base)
    env.update({
        "TEDDY_MQTT__PORT": str(broker.port),
        "TEDDY_MQTT__USERNAME": username,
        "TEDDY_MQTT__PASSWORD": _PASSWORDS[username],
        "TEDDY_STORE__DATA_DIR": str(tmp_path / "cloud"),
        "TEDDY_FLEET__SIGNING_KEY_FILE": str(tmp_path / "cloud" / "fleet-signing.key"),
        "TEDDY_FLEET__BROKER_ADMIN_PASSWORD_FILE": str(broker.admin_password_file),
        "TEDDY_FLEET__CLAIM_COLLECT_S": "0.5",
        "TEDDY_FLEET__WAIT_S": "15",
    })
    return env


def cloud_settings(broker: SecureBroker, dsn: str, tmp_path: Path,
                   username: str = "svc.fleet", **fleet: object) -> Settings:
    """The same cloud, in-process."""
    generate_signing_key(tmp_path / "cloud" / "fleet-signing.key", exist_ok=True)
    return Settings(
        mqtt={"port": broker.port, "username": username, "password": _PASSWORDS[username]},
        cloud={"pg_dsn": dsn},
        store={"data_dir": tmp_path / "cloud"},
        fleet={"signing_key_file": tmp_path / "cloud" / "fleet-signing.key",
               "broker_admin_password_file": broker.admin_password_file,
               "claim_collect_s": 0.5, "wait_s": 15, **fleet},
    )


_PASSWORDS = {"svc.fleet": FLEET_PASSWORD, "svc.ingest": INGEST_PASSWORD}


def bear_settings(cloud: Settings, database, data_dir: Path, device_id: str | None = None,
                  **pairing: object) -> Settings:
    """A bear made at manufacture, as ``teddy-cloud provision`` + ``provision-device
    --from-cloud`` make it: registered, its own broker login, the cloud's public keys."""
    from sync.cloud.identity import manufacture

    device_id = device_id or f"bear-{secrets.token_hex(4)}"
    with database.connect() as conn:
        made = manufacture(cloud, conn, device_id)
    return Settings(
        device={"id": device_id},
        store={"data_dir": data_dir},
        mqtt={"port": cloud.mqtt.port, "username": device_id, "password": made.password},
        sync={"ack_timeout": 2, "once_timeout": 20},
        pairing={**made.keys, "hold_pair_s": 0.3, "hold_reset_s": 1.2, **pairing},
    )


def bear_env(base: dict[str, str], bear: Settings) -> dict[str, str]:
    """Environment of ``teddy`` as the bear ``bear`` (its manufacture login and keys)."""
    pairing = bear.pairing
    return dict(base, TEDDY_MQTT__PORT=str(bear.mqtt.port), TEDDY_DEVICE__ID=bear.device.id,
                TEDDY_MQTT__USERNAME=bear.mqtt.username,
                TEDDY_MQTT__PASSWORD=bear.mqtt.password.get_secret_value(),
                TEDDY_STORE__DATA_DIR=str(bear.store.data_dir),
                TEDDY_PAIRING__FLEET_KEY=pairing.fleet_key,
                TEDDY_PAIRING__CLAIM_KEY=pairing.claim_key,
                TEDDY_PAIRING__CLAIM_VERIFY_KEY=pairing.claim_verify_key)


class SpeakingFake:
    """Stands in for ``agent.voice.speech.Voice.say``: takes the time speech takes and
    remembers what was said (the test is the parent listening)."""

    def __init__(self, seconds_per_word: float = 0.01) -> None:
        self.said: list[str] = []
        self._spoken = threading.Condition()
        self._per_word = seconds_per_word

    def say(self, text: str) -> bool:
        time.sleep(self._per_word * len(text.split()))
        with self._spoken:
            self.said.append(text)
            self._spoken.notify_all()
        return True

    def wait_for(self, count: int, timeout: float = 10.0) -> list[str]:
        with self._spoken:
            if not self._spoken.wait_for(lambda: len(self.said) >= count, timeout):
                raise TimeoutError(f"the bear said {self.said!r}, wanted {count} utterances")
            return list(self.said)

    def code(self, index: int = -1) -> str:
        """The digits of an utterance ("My pairing code is 4, 7, ...")."""
        return "".join(re.findall(r"\d", self.said[index]))


class RecordingLed:
    """An LED stand-in for logic-only tests: remembers the states shown."""

    def __init__(self) -> None:
        self.shown: list[str] = []

    def show(self, state: str) -> None:
        self.shown.append(state)


def pair_bear(bear: Settings, cloud: Settings, conn, parent: str = "sam@example.org",
              scopes: tuple[str, ...] = ("keep", "sync"), led=None, **approving):
    """Pair ``bear`` for real (claim over MQTT, approval in-process; ``approving``: more
    arguments of ``approve``, e.g. ``family_id``); returns the outcome."""
    from agent.pairing import Pairing
    from sync.cloud.pairing import approve

    voice = SpeakingFake()
    pairing = Pairing(bear, bear.device.id, led or RecordingLed(), voice.say)
    pairing.start()
    voice.wait_for(1)
    try:
        approve(cloud, conn, voice.code(), parent, scopes, **approving)
    except Exception:
        pairing.close()
        raise
    outcome = pairing.wait(20)
    pairing.close()
    assert outcome is not None and outcome.status == "approved", outcome
    return outcome


class RunningBear:
    """A paired bear online as itself: its store, DeviceSync, and the command endpoint on
    DeviceSync's own MQTT link."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.restarts = 0
        self.unpaired = threading.Event()

    def __enter__(self) -> RunningBear:
        from agent.commands import BearControls, CommandProcessor
        from agent.credentials import fleet_key
        from agent.pairing import connect_with_retry
        from agent.store import ConversationStore
        from agent.uplink import broker_settings
        from sync.commands_link import CommandsLink

        settings = self.settings
        self.store = ConversationStore.open(settings.store)
        self.sync = connect_with_retry(lambda: connected_sync(broker_settings(settings),
                                                               self.store))
        controls = BearControls(settings, store=lambda: self.store, restart=self._restart,
                                unpaired=self.unpaired.set)
        self.processor = CommandProcessor(controls, settings.device.id, fleet_key(settings))
        self.commands = CommandsLink(self.sync.link, self.processor).attach()
        time.sleep(0.2)  # SUBACK of down/cmd and down/config
        return self

    def _restart(self) -> None:
        self.restarts += 1

    def __exit__(self, *exc: object) -> None:
        self.commands.close()
        self.sync.close()
        self.store.close()


def connected_sync(settings: Settings, store):
    """A DeviceSync of ``store`` connected with ``settings`` (closed again if refused)."""
    from config.errors import SyncError
    from sync.device import DeviceSync

    sync = DeviceSync(settings, store, settings.device.id, "test")
    try:
        sync.connect()
    except SyncError:
        sync.close()
        raise
    return sync


@contextmanager
def serving(settings, poll_s: float = 60.0) -> Iterator[Any]:
    """The fleet service in a thread (``poll_s`` long: only NOTIFY wakes it in time)."""
    from sync.cloud.fleet_service import RequestService

    service = RequestService(settings, poll_s=poll_s)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            service.run()
        except BaseException as exc:  # shown by the test, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield service
    finally:
        service.stop.set()
        thread.join(poll_s + 5)
    assert not errors, errors

