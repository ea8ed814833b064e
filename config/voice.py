"""Settings sections for the bear's ears and voice: ``audio`` and ``voice``.

Environment overrides follow the house rule, e.g. ``TEDDY_VOICE__MODEL_PATH=/opt/vosk``,
or ``TEDDY_AUDIO__INPUT_DEVICE="USB"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from config.settings import Section

MODEL_HELP = "run scripts/fetch-model or set TEDDY_VOICE__MODEL_PATH"
"""The way out named by every model error."""


class AudioSettings(Section):
    """Microphone and speaker: which backend, which device, what format."""

    backend: Literal["sounddevice", "wav"] = "sounddevice"
    """``sounddevice`` (PortAudio, the real devices) or ``wav`` (the simulated twin)."""
    input_device: str | int | None = None
    """Microphone by name (a substring, case-insensitive) or PortAudio index; None: default."""
    output_device: str | int | None = None
    """Speaker by name (a substring, case-insensitive) or PortAudio index; None: default."""
    sample_rate: int = 16000
    """Rate of the voice pipeline, Hertz. A device that cannot do it is resampled."""
    block_ms: Literal[10, 20, 30] = 30
    """Length of one frame handed to the VAD, milliseconds (webrtcvad takes 10, 20 or 30)."""
    queue_frames: int = Field(default=200, ge=4, le=10000)
    """Capacity of the bounded queue between the audio callback and the listener, frames."""
    stall_timeout_s: float = Field(default=2.0, gt=0, le=60)
    """A microphone silent (no callbacks) for this long is treated as lost, seconds."""
    reopen_backoff_s: float = Field(default=0.25, gt=0, le=60)
    """First wait before reopening a lost device, seconds; doubles on each failure."""
    reopen_backoff_max_s: float = Field(default=8.0, gt=0, le=600)
    """Longest wait between reopen attempts, seconds."""
    wav_input: Path | None = None
    """The ``wav`` twin's microphone reads this file (then silence); None: silence only."""
    wav_output: Path | None = None
    """The ``wav`` twin's speaker writes the bear's voice here; None: kept in memory."""

    @model_validator(mode="after")
    def _check_rate(self) -> AudioSettings:
        if self.sample_rate not in (8000, 16000, 32000, 48000):
            raise ValueError(
                f"audio.sample_rate {self.sample_rate} must be 8000, 16000, 32000 or 48000 "
                "Hertz (webrtcvad rates)"
            )
        return self


class VoiceSettings(Section):
    """Listening (VAD, Vosk) and speaking (pyttsx3)."""

    model_path: Path | None = None
    """Directory of the Vosk model (``am/``, ``conf/``, ``graph/``); None: not installed."""
    vad_aggressiveness: int = Field(default=2, ge=0, le=3)
    """webrtcvad aggressiveness: 0 lets most sound through, 3 filters noise hardest."""
    pre_roll_ms: int = Field(default=300, ge=0, le=2000)
    """Audio kept from before speech starts, milliseconds (so the first sound is not cut)."""
    hangover_ms: int = Field(default=600, ge=90, le=5000)
    """Silence that ends an utterance, milliseconds."""
    max_utterance_s: float = Field(default=10.0, gt=0.5, le=60)
    """An utterance is cut after this long, seconds."""
    min_speech_ms: int = Field(default=200, ge=30, le=5000)
    """Voiced audio shorter than this is a noise, not an utterance, milliseconds."""
    min_confidence: float = Field(default=0.6, ge=0, le=1)
    """Below this word confidence the bear asks the child to say it again (0..1)."""
    grammar: list[str] | None = None
    """Phrases the recognizer may return (a Vosk phrase grammar); None: free dictation."""
    listen_mode: Literal["push_to_talk", "wake_phrase"] = "push_to_talk"
    """``push_to_talk`` (the paw; default) or ``wake_phrase`` (always listening for it)."""
    wake_phrase: str = "hello teddy"
    """The phrase that wakes the bear in ``wake_phrase`` mode (words the model knows)."""
    squeeze_s: float = Field(default=0.4, gt=0, le=5)
    """A paw press shorter than this is a squeeze: listen for one utterance, seconds."""
    listen_timeout_s: float = Field(default=8.0, gt=0, le=120)
    """After a squeeze or wake phrase, stop listening if nobody speaks, seconds."""
    tts_rate: int = Field(default=160, ge=60, le=400)
    """Speaking rate, words per minute."""
    tts_volume: float = Field(default=1.0, ge=0, le=1)
    """Speaking volume, 0..1."""
    tts_voice: str | None = None
    """espeak-ng voice id (e.g. ``en-us``, ``ko``); None: the engine's default."""
