"""The appliance's listen loop: paw, microphone, ears, the bear's pipeline, the voice.

One listener thread (the caller of :meth:`VoiceLoop.run`) reads frames, runs VAD and
recognition, asks the bear for a reply and speaks it; the microphone is muted while the
bear speaks. Paw callbacks arrive on gpiozero's thread: they only stop the voice
(barge-in) and queue an event for the listener. :meth:`VoiceLoop.request_stop` (from a
SIGTERM handler) lets the current turn finish: an utterance in progress is ended,
answered and spoken before :meth:`run` returns.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from agent.voice.ears import Ears, Heard
from agent.voice.errors import SpeechError
from agent.voice.modes import ListeningGate
from agent.voice.phrases import phrase
from agent.voice.speech import Voice
from config.voice import VoiceSettings
from hardware.audio import AlertHook, Microphone
from hardware.errors import AudioDeviceError
from hardware.led import StatusLight

logger = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.1
"""Longest the loop waits for a frame before looking at paw events and the stop flag."""


@dataclass(frozen=True)
class SpokenTurn:
    """One spoken turn, for tests and benchmarks (kept in memory, a few at a time)."""

    heard: Heard
    """The utterance, its transcript and timings."""
    reply: str
    """What the bear said."""
    asked_again: bool
    """True when the transcript was too unsure and the bear asked to hear it again."""
    responded_at: float
    """``time.monotonic()`` when the reply text existed."""
    first_sample_at: float | None
    """``time.monotonic()`` when the first sample went to the speaker (None: not played)."""
    completed: bool
    """Whether the reply was spoken to the end (False: a paw press stopped it)."""


class VoiceLoop:
    """Listens, answers through ``respond``, and speaks, until asked to stop."""

    def __init__(
        self,
        settings: VoiceSettings,
        microphone: Microphone,
        ears: Ears,
        voice: Voice,
        respond: Callable[[str], str],
        wake_ears: Ears | None = None,
        led: StatusLight | None = None,
        alert: AlertHook | None = None,
    ) -> None:
        self.settings = settings
        """Voice settings (thresholds, mode)."""
        self.microphone = microphone
        """Where frames come from."""
        self.ears = ears
        """VAD and recognizer for utterances."""
        self.voice = voice
        """Synthesizer and speaker."""
        self.gate = ListeningGate(settings)
        """When the ears are open."""
        self.turns: deque[SpokenTurn] = deque(maxlen=20)
        """The last turns (in memory only)."""
        self.barge_ins = 0
        """Times a paw press stopped the bear's speech."""
        self._respond = respond
        self._wake_ears = wake_ears
        self._led = led
        self._alert = alert
        self._events: queue.SimpleQueue[tuple[str, float]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._losses_seen = microphone.stats.losses
        self.heartbeat: Callable[[float | None], None] = lambda grace: None
        """Called every step, and before speaking with the seconds it may take: the systemd
        watchdog's ``alive`` (:mod:`agent.lifecycle`), so a hung loop gets restarted."""

    # -- any thread ---------------------------------------------------------------------

    def paw_pressed(self) -> None:
        """The paw went down: stop speaking (barge-in) and start listening."""
        if self.voice.speaking:
            self.barge_ins += 1
            self.voice.stop()
        self._events.put(("press", time.monotonic()))

    def paw_released(self) -> None:
        """The paw came up: a long hold ends the utterance, a squeeze listens for one."""
        self._events.put(("release", time.monotonic()))

    def request_stop(self) -> None:
        """Finish the current turn, then return from :meth:`run` (signal-safe). The reply is
        kept (the store commits it before it is spoken) but no longer spoken: a stop under
        systemd must not wait for a long answer."""
        self._stop.set()
        if self.voice.speaking:
            self.voice.stop()

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested."""
        return self._stop.is_set()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until the loop has handled every queued paw event and is not busy."""
        self._idle.clear()
        return self._idle.wait(timeout)

    # -- the listener thread ------------------------------------------------------------

    def run(self) -> None:
        """Listen and answer until :meth:`request_stop`; then finish the turn in progress."""
        logger.info("voice loop running (%s)", self.settings.listen_mode)
        self._apply_mute()
        while not self._stop.is_set():
            self.step()
        self._finish_turn()
        logger.info("voice loop stopped after %d turns", len(self.turns))

    def step(self) -> None:
        """Handle paw events, then one frame (or a read timeout)."""
        self.heartbeat(None)
        self._handle_events()
        frame = self.microphone.read(READ_TIMEOUT_S)
        if self.microphone.stats.losses != self._losses_seen:
            self._losses_seen = self.microphone.stats.losses
            self._cut_off()
        if frame is not None:
            self._hear(frame)
        if self.gate.expire(time.monotonic(), self.ears.in_speech):
            self._close_ears()
        if self._events.empty() and not self.ears.in_speech:
            self._idle.set()

    def _hear(self, frame: bytes) -> None:
        if self.gate.listening:
            heard = self.ears.feed(frame)
            if heard is not None:
                self._answer(heard)
        elif self.gate.wants_wake_phrase and self._wake_ears is not None:
            heard = self._wake_ears.feed(frame)
            if heard is not None and self._is_wake_phrase(heard):
                logger.info("wake phrase heard")
                self.gate.woke(time.monotonic())
                self._show("listening")

    def _is_wake_phrase(self, heard: Heard) -> bool:
        transcript = heard.transcript
        wanted = " ".join(self.settings.wake_phrase.split())
        return transcript.text == wanted and transcript.confidence >= self.settings.min_confidence

    def _cut_off(self) -> None:
        """The microphone was lost: an utterance in progress is incomplete, drop it."""
        if not self.ears.in_speech:
            return
        logger.warning("microphone lost mid-utterance; asking the child to say it again")
        self.ears.reset()
        self._speak(phrase("say_again"), lambda: None)

    def _handle_events(self) -> None:
        while True:
            try:
                kind, at = self._events.get_nowait()
            except queue.Empty:
                return
            if kind == "press":
                self.gate.press(at)
                self._show("listening")
                self._apply_mute()
            elif self.gate.release(at):
                self._close_ears(answer=True)

    def _close_ears(self, answer: bool = False) -> None:
        heard = self.ears.finish("released")
        if answer and heard is not None:
            self._answer(heard)
        self._apply_mute()
        if not self.gate.listening:
            self._show("off")

    def _finish_turn(self) -> None:
        self._handle_events()
        if self.ears.in_speech:
            heard = self.ears.finish("shutdown")
            if heard is not None:
                self._answer(heard)
        self.ears.reset()

    def _answer(self, heard: Heard) -> None:
        self.gate.utterance_done()
        if heard.too_short:
            logger.debug("ignored a sound too short to be speech (%.2f s)", heard.audio_s)
            return
        transcript = heard.transcript
        unsure = transcript.unsure(self.settings.min_confidence)
        logger.debug("heard %d characters, confidence %.2f", len(transcript.text),
                     transcript.confidence)
        self._show("thinking")
        reply = phrase("say_again") if unsure else self._respond(transcript.text)
        responded_at = time.monotonic()
        first_sample: list[float] = []
        completed = self._speak(reply, lambda: first_sample.append(time.monotonic()))
        self.turns.append(SpokenTurn(heard, reply, unsure, responded_at,
                                     first_sample[0] if first_sample else None, completed))

    def _speak(self, text: str, on_start: Callable[[], None]) -> bool:
        if self._stop.is_set():
            return False  # shutting down: the turn is kept, not spoken
        self.heartbeat(5.0 + 90.0 * len(text.split()) / self.settings.tts_rate)  # 1.5x, seconds
        self.microphone.set_muted(True)
        self._show("speaking")
        try:
            return self.voice.say(text, on_start=on_start)
        except (AudioDeviceError, SpeechError) as exc:
            logger.error("cannot speak: %s", exc)
            if self._alert is not None:
                self._alert("audio.speaker_failed", "warning", str(exc))
            return False
        finally:
            self._apply_mute()
            self._show("listening" if self.gate.listening else "off")

    def _apply_mute(self) -> None:
        open_ears = self.gate.listening or self.gate.wants_wake_phrase
        self.microphone.set_muted(not open_ears)

    def _show(self, state: str) -> None:
        if self._led is not None:
            self._led.show(self.idle_state() if state == "off" else state)

    def idle_state(self) -> str:
        """What the LED shows while the bear is idle; the lifecycle replaces this hook to
        show open operational alerts or a lost link."""
        return "off"
