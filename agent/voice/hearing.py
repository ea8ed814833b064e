"""One utterance from audio in memory, and what the bear answers to what it heard."""

from __future__ import annotations

from collections.abc import Callable

from agent.voice.ears import Ears, Heard
from agent.voice.phrases import phrase
from config.voice import VoiceSettings
from hardware.wav import WavMicrophone

TRAILING_SILENCE_S = 1.0
"""Silence added after the audio so the VAD's hang-over can end the utterance, seconds."""


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
