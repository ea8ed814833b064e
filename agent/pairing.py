"""Pairing with the paw: hold 5 s to pair, 15 s to factory-reset.

Holding the paw for ``pairing.hold_pair_s`` arms pairing (the LED pulses blue); letting go
before ``pairing.hold_reset_s`` starts it: the bear makes a 6-digit one-time code and a
claim id, connects with the claim credential (which the broker lets touch only
``teddy/v1/claim/<claim id>/...``), publishes a retained claim request carrying the code's
digest and a fresh X25519 public key, and speaks the code twice. When the parent approves
(``teddy-cloud fleet pair approve``), the answer holds the bear's own broker credentials
and the fleet's command-signing key, sealed to that X25519 key; the bear seals them on
disk (:mod:`agent.credentials`), records the parent's consent (source ``cloud``), the LED
turns green, and ``on_paired`` reconnects it as itself. A rejected or expired claim
shows ``error`` and the bear stays unpaired. Holding on to ``pairing.hold_reset_s`` is a
factory reset (:mod:`agent.factory_reset`): LED red, then off.
"""

from __future__ import annotations

import base64
import logging
import math
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from agent.credentials import CredentialVault, FleetCredentials
from config.errors import ProtocolError, SyncError, TeddyError
from config.settings import MqttSettings, Settings
from sync.protocol import ClaimAnswer, ClaimRequest, claim_topic
from sync.protocol.claim import code_digest, open_grant

logger = logging.getLogger(__name__)

CODE_DIGITS = 6
"""Digits of a one-time code."""
T = TypeVar("T")

RESET_LED_S = 2.0
"""Seconds the LED blinks red during a factory reset before it goes off."""


class PairingState(StrEnum):
    """Where the pairing machine is."""

    IDLE = "idle"
    """Not pairing (paired or not)."""
    ARMED = "armed"
    """The paw has been held long enough; letting go starts pairing."""
    PAIRING = "pairing"
    """The code was spoken; waiting for the parent's approval."""
    RESETTING = "resetting"
    """Factory reset under way."""


@dataclass(frozen=True)
class PairingOutcome:
    """How a pairing attempt ended."""

    status: str
    """``approved``, ``rejected``, ``expired`` or ``failed``."""
    reason: str = ""
    """Why it did not succeed (one line)."""
    device_id: str | None = None
    """The paired bear, when approved."""


