"""The appliance's one MQTT link and everything that rides on it.

One connection per bear (its own login once paired): the outbox sync, the fleet command
endpoint, and the health monitor's alerts and samples. It runs only when there is a store
(a parent consented, or pairing recorded consent); the outbox itself holds only turns the
parent allowed to sync.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Protocol

from config.settings import Settings
from sync.protocol import AlertMessage

if TYPE_CHECKING:
    from agent.alerts import AlertSink
    from agent.health.monitor import Outgoing
    from agent.health.signals import Signals
    from agent.store import ConversationStore
    from sync.client import MqttLink
    from sync.commands_link import CommandsLink
    from sync.device import DeviceSync

logger = logging.getLogger(__name__)

HEALTH_PUBLISH_EVERY = 5.0
"""Seconds between looks at the health monitor's outgoing alerts and samples."""


def broker_settings(settings: Settings) -> Settings:
    """``settings`` with the bear's own broker login once it is paired."""
    from agent.credentials import CredentialVault
    from agent.pairing import paired_settings

    if CredentialVault(settings.store).exists():
        return paired_settings(settings)
    return settings


class BearParts(Protocol):
    """What the uplink needs of the bear (:class:`agent.runtime.Bear`)."""

    @property
    def store(self) -> ConversationStore | None:
        """The store, or None while nothing is kept."""

    @property
    def alerts(self) -> AlertSink:
        """Where the bear's alerts go."""


class HealthFeed(Protocol):
    """What the uplink publishes for (:class:`agent.health.HealthMonitor`)."""

    @property
    def signals(self) -> Signals:
        """Live signals; the uplink sets ``broker_connected``."""

    def outgoing(self, now: float | None = None) -> list[Outgoing]:
        """Alerts and samples to publish now."""

    def mark_published(self, message: AlertMessage) -> None:
        """The cloud has committed this alert."""


class Uplink:
    """Sync thread, command endpoint and health publishing on one :class:`DeviceSync`."""

    def __init__(self, settings: Settings, bear: BearParts, monitor: HealthFeed | None = None,
                 restart: Callable[[], None] | None = None,
                 is_busy: Callable[[], bool] = lambda: False,
                 announce: Callable[[str], object] | None = None) -> None:
        self._settings = settings
        self._announce = announce
        self._bear = bear
        self._monitor = monitor
        self._restart = restart
        self._is_busy = is_busy
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sync: DeviceSync | None = None
        self._store: ConversationStore | None = None
        self._commands: CommandsLink | None = None
        self._link: MqttLink | None = None
        self._device_id = ""

    def start(self) -> bool:
        """Connect in the background; False (and nothing started) without a store."""
        from agent.commands import BearControls, open_command_endpoint
        from agent.identity import device_id
        from agent.runtime import FIRMWARE
        from agent.store import ConversationStore
        from sync.device import DeviceSync

        if self._bear.store is None:
            return self._start_commands_only()
        settings = broker_settings(self._settings)
        self._store = ConversationStore.open(settings.store, alerts=self._bear.alerts)
        self._device_id = device_id(settings)
        self._sync = DeviceSync(settings, self._store, self._device_id, FIRMWARE,
                                alerts=self._bear.alerts)
        controls = BearControls(settings, store=lambda: self._bear.store,
                                restart=self._restart, is_busy=self._is_busy,
                                announce=self._announce)
        self._commands = open_command_endpoint(self._sync.link, controls, self._sync.pending)
        self._spawn("sync", self._run_sync)
        if self._monitor is not None:
            self._spawn("health-publish", self._publish_health)
        return True

    def _start_commands_only(self) -> bool:
        """A bear that keeps nothing still takes the fleet's signed commands (delete-data,
        update, unpair) with its own login from manufacture: one link, no sync, no health.
        (identity issue: every bear can be reached by its fleet.)"""
        from agent.commands import BearControls, open_command_endpoint
        from agent.credentials import fleet_key
        from agent.identity import device_id
        from sync.client import MqttLink
        from sync.device import SESSION_EXPIRY

        if fleet_key(self._settings) is None or not self._settings.mqtt.username:
            logger.warning("no uplink: nothing is kept, and without a broker login and fleet "
                           "key from manufacture (provision-device --from-cloud) fleet commands "
                           "cannot reach this bear")
            return False
        self._device_id = device_id(self._settings)
        self._link = MqttLink(self._settings.mqtt, client_id=f"teddy-{self._device_id}",
                              clean_start=False, session_expiry=SESSION_EXPIRY)
        controls = BearControls(self._settings, store=lambda: self._bear.store,
                                restart=self._restart, is_busy=self._is_busy,
                                announce=self._announce)
        self._commands = open_command_endpoint(self._link, controls)
        self._link.start()
        logger.info("nothing is kept: the uplink only takes fleet commands")
        return True

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _run_sync(self) -> None:
        try:
            if self._sync is not None:
                self._sync.run(self._stop)
        except Exception:  # the bear keeps talking; turns stay in the outbox
            logger.exception("sync thread stopped")

    def _publish_health(self) -> None:
        """Hand alerts and samples to the link's receipt tracker: each is sent again until
        the cloud's ``down/receipt`` says it is committed; only then is an alert marked
        published in the journal (never on the broker's PUBACK)."""
        sync, monitor = self._sync, self._monitor
        if sync is None or monitor is None:
            return
        link, pending = sync.link, sync.pending
        while not self._stop.wait(HEALTH_PUBLISH_EVERY):
            monitor.signals.set("broker_connected", link.connected)
            try:
                for message in monitor.outgoing():
                    if isinstance(message, AlertMessage):
                        message = self._quoted(message)
                        pending.send(message, on_receipt=partial(monitor.mark_published,
                                                                 message))
                    else:
                        pending.send(message, latest_only=True)
            except Exception:
                logger.exception("publishing health failed; trying again")

    def _quoted(self, message: AlertMessage) -> AlertMessage:
        """A wellbeing alert with the child's line it points at, read from the sealed store
        at the moment it is sent (only with consent to send conversations to the app)."""
        from agent.health.monitor import with_quote

        store = self._store
        if store is None or message.conversation_id is None:
            return message
        try:
            return with_quote(message, store.quote)
        except Exception:  # the alert goes without its quote rather than not at all
            logger.exception("could not read the quote of alert %s", message.alert_id)
            return message

    @property
    def connected(self) -> bool:
        """Whether the link to the broker is up now."""
        if self._link is not None:
            return self._link.connected
        return self._sync is not None and self._sync.link.connected

    def close(self) -> None:
        """Stop the threads, close the command endpoint, publish ``offline``. Idempotent."""
        self._stop.set()
        if self._sync is not None:
            self._sync.wake()
        for thread in self._threads:
            thread.join(timeout=3)
        self._threads.clear()
        if self._commands is not None:
            self._commands.close()
            self._commands = None
        if self._link is not None:
            self._link.close()
            self._link = None
        if self._sync is not None:
            self._sync.close()
            self._sync = None
        if self._store is not None:
            self._store.close()
            self._store = None
