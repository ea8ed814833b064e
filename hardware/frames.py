"""Audio as the bear handles it: 16-bit mono PCM bytes, resampling and framing."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

SAMPLE_BYTES = 2
"""Bytes per sample: signed 16-bit little-endian, mono."""


def frame_bytes(sample_rate: int, frame_ms: int) -> int:
    """Bytes in one frame of ``frame_ms`` milliseconds at ``sample_rate`` Hertz."""
    return sample_rate * frame_ms // 1000 * SAMPLE_BYTES


class Resampler:
    """Streaming resampler for int16 mono PCM (soxr, keeps state across blocks)."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        import soxr

        self.from_rate = from_rate
        """Input rate, Hertz."""
        self.to_rate = to_rate
        """Output rate, Hertz."""
        self._stream = soxr.ResampleStream(from_rate, to_rate, 1, dtype="int16", quality="HQ")

    def convert(self, pcm: bytes, last: bool = False) -> bytes:
        """Resample one block; pass ``last=True`` to flush the filter's tail."""
        import numpy as np

        samples = np.frombuffer(pcm, dtype=np.int16)
        return self._stream.resample_chunk(samples, last=last).tobytes()


def resample(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """Resample a whole int16 mono buffer from ``from_rate`` to ``to_rate`` Hertz."""
    if from_rate == to_rate:
        return pcm
    import numpy as np
    import soxr

    samples = np.frombuffer(pcm, dtype=np.int16)
    return soxr.resample(samples, from_rate, to_rate, quality="HQ").astype(np.int16).tobytes()


def to_mono(pcm: bytes, channels: int) -> bytes:
    """Average interleaved int16 channels into one."""
    if channels == 1:
        return pcm
    import numpy as np

    samples = np.frombuffer(pcm, dtype=np.int16).reshape(-1, channels)
    return samples.mean(axis=1).astype(np.int16).tobytes()


class Framer:
    """Cuts a stream of PCM blocks of any length into frames of exactly ``size`` bytes."""

    def __init__(self, size: int) -> None:
        self.size = size
        """Frame size, bytes."""
        self._pending = bytearray()

    def push(self, pcm: bytes) -> list[bytes]:
        """Add a block; return the whole frames now available."""
        self._pending += pcm
        count = len(self._pending) // self.size
        frames = [bytes(self._pending[i * self.size : (i + 1) * self.size]) for i in range(count)]
        del self._pending[: count * self.size]
        return frames

    def clear(self) -> None:
        """Drop any partial frame."""
        self._pending.clear()
