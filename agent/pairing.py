"""Pairing with the paw: hold 5 s to pair, 15 s to factory-reset.

Holding the paw for ``pairing.hold_pair_s`` arms pairing (the LED pulses blue); letting go
before ``pairing.hold_reset_s`` starts it: the bear makes a 12-digit one-time code, a claim
id and a nonce, connects with its OWN broker login (made at manufacture), publishes a
retained claim on ``teddy/v1/<device_id>/up/claim`` sealed to the cloud's claim key (from
manufacture), and speaks the code twice. When the parent approves, the cloud answers on
``down/claim`` with a signed answer bound to that claim (claim id, nonce, expiry); the bear
verifies it against the claim-answer key it got at manufacture (a foreign answer is
ignored), seals the pairing record (:mod:`agent.credentials`), records the parent's consent
(source ``cloud``), the LED turns green, and ``on_paired`` reopens the store. A rejected or
expired claim shows ``error`` and the bear stays unpaired. A paired bear does not pair again
until it is unpaired or factory-reset; the reset keeps a release notice (the old pairing's
id and release token, nothing about the family) that the next claim carries, so the cloud
can verify that the old pairing ended on this bear. Holding on to ``pairing.hold_reset_s``
is a factory reset (:mod:`agent.factory_reset`): LED red, then off.
"""

from __future__ import annotations

import base64
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from agent.credentials import CredentialVault, FleetCredentials
from config.errors import ProtocolError, SyncError, TeddyError
from config.settings import Settings
from hardware.led import StatusLight
from sync.protocol import ClaimAnswer, ClaimBody, ClaimRequest, PairingGrant, Release
from sync.protocol.claim import code_digest, open_grant, seal_request

logger = logging.getLogger(__name__)

CODE_DIGITS = 12
"""Digits of a one-time code (spoken in groups of four; docs/security.md gives the odds of
two waiting bears sharing one)."""
T = TypeVar("T")

RESET_LED_S = 2.0
"""Seconds the LED blinks red during a factory reset before it goes off."""
RELEASE_NOTICE = "release.json"
"""File (in the data dir) a factory reset leaves: the proof that releases the old pairing."""


