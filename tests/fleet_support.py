"""Shared parts of the pairing, command and fleet tests: an authenticating Mosquitto with
the production ACL shape, a bear's settings, a speaking fake, and a real pairing run."""

from __future__ import annotations

import re
import secrets
import threading
import time
from pathlib import Path

from support import ShippedBroker

from config.settings import Settings

FLEET_PASSWORD = secrets.token_urlsafe(16)
INGEST_PASSWORD = secrets.token_urlsafe(16)
CLAIM_PASSWORD = secrets.token_urlsafe(16)

LEGACY_CLAIM_ACL = """\
user claim
pattern readwrite teddy/v1/claim/%c/#
"""
"""The fleet-wide claim account of today's pairing (issue 12 removes it with the new pairing):
not in the shipped config, so kept here, beside the broker's dynamic-security accounts, in
a password file and ACL that only ever name ``claim``."""


class SecureBroker(ShippedBroker):
    """The shipped broker config (dynamic-security plugin, no anonymous clients) with the
    cloud's accounts made by the real BrokerAuth: ``svc.fleet`` (fleet operator) and
    ``svc.ingest`` (ingest). Bears' accounts come from pairing, through the same BrokerAuth.
    Until the new pairing lands, also the legacy ``claim`` account and the fleet's access to
    the legacy claim topics."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.passwd = workdir / "passwd"
        self.acl = workdir / "acl"
        self.passwd.write_text(f"claim:{broker_accounts_hash(CLAIM_PASSWORD)}\n")
        self.acl.write_text(LEGACY_CLAIM_ACL)
        super().__init__(workdir)
        self._extra = f"password_file {self.passwd}\nacl_file {self.acl}\n"
        self.config.write_text(self.config.read_text() + self._extra)

    def start(self) -> None:
        """Start the broker; the first time, make the cloud's accounts."""
        super().start()
        if getattr(self, "_made", False):
            return
        with self.auth() as auth:
            auth.set_service("svc.fleet", "fleet", FLEET_PASSWORD)
            auth.set_service("svc.ingest", "ingest", INGEST_PASSWORD)
            auth._ensure_role("legacy-claim", [  # noqa: SLF001 - test-only legacy topics
                {"acltype": kind, "topic": "teddy/v1/claim/#", "allow": True}
                for kind in ("publishClientSend", "subscribePattern")])
            auth._run({"command": "addClientRole", "username": "svc.fleet",  # noqa: SLF001
                       "rolename": "legacy-claim"})
        self._made = True


def broker_accounts_hash(password: str) -> str:
    """A Mosquitto password-file hash (``$7$``, PBKDF2-SHA512) of ``password``."""
    import base64
    import hashlib
    import os

    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101, 64)
    return f"$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def cloud_env(base: dict[str, str], broker: SecureBroker, tmp_path: Path,
              username: str = "svc.fleet") -> dict[str, str]:
    """Environment of ``teddy-cloud`` as the fleet's operator (``username="svc.ingest"``:
    as the ingest service)."""
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
    return Settings(
        mqtt={"port": broker.port, "username": username, "password": _PASSWORDS[username]},
        cloud={"pg_dsn": dsn},
        store={"data_dir": tmp_path / "cloud"},
        fleet={"signing_key_file": tmp_path / "cloud" / "fleet-signing.key",
               "broker_admin_password_file": broker.admin_password_file,
               "claim_collect_s": 0.5, "wait_s": 15, **fleet},
    )


_PASSWORDS = {"svc.fleet": FLEET_PASSWORD, "svc.ingest": INGEST_PASSWORD}


def bear_settings(broker: SecureBroker, data_dir: Path, **pairing: object) -> Settings:
    """A bear with the claim credential and a unique device id."""
    return Settings(
        device={"id": f"bear-{secrets.token_hex(4)}"},
        store={"data_dir": data_dir},
        mqtt={"port": broker.port},
        sync={"ack_timeout": 2, "once_timeout": 20},
        pairing={"claim_password": CLAIM_PASSWORD, "hold_pair_s": 0.3, "hold_reset_s": 1.2,
                 **pairing},
    )


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
              scopes: tuple[str, ...] = ("keep", "sync"), led=None):
    """Pair ``bear`` for real (claim over MQTT, approval in-process); returns the outcome."""
    from agent.pairing import Pairing
    from sync.cloud.pairing import approve

    voice = SpeakingFake()
    pairing = Pairing(bear, bear.device.id, led or RecordingLed(), voice.say)
    pairing.start()
    voice.wait_for(1)
    approve(cloud, conn, voice.code(), parent, scopes)
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
        from agent.credentials import CredentialVault
        from agent.pairing import connect_with_retry, paired_settings
        from agent.store import ConversationStore
        from sync.commands_link import CommandsLink

        settings = self.settings
        credentials = CredentialVault(settings.store).load()
        self.store = ConversationStore.open(settings.store)
        self.sync = connect_with_retry(lambda: connected_sync(paired_settings(settings),
                                                               self.store))
        controls = BearControls(settings, store=lambda: self.store, restart=self._restart,
                                unpaired=self.unpaired.set)
        self.processor = CommandProcessor(controls, settings.device.id,
                                          credentials.fleet_public_key)
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
