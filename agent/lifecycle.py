"""The appliance's life under systemd: READY, watchdog, signals, the sync link, ``offline``.

:func:`serve` runs an already-built voice loop the way ``teddy-agent.service`` expects:

- READY=1 once it is called (the caller has opened store, audio and model by then);
- WATCHDOG=1 at half ``WatchdogSec`` while the loop keeps stepping (:class:`Watchdog`);
- SIGTERM / SIGINT: the loop finishes the turn in progress (a turn is stored with its outbox
  row in one transaction, so it is kept whole or not at all), the sync link stops,
  publishes ``offline`` and disconnects, STOPPING=1, and :func:`serve` returns;
- SIGHUP: the config file is read again; what can change live (``logging.level``) is
  applied, anything else is reported as needing a restart;
- with a store (a parent consented, or pairing did): the health monitor, and the uplink
  (:mod:`agent.uplink`) that syncs the outbox, takes signed fleet commands once paired and
  publishes health and alerts.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from agent.crash_alert import take_pending
from agent.uplink import BearParts
from config.errors import TeddyError
from config.settings import Settings, load_settings
from sync.systemd_notify import SystemdNotifier, Watchdog

if TYPE_CHECKING:
    from agent.health import HealthMonitor
    from agent.pairing import Pairing
    from agent.uplink import Uplink
    from hardware.led import StatusLight

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""Signals that end the appliance after the current turn."""

LIVE_SECTIONS = ("logging",)
"""Settings sections a SIGHUP applies without a restart."""

IDLE_LED_STATES = ("off", "alert", "offline")
"""LED states that mean "idle": only these are replaced by the idle state."""
IDLE_LED_EVERY = 2.0
"""Seconds between looks at open alerts and the link for the idle LED."""
ALERT_LED_SEVERITIES = ("warning", "high", "critical")
"""Open alerts of these severities turn the idle LED to ``alert``."""


Heartbeat = Callable[[float | None], None]
"""The hook a loop calls every step: ``heartbeat(None)``, or ``heartbeat(seconds)`` before
blocking for up to that long on purpose."""


class ServedBear(BearParts, Protocol):
    """What the lifecycle needs of the bear (:class:`agent.runtime.Bear`)."""

    def reopen_store(self) -> None:
        """Open the store again (pairing created it)."""

    def close_store(self) -> None:
        """Stop keeping anything (before a factory reset)."""


class ServedLoop(Protocol):
    """What the lifecycle needs of the voice loop (:class:`agent.voice.loop.VoiceLoop`); its
    ``voice`` and ``ears``, when it has them, say whether the bear is busy."""

    heartbeat: Heartbeat
    """Called every step (the lifecycle installs the watchdog's)."""
    def idle_state(self) -> str:
        """The LED state while idle (the lifecycle replaces it with its own)."""

    def run(self) -> None:
        """Listen until asked to stop."""

    def request_stop(self) -> None:
        """Finish the turn in progress and return from :meth:`run`."""


class ServedAppliance(Protocol):
    """What pairing needs of the appliance (:class:`agent.voice.appliance.Appliance`)."""

    @property
    def led(self) -> StatusLight:
        """The status LED."""

    @property
    def voice(self) -> Any:
        """The bear's voice (``say(text)``)."""

    @property
    def paw_listeners(self) -> list[tuple[Callable[[], None], Callable[[], None]]]:
        """More ``(pressed, released)`` hooks for the paw."""


