"""The bear's voice: pyttsx3 (espeak-ng on Linux) rendered in memory, then played by a
speaker adapter that a paw press can stop.

pyttsx3's own ``say`` writes a temporary WAV and runs ``aplay``: it cannot be stopped,
cannot pick a device, and leaves audio on disk. So we let pyttsx3 set voice, rate and
volume and render into an in-memory WAV, and play that through our speaker.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.voice.errors import SpeechError
from config.voice import VoiceSettings

logger = logging.getLogger(__name__)

_engine_lock = threading.Lock()
"""espeak-ng is one engine per process: one synthesis at a time."""
_default_voice: str | None = None
RENDER_ATTEMPTS = 3
"""pyttsx3's first run after start can end before espeak-ng delivers: try again."""


@dataclass(frozen=True)
class SpokenAudio:
    """Synthesized speech, in memory."""

    pcm: bytes
    """int16 mono samples."""
    sample_rate: int
    """Hertz."""

    @property
    def seconds(self) -> float:
        """Duration, seconds."""
        return len(self.pcm) / 2 / self.sample_rate


class Synthesizer:
    """pyttsx3 text-to-speech with rate, volume and voice from settings."""

    def __init__(self, settings: VoiceSettings) -> None:
        self._settings = settings
        self._engine: Any = None

    def _engine_ready(self) -> Any:
        if self._engine is None:
            import pyttsx3

            try:
                engine = pyttsx3.init()
            except Exception as exc:
                raise SpeechError(f"pyttsx3 cannot start ({exc}) — apt-get install "
                                  "espeak-ng") from None
            engine.setProperty("rate", self._settings.tts_rate)
            engine.setProperty("volume", self._settings.tts_volume)
            global _default_voice
            if _default_voice is None:
                _default_voice = engine.getProperty("voice")
            self._set_voice(engine, self._settings.tts_voice or _default_voice)
            self._engine = engine
        return self._engine

    @staticmethod
    def _set_voice(engine: Any, wanted: str) -> None:
        try:
            engine.setProperty("voice", wanted)
        except Exception:
            raise SpeechError(f"voice.tts_voice {wanted!r} is not an installed voice — "
                              "see `espeak-ng --voices` and set TEDDY_VOICE__TTS_VOICE") from None

    def synthesize(self, text: str) -> SpokenAudio:
        """Render ``text`` to audio in memory."""
        from hardware.wav import read_wav

        with _engine_lock:
            engine = self._engine_ready()
            for _attempt in range(RENDER_ATTEMPTS):
                buffer = io.BytesIO()
                engine.save_to_file(text, buffer)
                with contextlib.redirect_stdout(io.StringIO()):  # pyttsx3 prints "saved to"
                    engine.runAndWait()
                if buffer.getvalue():
                    break
        if not buffer.getvalue():
            raise SpeechError(f"pyttsx3 rendered no audio for a {len(text)}-character text "
                              "— check the espeak-ng installation")
        pcm, rate = read_wav(buffer.getvalue())
        return SpokenAudio(pcm, rate)


class Voice:
    """Speaks through a speaker; :meth:`stop` (a paw press) cuts it short."""

    def __init__(self, synthesizer: Synthesizer, speaker: Any) -> None:
        self.synthesizer = synthesizer
        """Renders text to audio."""
        self.speaker = speaker
        """Plays the audio (a :class:`hardware.audio.Speaker`)."""
        self._speaking = threading.Event()

    @property
    def speaking(self) -> bool:
        """Whether the bear is speaking now."""
        return self._speaking.is_set()

    def say(self, text: str, on_start: Callable[[], None] | None = None) -> bool:
        """Speak ``text``; True if it was spoken to the end, False if stopped."""
        audio = self.synthesizer.synthesize(text)
        self._speaking.set()
        try:
            return self.speaker.play(audio.pcm, audio.sample_rate, on_start=on_start)
        finally:
            self._speaking.clear()

    def stop(self) -> None:
        """Stop speaking now (barge-in)."""
        if self._speaking.is_set():
            logger.info("speech stopped by the paw")
        self.speaker.stop()

    def close(self) -> None:
        """Stop speaking and release the speaker; idempotent."""
        self.speaker.close()

    def __enter__(self) -> Voice:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def to_wav(self, text: str, path: Path) -> None:
        """Write the spoken ``text`` to a WAV file (the bear's voice, never the child's)."""
        from hardware.wav import wav_bytes

        audio = self.synthesizer.synthesize(text)
        path.write_bytes(wav_bytes(audio.pcm, audio.sample_rate))


def open_speech(settings: Any) -> Voice:
    """The bear's voice on the speaker the settings choose (``teddy chat --speak``)."""
    from hardware.audio import open_speaker

    return Voice(Synthesizer(settings.voice), open_speaker(settings.audio))
