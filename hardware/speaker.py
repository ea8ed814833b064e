"""The speaker on sounddevice: blocking playback in short chunks that a stop can cut."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from config.voice import AudioSettings
from hardware import portaudio
from hardware.audio import StoppableSpeaker
from hardware.errors import AudioDeviceError
from hardware.frames import SAMPLE_BYTES, resample

logger = logging.getLogger(__name__)

CHUNK_MS = 20
"""Audio written to the device per step, milliseconds: the most a stop has to wait."""


class SoundDeviceSpeaker(StoppableSpeaker):
    """Speaker adapter over sounddevice (or any module with its API, as ``backend``)."""

    def __init__(self, settings: AudioSettings, backend: Any = None) -> None:
        self._settings = settings
        self._sd = backend if backend is not None else portaudio.import_sounddevice()
        super().__init__()

    def play(
        self, pcm: bytes, sample_rate: int, on_start: Callable[[], None] | None = None
    ) -> bool:
        """Play int16 mono PCM; True if played to the end, False if :meth:`stop` cut it."""
        self._begin()
        stream, rate = self._open(sample_rate)
        pcm = resample(pcm, sample_rate, rate)
        step = rate * CHUNK_MS // 1000 * SAMPLE_BYTES
        try:
            stream.start()
            for offset in range(0, len(pcm), step):
                if self._stop.is_set():
                    stream.abort()
                    return False
                stream.write(pcm[offset : offset + step])
                if offset == 0 and on_start is not None:
                    on_start()
            stream.stop()
            return not self._stop.is_set()
        finally:
            stream.close()

    def _open(self, sample_rate: int) -> tuple[Any, int]:
        sd = self._sd
        try:
            with portaudio.LOCK:
                device = portaudio.resolve_device(sd, self._settings.output_device, "output")
                rate = portaudio.supported_rate(sd, device, sample_rate, "output")
                stream = sd.RawOutputStream(
                    samplerate=rate, device=device, channels=1, dtype="int16", latency="low"
                )
        except AudioDeviceError:
            raise
        except Exception as exc:
            raise AudioDeviceError(
                f"speaker {self._settings.output_device!r} cannot be opened: {exc} — check "
                "TEDDY_AUDIO__OUTPUT_DEVICE"
            ) from None
        return stream, rate

