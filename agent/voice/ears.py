"""The bear's ears: frames -> VAD segmenter -> streaming recognizer -> one transcript.

Audio goes to the recognizer as it arrives, so little is left to do when the child stops.
Nothing keeps raw audio beyond the utterance: the VAD's pre-roll and the recognizer are
reset as soon as the transcript exists. :func:`hear_pcm` hears one utterance from audio in
memory (``teddy listen``), and :func:`reply_for` is what the bear answers to what it heard.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.voice.phrases import phrase
from agent.voice.recognizer import StreamingRecognizer, Transcript
from agent.voice.vad import VadSegmenter, VadStep
from config.voice import VoiceSettings
from hardware.wav import WavMicrophone

TRAILING_SILENCE_S = 1.0
"""Silence added after the audio so the VAD's hang-over can end the utterance, seconds."""


@dataclass(frozen=True)
class Heard:
    """One utterance, recognized."""

    transcript: Transcript
    """What the recognizer made of it."""
    reason: str
    """Why it ended: ``silence``, ``max_length``, ``released``, ``end_of_audio``, ``shutdown``."""
    too_short: bool
    """Too little speech to be an utterance (a cough, a bump): ignore it."""
    audio_s: float
    """Audio fed to the recognizer, seconds."""
    recognize_s: float
    """Time spent inside the recognizer for this utterance, seconds (for real-time factor)."""
    ended_at: float
    """``time.monotonic()`` when the VAD ended the utterance."""
    final_at: float
    """``time.monotonic()`` when the final transcript existed."""


class Ears:
    """A VAD segmenter feeding a streaming recognizer."""

    def __init__(self, segmenter: VadSegmenter, recognizer: StreamingRecognizer) -> None:
        self.segmenter = segmenter
        """Cuts utterances."""
        self.recognizer = recognizer
        """Recognizes them."""
        self.partial = ""
        """The recognizer's latest partial text for the utterance in progress."""
        self._busy_s = 0.0

    @property
    def in_speech(self) -> bool:
        """Whether an utterance is in progress."""
        return self.segmenter.in_speech

    def feed(self, frame: bytes) -> Heard | None:
        """Take one frame; returns the utterance when this frame ended one."""
        return self._after(self.segmenter.feed(frame))

    def finish(self, reason: str = "released") -> Heard | None:
        """End the utterance in progress now; None when there was none."""
        return self._after(self.segmenter.finish(reason))

    def _after(self, step: VadStep) -> Heard | None:
        if step.audio:
            started = time.perf_counter()
            for frame in step.audio:
                partial = self.recognizer.accept(frame)
                if partial is not None:
                    self.partial = partial
            self._busy_s += time.perf_counter() - started
        if step.ended is None:
            return None
        return self._final(step, step.ended)

    def _final(self, step: VadStep, reason: str) -> Heard:
        ended_at = time.monotonic()
        audio_s = self.recognizer.audio_seconds
        started = time.perf_counter()
        transcript = self.recognizer.final()
        busy = self._busy_s + time.perf_counter() - started
        self._busy_s = 0.0
        self.partial = ""
        return Heard(transcript, reason, step.too_short, audio_s, busy, ended_at,
                     time.monotonic())

    def reset(self) -> None:
        """Drop the utterance in progress, if any (its audio is forgotten)."""
        self.segmenter.reset()
        self.recognizer.reset()
        self._busy_s = 0.0
        self.partial = ""


def hear_pcm(ears: Ears, pcm: bytes, rate: int, pipeline_rate: int = 16000) -> Heard | None:
    """The first utterance in int16 mono PCM (None if there is no speech)."""
    microphone = WavMicrophone(pipeline_rate, ears.segmenter.frame_ms, silence_after=False)
    microphone.feed(pcm, rate)
    microphone.feed(bytes(int(pipeline_rate * TRAILING_SILENCE_S) * 2), pipeline_rate)
    try:
        while (frame := microphone.read()) is not None:
            heard = ears.feed(frame)
            if heard is not None and not heard.too_short:
                return heard
        heard = ears.finish("end_of_audio")
        return heard if heard is not None and not heard.too_short else None
    finally:
        microphone.close()
        ears.reset()


def reply_for(heard: Heard | None, settings: VoiceSettings, respond: Callable[[str], str]) -> str:
    """The bear's answer: asks to hear it again when nothing or too little was sure."""
    if heard is None:
        return phrase("say_again")
    if heard.transcript.unsure(settings.min_confidence):
        return phrase("say_again")
    return respond(heard.transcript.text)