class Lifecycle:
    """Signals, watchdog and sync around one voice loop. Use :func:`serve`."""

    def __init__(self, settings: Settings, bear: ServedBear, loop: ServedLoop,
                 config_file: str | None, notifier: SystemdNotifier | None = None,
                 appliance: ServedAppliance | None = None) -> None:
        self.settings = settings
        """The settings in force (replaced by a SIGHUP reload)."""
        self.bear = bear
        """The bear (store, alerts)."""
        self.loop = loop
        """The voice loop: ``run()``, ``request_stop()`` and a ``heartbeat`` hook."""
        self.notifier = notifier or SystemdNotifier.from_environment()
        """Where READY/WATCHDOG/STOPPING go."""
        self.watchdog = Watchdog(self.notifier)
        """Pings while the loop steps."""
        self.reloads = 0
        """SIGHUP reloads handled."""
        self._config_file = config_file
        self._reload_wanted = threading.Event()
        self._uplink: Uplink | None = None
        self._monitor: HealthMonitor | None = None
        self._appliance = appliance
        self._pairing: Pairing | None = None
        self._led_checked = float("-inf")
        self._idle_led = "off"

    # -- signals (handlers only set flags; the loop thread does the work) --------------------

    def _on_stop(self, signum: int, frame: Any) -> None:
        self.loop.request_stop()

    def _on_hup(self, signum: int, frame: Any) -> None:
        self._reload_wanted.set()

    def heartbeat(self, grace: float | None = None) -> None:
        """Called by the loop each step (and before a long blocking step, with ``grace``)."""
        self.watchdog.alive(grace)
        self._refresh_idle_led()
        if self._reload_wanted.is_set():
            self._reload_wanted.clear()
            self.reload()

    def reload(self) -> None:
        """Re-read the config; apply the live sections; report the rest."""
        from config.logs import configure_logging

        self.notifier.reloading()
        try:
            fresh = load_settings(self._config_file)
        except TeddyError as exc:
            logger.error("config reload refused, keeping the running config: %s", exc)
            self.notifier.ready("config reload failed; running config kept")
            return
        configure_logging(fresh.logging.level, fresh)
        logger.debug("reload %d: logging.level now %s", self.reloads + 1, fresh.logging.level)
        changed = [name for name in type(fresh).model_fields if name not in LIVE_SECTIONS
                   and getattr(fresh, name) != getattr(self.settings, name)]
        self.settings = fresh
        self.reloads += 1
        note = f"; restart to apply: {', '.join(changed)}" if changed else ""
        logger.info("config reloaded (live: %s)%s", ", ".join(LIVE_SECTIONS), note)
        self.notifier.ready(f"config reloaded{note}")

    # -- the uplink and the health monitor --------------------------------------------------

    def start_uplink(self) -> None:
        """Watch the bear's health; sync, take fleet commands and publish health when there
        is a store (see :mod:`agent.uplink`)."""
        from agent.health import HealthMonitor
        from agent.identity import device_id
        from agent.uplink import Uplink

        if self.bear.store is not None:
            self._monitor = HealthMonitor(self.settings, self.bear.alerts,
                                          device_id(self.settings))
            self._monitor.start()
        uplink = Uplink(self.settings, self.bear, self._monitor,
                        restart=self.loop.request_stop, is_busy=self._busy,
                        announce=self._announce)
        self._uplink = uplink if uplink.start() else None

    def _announce(self, line: str) -> None:
        """Stop what the bear is saying and say ``line`` (a parent paused it)."""
        voice = getattr(self.loop, "voice", None)
        if voice is None:
            return
        try:
            voice.stop()
            voice.say(line)
        except Exception:  # the speaker's trouble never stops the command thread
            logger.exception("could not say that the bear is paused")

    def _busy(self) -> bool:
        voice = getattr(self.loop, "voice", None)
        ears = getattr(self.loop, "ears", None)
        return bool(getattr(voice, "speaking", False) or getattr(ears, "in_speech", False))

    def stop_uplink(self) -> None:
        """Stop syncing, publish ``offline`` and disconnect; stop the monitor. Idempotent."""
        if self._uplink is not None:
            self._uplink.close()
            self._uplink = None
        if self._monitor is not None:
            self._monitor.close()
            self._monitor = None

    # -- the LED while idle: open alerts, a lost link ----------------------------------------

    def idle_state(self) -> str:
        """``alert`` while an operational alert of warning or worse is open, ``offline``
        while the uplink is down, else ``off``. Wellbeing alerts are for the parent only:
        the child never sees them on the LED."""
        if self._monitor is not None and any(
                a.severity in ALERT_LED_SEVERITIES and not a.kind.startswith("wellbeing.")
                for a in self._monitor.open_alerts()):
            return "alert"
        if self._uplink is not None and not self._uplink.connected:
            return "offline"
        return "off"

    def _refresh_idle_led(self) -> None:
        led = getattr(self._appliance, "led", None)
        now = time.monotonic()
        if led is None or now - self._led_checked < IDLE_LED_EVERY:
            return
        self._led_checked = now
        self._idle_led = self.idle_state()
        shown = getattr(led, "state", None)
        if shown in IDLE_LED_STATES and shown != self._idle_led:
            led.show(self._idle_led)

    # -- pairing (the paw held 5 s) and factory reset (15 s) ---------------------------------

    def start_pairing(self) -> None:
        """Let the paw pair the bear (LED, spoken code); needs the appliance's LED and voice."""
        from agent.identity import device_id
        from agent.pairing import Pairing

        appliance = self._appliance
        if appliance is None:
            return
        self._pairing = Pairing(self.settings, device_id(self.settings), appliance.led,
                                appliance.voice.say, on_paired=lambda _: self.rejoin(),
                                before_reset=self.forget, before_claim=self.stop_uplink,
                                after_failed=self.start_uplink)
        appliance.paw_listeners.append((self._pairing.paw_pressed, self._pairing.paw_released))

    def rejoin(self) -> None:
        """Paired: open the store the pairing's consent created, reconnect as the bear itself."""
        logger.info("paired; reconnecting with the bear's own login")
        self.stop_uplink()
        self.bear.reopen_store()
        self.start_uplink()

    def forget(self) -> None:
        """Before a factory reset shreds everything: let go of the link and the store."""
        self.stop_uplink()
        self.bear.close_store()

    def stop_pairing(self) -> None:
        """Stop taking paw holds for pairing. Idempotent."""
        if self._pairing is not None:
            self._pairing.close()
            self._pairing = None

    # -- the whole life ------------------------------------------------------------------------

    def serve(self) -> int:
        """READY, run the loop until a stop signal, shut down in order; returns 0."""
        for alert in take_pending(self.settings.store.data_dir):
            self.bear.alerts.raise_alert(alert.get("kind", "service.failed"),
                                         alert.get("severity", "critical"),
                                         alert.get("message", "a Teddy unit failed"),
                                         unit=alert.get("unit", ""))
        previous = {sig: signal.signal(sig, self._on_stop) for sig in STOP_SIGNALS}
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hup)
        self.loop.heartbeat = self.heartbeat
        self.loop.idle_state = lambda: self._idle_led  # type: ignore[method-assign]
        try:
            self.start_uplink()
            self.start_pairing()
            self.notifier.ready("listening")
            with self.watchdog:
                self.loop.run()
            self.notifier.stopping("finishing")
        finally:
            self.stop_pairing()
            self.stop_uplink()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.notifier.close()
        return 0


def serve(settings: Settings, bear: ServedBear, loop: ServedLoop,
          config_file: str | None = None) -> int:
    """Run ``loop`` as the systemd service ``teddy-agent`` (see the module docstring)."""
    return Lifecycle(settings, bear, loop, config_file).serve()