class PairingSetupError(TeddyError, RuntimeError):
    """The bear cannot pair: it was not provisioned with the cloud's claim keys."""


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
                 on_pair: Callable[[], object], on_reset: Callable[[], None]) -> None:
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
        led: StatusLight,
        say: Callable[[str], Any],
        grant_consent: Callable[[str, tuple[str, ...]], None] | None = None,
        on_paired: Callable[[FleetCredentials], None] | None = None,
        before_reset: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        before_claim: Callable[[], None] | None = None,
        after_failed: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        """The bear's settings (``pairing`` and ``mqtt`` sections)."""
        self.device_id = device_id
        """This bear."""
        self.led = led
        """The bear's LED (:class:`hardware.led.StatusLed`, or any ``StatusLight``)."""
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
        self._before_claim = before_claim
        self._after_failed = after_failed
        self._claimed = False
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
        if outcome.status != "approved" and self._claimed and self._after_failed is not None:
            self._after_failed()  # the bear's own link comes back (see before_claim)
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

        from sync.client import MqttLink

        if self.vault.exists():
            return PairingOutcome("failed", "this bear is already paired — unpair it from the "
                                            "parent app, or factory-reset it (hold the paw 15 s)")
        claim_key, verify_key = self._manufacture_keys()
        self.led.show("pairing")
        code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
        claim_id = "c" + secrets.token_hex(12)
        private = X25519PrivateKey.generate()
        body = ClaimBody(claim_id=claim_id, device_id=self.device_id,
                         code_digest=code_digest(claim_id, code), nonce=secrets.token_hex(16),
                         requested_at=self._clock(), firmware=_firmware(),
                         release=read_release_notice(self.settings))
        request = seal_request(body, private, claim_key)
        answers: queue.Queue[bytes] = queue.Queue()
        # The broker binds this login to ONE client id (teddy-<id>): the bear's running link
        # (its uplink) lets go first, or the two would take the session from each other.
        self._claimed = True
        if self._before_claim is not None:
            self._before_claim()
        link = MqttLink(self.settings.mqtt, client_id=f"teddy-{self.device_id}")
        link.subscribe_to(ClaimAnswer, lambda m: answers.put(m.payload), device_id=self.device_id)
        with link:
            link.connect()
            # the broker drops the retained request when the code expires (even if this
            # bear loses power before it can clear it)
            link.publish(request, self.device_id, expiry_s=self.settings.pairing.code_ttl_s)
            logger.info("claim %s published; speaking the code", claim_id)
            self._speak_code(code)
            deadline = time.monotonic() + self.settings.pairing.code_ttl_s - (
                self._clock() - body.requested_at)
            outcome = self._await_answer(answers, deadline, private, body, verify_key)
            link.clear_retained(ClaimRequest, self.device_id).wait(5)
        if outcome.status == "approved" and self._on_paired is not None:
            self._on_paired(self.vault.load())
        return outcome

    def _manufacture_keys(self) -> tuple[str, bytes]:
        pairing = self.settings.pairing
        if not (pairing.claim_key and pairing.claim_verify_key and pairing.fleet_key):
            raise PairingSetupError("this bear has no claim keys from manufacture — provision "
                                    "it with scripts/provision-device --from-cloud BUNDLE")
        return pairing.claim_key, base64.b64decode(pairing.claim_verify_key)

    def _speak_code(self, code: str) -> None:
        spaced = ", ".join(" ".join(code[i:i + 4]) for i in range(0, len(code), 4))
        for _ in range(self.settings.pairing.speak_times):
            try:
                self._say(f"My pairing code is {spaced}.")
            except Exception as exc:  # a mute bear still pairs if the code was heard once
                logger.warning("could not speak the pairing code: %s", exc)

    def _await_answer(self, answers: queue.Queue[bytes], deadline: float, private: Any,
                      body: ClaimBody, verify_key: bytes) -> PairingOutcome:
        while (remaining := deadline - time.monotonic()) > 0:
            if self._cancel.is_set():
                return PairingOutcome("failed", "pairing cancelled")
            try:
                payload = answers.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                continue
            answer = self._verified(payload, body, verify_key) if payload else None
            if answer is None:
                continue
            if answer.status == "rejected":
                return PairingOutcome("rejected", answer.reason)
            try:
                return self._accept(open_grant(answer, private), answer)
            except ProtocolError as exc:
                return PairingOutcome("failed", str(exc))
        return PairingOutcome("expired", f"nobody entered the code within "
                                         f"{self.settings.pairing.code_ttl_s:g} s")

    def _verified(self, payload: bytes, body: ClaimBody, verify_key: bytes
                  ) -> ClaimAnswer | None:
        """The answer to THIS claim signed by the cloud's claim key, else None (ignored)."""
        try:
            answer = ClaimAnswer.from_payload(payload)
            answer.verify(verify_key)
        except ProtocolError as exc:
            logger.warning("ignored a claim answer: %s", exc)
            return None
        if (answer.claim_id, answer.nonce, answer.device_id) != (body.claim_id, body.nonce,
                                                                 self.device_id):
            logger.info("ignored an answer to another claim (%s)", answer.claim_id)
            return None
        if answer.expires_at < self._clock():
            logger.warning("ignored an expired answer to claim %s", answer.claim_id)
            return None
        return answer

    def _accept(self, grant: PairingGrant, answer: ClaimAnswer) -> PairingOutcome:
        fleet_key = self.settings.pairing.fleet_key
        if fleet_key is None:  # checked before the claim (_manufacture_keys)
            raise PairingSetupError("this bear has no fleet key from manufacture — provision "
                                    "it with scripts/provision-device --from-cloud BUNDLE")
        self.vault.save(FleetCredentials(
            device_id=self.device_id, mqtt_username=self.settings.mqtt.username or "",
            mqtt_password="", fleet_public_key=base64.b64decode(fleet_key),
            paired_at=self._clock(), pairing_id=answer.pairing_id, parent=grant.parent,
            release_token=grant.release_token))
        self._grant_consent(grant.parent, tuple(grant.scopes))
        forget_release_notice(self.settings)
        return PairingOutcome("approved", device_id=self.device_id)

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
        keep_release_notice(self.settings)
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
    """``settings`` with the broker login an older pairing sealed; a bear made at
    manufacture keeps its own login from its config (the record holds no password).

    Raises :class:`agent.credentials.CredentialsError` when the bear is not paired.
    """
    credentials = CredentialVault(settings.store).load()
    if not credentials.mqtt_password:
        return settings
    mqtt = settings.mqtt.model_copy(update={"username": credentials.mqtt_username,
                                            "password": _secret(credentials.mqtt_password)})
    return settings.model_copy(update={"mqtt": mqtt})


def keep_release_notice(settings: Settings) -> bool:
    """Before a factory reset shreds the pairing record: keep its release proof (pairing id
    and release token, nothing about the family) so the bear's next claim can show the
    cloud that the old pairing ended here. False when the bear was not paired."""
    import json
    import os

    vault = CredentialVault(settings.store)
    try:
        record = vault.load() if vault.exists() else None
    except TeddyError as exc:
        logger.warning("the pairing record does not open (%s); no release notice kept", exc)
        return False
    if record is None or not record.pairing_id or not record.release_token:
        return False
    path = Path(settings.store.data_dir) / RELEASE_NOTICE
    tmp = path.with_name(RELEASE_NOTICE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"pairing_id": record.pairing_id, "token": record.release_token}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    logger.info("factory reset: release notice of pairing %s kept", record.pairing_id)
    return True


def read_release_notice(settings: Settings) -> Release | None:
    """The release proof a factory reset left, if any (a malformed one is ignored)."""
    import json

    path = Path(settings.store.data_dir) / RELEASE_NOTICE
    try:
        data = json.loads(path.read_text())
        return Release(pairing_id=data["pairing_id"], token=data["token"],
                       reason="factory-reset")
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        logger.warning("ignored a malformed %s: %s", path, exc)
        return None


def forget_release_notice(settings: Settings) -> None:
    """Remove the release notice once a new pairing is in place."""
    (Path(settings.store.data_dir) / RELEASE_NOTICE).unlink(missing_ok=True)


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