class PawHold:
    """Turns paw presses and releases into *armed*, *pair* and *reset* by how long it is held."""

    def __init__(self, pair_after_s: float, reset_after_s: float, on_armed: Callable[[], None],
                 on_pair: Callable[[], None], on_reset: Callable[[], None]) -> None:
        self.pair_after_s = pair_after_s
        """Seconds of holding that arm pairing."""
        self.reset_after_s = reset_after_s
        """Seconds of holding that reset the bear."""
        self._on_armed, self._on_pair, self._on_reset = on_armed, on_pair, on_reset
        self._lock = threading.Lock()
        self._timers: list[threading.Timer] = []
        self._pressed_at: float | None = None
        self._reset_fired = False

    def pressed(self) -> None:
        """The paw went down."""
        with self._lock:
            self._cancel()
            self._pressed_at = time.monotonic()
            self._reset_fired = False
            self._timers = [threading.Timer(self.pair_after_s, self._on_armed),
                            threading.Timer(self.reset_after_s, self._reset)]
            for timer in self._timers:
                timer.daemon = True
                timer.start()

    def released(self) -> None:
        """The paw came up: pairing starts if it was held long enough (not for a reset)."""
        with self._lock:
            self._cancel()
            if self._pressed_at is None or self._reset_fired:
                return
            held = time.monotonic() - self._pressed_at
            self._pressed_at = None
        if self.pair_after_s <= held < self.reset_after_s:
            self._on_pair()

    def _reset(self) -> None:
        with self._lock:
            self._reset_fired = True
        self._on_reset()

    def _cancel(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers = []

    def close(self) -> None:
        """Cancel pending timers; idempotent."""
        with self._lock:
            self._cancel()


class Pairing:
    """The pairing state machine of one bear. :meth:`close` is idempotent."""

    def __init__(
        self,
        settings: Settings,
        device_id: str,
        led: Any,
        say: Callable[[str], Any],
        grant_consent: Callable[[str, tuple[str, ...]], None] | None = None,
        on_paired: Callable[[FleetCredentials], None] | None = None,
        before_reset: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        """The bear's settings (``pairing`` and ``mqtt`` sections)."""
        self.device_id = device_id
        """This bear."""
        self.led = led
        """A :class:`hardware.led.StatusLed` (or anything with ``show(state)``)."""
        self.vault = CredentialVault(settings.store)
        """Where the credentials are sealed."""
        self.state = PairingState.IDLE
        """Where the machine is."""
        self.outcome: PairingOutcome | None = None
        """How the last attempt ended."""
        self._say = say
        self._grant_consent = grant_consent or self._grant_in_store
        self._on_paired = on_paired
        self._before_reset = before_reset
        self._clock = clock
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._cancel = threading.Event()
        pairing = settings.pairing
        self.hold = PawHold(pairing.hold_pair_s, pairing.hold_reset_s, self._armed,
                            self.start, self.reset)
        """Paw hold timing; wire the paw's press/release to :meth:`paw_pressed`/``released``."""

    # --- the paw -------------------------------------------------------------------------

    def paw_pressed(self) -> None:
        """Forward the paw's press here (gpiozero's thread)."""
        self.hold.pressed()

    def paw_released(self) -> None:
        """Forward the paw's release here (gpiozero's thread)."""
        self.hold.released()

    def _armed(self) -> None:
        with self._lock:
            if self.state != PairingState.IDLE:
                return
            self.state = PairingState.ARMED
        self.led.show("pairing")
        logger.info("pairing armed: let go of the paw to pair")

    # --- pairing -------------------------------------------------------------------------

    def start(self) -> bool:
        """Start a pairing attempt in the background; False if one is running."""
        with self._lock:
            if self.state in (PairingState.PAIRING, PairingState.RESETTING):
                return False
            self.state = PairingState.PAIRING
            self._cancel.clear()
            self._worker = threading.Thread(target=self._run, name="teddy-pairing", daemon=True)
            self._worker.start()
        return True

    def wait(self, timeout: float | None = None) -> PairingOutcome | None:
        """Wait for the running attempt to end; its outcome (None if still running)."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
            if worker.is_alive():
                return None
        return self.outcome

    def _run(self) -> None:
        try:
            outcome = self._pair()
        except TeddyError as exc:
            outcome = PairingOutcome("failed", str(exc))
        except Exception as exc:
            logger.exception("pairing crashed")
            outcome = PairingOutcome("failed", f"{type(exc).__name__}: {exc}")
        self.outcome = outcome
        if outcome.status == "approved":
            self.led.show("paired")
        elif not self._cancel.is_set():
            self.led.show("error")
        with self._lock:
            if self.state == PairingState.PAIRING:
                self.state = PairingState.IDLE
        logger.info("pairing ended: %s %s", outcome.status, outcome.reason)

    def _pair(self) -> PairingOutcome:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        from sync.client import MqttLink

        self.led.show("pairing")
        code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
        claim_id = "c" + secrets.token_hex(12)
        private = X25519PrivateKey.generate()
        public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        requested_at = self._clock()
        request = ClaimRequest(claim_id=claim_id, device_id=self.device_id,
                               code_digest=code_digest(claim_id, code), requested_at=requested_at,
                               public_key=base64.b64encode(public).decode(),
                               firmware=_firmware())
        answers: queue.Queue[bytes] = queue.Queue()
        link = MqttLink(self._claim_mqtt(), client_id=claim_id)
        answer_topic = claim_topic(claim_id, "down/answer")
        request_topic = claim_topic(claim_id, "up/request")
        link.client.message_callback_add(answer_topic,
                                         lambda c, u, m: answers.put(bytes(m.payload)))
        link.after_connect(lambda: link.client.subscribe(answer_topic, qos=1))
        with link:
            link.connect()
            link.client.publish(request_topic, request.to_payload(), qos=1, retain=True,
                                properties=self._expiring())
            logger.info("claim %s published; speaking the code", claim_id)
            self._speak_code(code)
            deadline = time.monotonic() + self.settings.pairing.code_ttl_s - (
                self._clock() - requested_at)
            outcome = self._await_answer(answers, deadline, private)
            link.client.publish(request_topic, b"", qos=1, retain=True)
            link.client.publish(answer_topic, b"", qos=1, retain=True).wait_for_publish(5)
        if outcome.status == "approved" and self._on_paired is not None:
            self._on_paired(self.vault.load())
        return outcome

    def _expiring(self) -> Any:
        """MQTT v5 properties: the broker drops the retained request when the code expires
        (even if this bear loses power before it can clear it)."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        properties = Properties(PacketTypes.PUBLISH)
        properties.MessageExpiryInterval = max(1, math.ceil(self.settings.pairing.code_ttl_s))
        return properties

    def _claim_mqtt(self) -> MqttSettings:
        pairing = self.settings.pairing
        return self.settings.mqtt.model_copy(update={"username": pairing.claim_username,
                                                     "password": pairing.claim_password})

    def _speak_code(self, code: str) -> None:
        spaced = ", ".join(code)
        for _ in range(self.settings.pairing.speak_times):
            try:
                self._say(f"My pairing code is {spaced}.")
            except Exception as exc:  # a mute bear still pairs if the code was heard once
                logger.warning("could not speak the pairing code: %s", exc)

    def _await_answer(self, answers: queue.Queue[bytes], deadline: float,
                      private: Any) -> PairingOutcome:
        while (remaining := deadline - time.monotonic()) > 0:
            if self._cancel.is_set():
                return PairingOutcome("failed", "pairing cancelled")
            try:
                payload = answers.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                continue
            if not payload:
                continue
            try:
                answer = ClaimAnswer.from_payload(payload)
                if answer.status == "rejected":
                    return PairingOutcome("rejected", answer.reason)
                return self._accept(open_grant(answer, private))
            except ProtocolError as exc:
                return PairingOutcome("failed", str(exc))
        return PairingOutcome("expired", f"nobody entered the code within "
                                         f"{self.settings.pairing.code_ttl_s:g} s")

    def _accept(self, grant: Any) -> PairingOutcome:
        if grant.device_id != self.device_id:
            return PairingOutcome("failed", f"the cloud answered for device {grant.device_id!r}")
        self.vault.save(FleetCredentials(
            device_id=grant.device_id, mqtt_username=grant.mqtt_username,
            mqtt_password=grant.mqtt_password,
            fleet_public_key=base64.b64decode(grant.fleet_public_key), paired_at=self._clock()))
        self._grant_consent(grant.parent, tuple(grant.scopes))
        return PairingOutcome("approved", device_id=grant.device_id)

    def _grant_in_store(self, parent: str, scopes: tuple[str, ...]) -> None:
        from agent.store import ConversationStore, Scope

        with ConversationStore.open(self.settings.store, create=True) as store:
            store.grant_consent(parent, [Scope(s) for s in scopes], source="cloud")

    # --- factory reset -------------------------------------------------------------------

    def reset(self) -> None:
        """Factory reset now: LED red, crypto-shred everything, LED off."""
        from agent.factory_reset import factory_reset

        with self._lock:
            self.state = PairingState.RESETTING
        self._cancel.set()
        self.led.show("factory_reset")
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=5)
        if self._before_reset is not None:
            self._before_reset()
        factory_reset(self.settings)
        time.sleep(RESET_LED_S if self.settings.pairing.hold_reset_s >= 5 else 0.2)
        self.led.show("off")
        with self._lock:
            self.state = PairingState.IDLE

    def close(self) -> None:
        """Stop timers and any attempt; idempotent."""
        self.hold.close()
        self._cancel.set()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=5)

    def __enter__(self) -> Pairing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def paired_settings(settings: Settings) -> Settings:
    """``settings`` with the bear's own broker login from its sealed credentials.

    Raises :class:`agent.credentials.CredentialsError` when the bear is not paired.
    """
    credentials = CredentialVault(settings.store).load()
    mqtt = settings.mqtt.model_copy(update={"username": credentials.mqtt_username,
                                            "password": _secret(credentials.mqtt_password)})
    return settings.model_copy(update={"mqtt": mqtt})


def connect_with_retry(open_connected: Callable[[], T], timeout: float = 10.0) -> T:
    """``open_connected()`` until the broker accepts: a fresh account may wait for the
    broker to reload its password file. Each try must build a new connection."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return open_connected()
        except SyncError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.3)


def _secret(text: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(text)


def _firmware() -> str:
    from agent import __version__

    return __version__


def fan_out(*callbacks: Callable[[], None] | None) -> Callable[[], None]:
    """One paw callback calling several (the voice loop's and pairing's), in order."""
    chosen = [c for c in callbacks if c is not None]

    def call_all() -> None:
        for callback in chosen:
            callback()

    return call_all
