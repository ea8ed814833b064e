"""The audio adapters' interface, and the factories that pick a backend from settings."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, Self

from config.voice import AudioSettings

AlertHook = Callable[[str, str, str], object]
"""``hook(kind, severity, message)``: how an adapter reports a fault (e.g. AlertSink)."""


@dataclass
class MicStats:
    """What happened to the microphone's frames; nothing is lost silently."""

    blocks: int = 0
    """Blocks the device delivered."""
    overflows: int = 0
    """Callbacks flagged with an input overflow (PortAudio lost samples)."""
    dropped: int = 0
    """Blocks dropped because the bounded queue was full (the listener fell behind)."""
    muted: int = 0
    """Blocks discarded on purpose while the bear was speaking."""
    losses: int = 0
    """Times the device was lost."""
    reopens: int = 0
    """Times the device was reopened after a loss."""


class Microphone(Protocol):
    """Frames of 16-bit mono PCM at ``sample_rate``, each ``frame_bytes`` long."""

    sample_rate: int
    frame_bytes: int
    stats: MicStats

    def read(self, timeout: float = 0.1) -> bytes | None:
        """The next frame, or None if none came within ``timeout`` seconds."""

    def set_muted(self, muted: bool) -> None:
        """Mute (discard and count frames) or unmute (and drop what was queued)."""

    def close(self) -> None:
        """Release the device; idempotent."""


class Speaker(Protocol):
    """Plays 16-bit mono PCM; :meth:`stop` from another thread cuts it short."""

    def play(
        self, pcm: bytes, sample_rate: int, on_start: Callable[[], None] | None = None
    ) -> bool:
        """Play and block until done; True if played to the end, False if stopped."""

    def stop(self) -> None:
        """Stop the current playback (thread-safe); no-op when idle."""

    def close(self) -> None:
        """Release the device; idempotent."""


class StoppableSpeaker:
    """The stop/close/context-manager half every speaker shares; subclasses play."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._closed = False

    def _begin(self) -> None:
        """Refuse a closed speaker; clear an earlier stop before a new playback."""
        from hardware.errors import AudioDeviceError

        if self._closed:
            raise AudioDeviceError("speaker is closed — open a new one")
        self._stop.clear()

    def stop(self) -> None:
        """Cut the current playback short (thread-safe)."""
        self._stop.set()

    def close(self) -> None:
        """Stop any playback; idempotent."""
        self._stop.set()
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_microphone(settings: AudioSettings, alert: AlertHook | None = None) -> Microphone:
    """The microphone the settings choose: sounddevice, or the WAV twin."""
    if settings.backend == "wav":
        from hardware.wav import WavMicrophone

        return WavMicrophone.from_settings(settings)
    from hardware.microphone import SoundDeviceMicrophone

    return SoundDeviceMicrophone(settings, alert=alert)


def open_speaker(settings: AudioSettings) -> Speaker:
    """The speaker the settings choose: sounddevice, or the WAV twin."""
    if settings.backend == "wav":
        from hardware.wav import WavSpeaker

        return WavSpeaker(settings.wav_output, realtime=True)
    from hardware.speaker import SoundDeviceSpeaker

    return SoundDeviceSpeaker(settings)
