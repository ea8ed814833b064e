"""Listening modes: when the bear's ears are open.

Push-to-talk (the default): the bear listens while the paw is held, and for one utterance
after a short squeeze. Wake phrase (optional): while idle it listens only for the wake
phrase, then for one utterance. A child's toy is not an always-on microphone: in
push-to-talk mode, frames that arrive while idle are discarded unheard.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from config.voice import VoiceSettings

logger = logging.getLogger(__name__)


class Listening(StrEnum):
    """State of the gate."""

    IDLE = "idle"
    """Not listening (in wake-phrase mode: listening only for the wake phrase)."""
    HELD = "held"
    """The paw is held: listening until it is let go."""
    ONE_UTTERANCE = "one_utterance"
    """After a squeeze or the wake phrase: listening for one utterance."""


class ListeningGate:
    """The listening state machine; times are ``time.monotonic()`` seconds."""

    def __init__(self, settings: VoiceSettings) -> None:
        self._settings = settings
        self.state = Listening.IDLE
        """Where the gate is."""
        self._pressed_at = 0.0
        self._opened_at = 0.0

    @property
    def listening(self) -> bool:
        """Whether frames go to the ears for an utterance."""
        return self.state is not Listening.IDLE

    @property
    def wants_wake_phrase(self) -> bool:
        """Whether idle frames go to the wake-phrase recognizer."""
        return self._settings.listen_mode == "wake_phrase" and self.state is Listening.IDLE

    def press(self, now: float) -> None:
        """The paw went down: listen while it is held."""
        self.state = Listening.HELD
        self._pressed_at = now

    def release(self, now: float) -> bool:
        """The paw came up; True if the utterance in progress ends now (a long hold)."""
        if self.state is not Listening.HELD:
            return False
        if now - self._pressed_at < self._settings.squeeze_s:
            self._open_one(now)
            return False
        self.state = Listening.IDLE
        return True

    def woke(self, now: float) -> None:
        """The wake phrase was heard: listen for one utterance."""
        self._open_one(now)

    def _open_one(self, now: float) -> None:
        self.state = Listening.ONE_UTTERANCE
        self._opened_at = now

    def utterance_done(self) -> None:
        """An utterance ended: a one-utterance gate closes, a held paw keeps listening."""
        if self.state is Listening.ONE_UTTERANCE:
            self.state = Listening.IDLE

    def expire(self, now: float, in_speech: bool) -> bool:
        """Close a one-utterance gate nobody spoke into; True if it closed."""
        timed_out = now - self._opened_at > self._settings.listen_timeout_s
        if self.state is Listening.ONE_UTTERANCE and not in_speech and timed_out:
            self.state = Listening.IDLE
            return True
        return False
