"""Cuts utterances out of a stream of frames with webrtcvad.

Speech starts when most of the last few frames are voiced; the frames of the pre-roll
before it are handed over too, so the first sound is not cut. It ends after
``hangover_ms`` of unvoiced frames, at ``max_utterance_s``, or when the caller says so
(the paw let go). An utterance with less than ``min_speech_ms`` of voiced audio is a
noise and is discarded.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

from config.voice import VoiceSettings

logger = logging.getLogger(__name__)

START_WINDOW = 5
"""Frames looked at to decide that speech started."""
START_VOICED = 4
"""Voiced frames among the last ``START_WINDOW`` that start an utterance."""


@dataclass
class VadStep:
    """What one frame changed."""

    audio: list[bytes] = field(default_factory=list)
    """Frames to pass to the recognizer now (pre-roll and speech; empty when idle)."""
    started: bool = False
    """Speech started with this frame."""
    ended: str | None = None
    """Why the utterance ended with this frame: ``silence``, ``max_length`` or ``released``."""
    too_short: bool = False
    """The utterance that ended had too little speech: discard it."""


class VadSegmenter:
    """Streaming utterance segmenter over webrtcvad."""

    def __init__(self, settings: VoiceSettings, sample_rate: int = 16000, frame_ms: int = 30):
        import webrtcvad

        self._vad = webrtcvad.Vad(settings.vad_aggressiveness)
        self.sample_rate = sample_rate
        """Rate of the frames, Hertz."""
        self.frame_ms = frame_ms
        """Length of a frame, milliseconds."""
        self._pre_roll: deque[bytes] = deque(maxlen=max(1, settings.pre_roll_ms // frame_ms))
        self._recent: deque[bool] = deque(maxlen=START_WINDOW)
        self._hangover_frames = max(1, settings.hangover_ms // frame_ms)
        self._max_frames = int(settings.max_utterance_s * 1000 // frame_ms)
        self._min_voiced = max(1, settings.min_speech_ms // frame_ms)
        self._in_speech = False
        self._frames = 0
        self._voiced = 0
        self._silent_run = 0

    @property
    def in_speech(self) -> bool:
        """Whether an utterance is in progress."""
        return self._in_speech

    def feed(self, frame: bytes) -> VadStep:
        """Classify one frame and say what changed."""
        voiced = self._vad.is_speech(frame, self.sample_rate)
        if not self._in_speech:
            return self._idle(frame, voiced)
        self._frames += 1
        self._voiced += voiced
        self._silent_run = 0 if voiced else self._silent_run + 1
        step = VadStep(audio=[frame])
        if self._silent_run >= self._hangover_frames:
            return self._end(step, "silence")
        if self._frames >= self._max_frames:
            return self._end(step, "max_length")
        return step

    def _idle(self, frame: bytes, voiced: bool) -> VadStep:
        self._pre_roll.append(frame)
        self._recent.append(voiced)
        if sum(self._recent) < START_VOICED:
            return VadStep()
        self._in_speech = True
        audio = list(self._pre_roll)
        self._pre_roll.clear()
        self._frames = len(audio)
        self._voiced = sum(self._recent)
        self._silent_run = 0
        self._recent.clear()
        return VadStep(audio=audio, started=True)

    def finish(self, reason: str = "released") -> VadStep:
        """End the utterance in progress now (the paw let go, end of file, shutdown)."""
        if not self._in_speech:
            self.reset()
            return VadStep()
        return self._end(VadStep(), reason)

    def _end(self, step: VadStep, reason: str) -> VadStep:
        step.ended = reason
        step.too_short = self._voiced < self._min_voiced
        logger.debug("utterance ended (%s): %d frames, %d voiced", reason, self._frames,
                     self._voiced)
        self.reset()
        return step

    def reset(self) -> None:
        """Forget everything, including the pre-roll (raw audio is not kept)."""
        self._in_speech = False
        self._pre_roll.clear()
        self._recent.clear()
        self._frames = self._voiced = self._silent_run = 0
