"""The audio adapters' simulated twins: a microphone that reads WAV audio, and a speaker
that writes the bear's voice to a WAV file or keeps it in memory.

Both keep the real adapters' timing when ``realtime`` is set (a 30 ms frame takes 30 ms),
so the listening loop, muting and barge-in behave as on the bear.
"""

from __future__ import annotations

import io
import threading
import time
import wave
from collections import deque
from collections.abc import Callable
from pathlib import Path

from config.voice import AudioSettings
from hardware.audio import MicStats, StoppableSpeaker
from hardware.errors import AudioDeviceError
from hardware.frames import SAMPLE_BYTES, frame_bytes, resample, to_mono


def read_wav(source: Path | bytes) -> tuple[bytes, int]:
    """PCM (int16 mono) and rate (Hertz) of a WAV file or WAV bytes, in memory."""
    name = f"({len(source)} bytes)" if isinstance(source, bytes) else str(source)
    try:
        handle = wave.open(io.BytesIO(source) if isinstance(source, bytes) else str(source))
    except FileNotFoundError:
        raise AudioDeviceError(
            f"WAV file {name} does not exist — pass an existing file"
        ) from None
    except (wave.Error, EOFError) as exc:
        raise AudioDeviceError(f"WAV file {name} is not a PCM WAV file ({exc})") from None
    with handle:
        if handle.getsampwidth() != SAMPLE_BYTES:
            raise AudioDeviceError(
                f"WAV file {name} has {8 * handle.getsampwidth()}-bit samples — convert it "
                "to 16-bit PCM (sox IN.wav -b 16 OUT.wav)"
            )
        pcm = handle.readframes(handle.getnframes())
        return to_mono(pcm, handle.getnchannels()), handle.getframerate()


def wav_bytes(pcm: bytes, sample_rate: int) -> bytes:
    """A WAV file, in memory, holding int16 mono PCM."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(SAMPLE_BYTES)
        handle.setframerate(sample_rate)
        handle.writeframes(pcm)
    return buffer.getvalue()


class WavMicrophone:
    """Microphone twin: frames from WAV audio queued with :meth:`feed`, then silence."""

    def __init__(self, sample_rate: int = 16000, block_ms: int = 30, realtime: bool = False,
                 silence_after: bool = True) -> None:
        self.sample_rate = sample_rate
        """Rate of the frames :meth:`read` returns, Hertz."""
        self.frame_bytes = frame_bytes(sample_rate, block_ms)
        """Size of each frame, bytes."""
        self.stats = MicStats()
        """Counters, as for the real microphone."""
        self.realtime = realtime
        """Whether each frame takes its own duration to arrive."""
        self.silence_after = silence_after
        """Whether :meth:`read` returns silence once the audio is used up (else None)."""
        self._frame_s = block_ms / 1000
        self._frames: deque[bytes] = deque()
        self._lock = threading.Lock()
        self._muted = False
        self._closed = False
        self._next_due = time.monotonic()

    @classmethod
    def from_settings(cls, settings: AudioSettings) -> WavMicrophone:
        """The twin the ``wav`` backend uses: realtime, reading ``wav_input`` if set."""
        microphone = cls(settings.sample_rate, settings.block_ms, realtime=True)
        if settings.wav_input is not None:
            microphone.feed_wav(settings.wav_input)
        return microphone

    def feed_wav(self, source: Path | bytes) -> None:
        """Queue the audio of a WAV file (or WAV bytes)."""
        pcm, rate = read_wav(source)
        self.feed(pcm, rate)

    def feed(self, pcm: bytes, sample_rate: int) -> None:
        """Queue int16 mono PCM at ``sample_rate`` Hertz (resampled to the pipeline rate)."""
        pcm = resample(pcm, sample_rate, self.sample_rate)
        size = self.frame_bytes
        pcm += bytes(-len(pcm) % size)
        with self._lock:
            self._frames.extend(pcm[i : i + size] for i in range(0, len(pcm), size))

    @property
    def pending(self) -> int:
        """Frames queued and not yet read."""
        return len(self._frames)

    def read(self, timeout: float = 0.1) -> bytes | None:
        """The next frame (silence when nothing is queued), paced in realtime mode."""
        if self._closed:
            return None
        if self.realtime and not self._wait_due(timeout):
            return None
        with self._lock:
            frame = self._frames.popleft() if self._frames else None
        if frame is None and self.silence_after:
            frame = bytes(self.frame_bytes)
        if frame is None:
            return None
        self.stats.blocks += 1
        if self._muted:
            self.stats.muted += 1
            return None
        return frame

    def _wait_due(self, timeout: float) -> bool:
        now = time.monotonic()
        self._next_due = max(self._next_due, now - self._frame_s)
        wait = self._next_due - now
        if wait > timeout:
            time.sleep(timeout)
            return False
        if wait > 0:
            time.sleep(wait)
        self._next_due += self._frame_s
        return True

    def set_muted(self, muted: bool) -> None:
        """Mute: frames that arrive are discarded and counted, as on the real device."""
        self._muted = muted

    def close(self) -> None:
        """Drop queued audio; idempotent."""
        self._closed = True
        with self._lock:
            self._frames.clear()

    def __enter__(self) -> WavMicrophone:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class WavSpeaker(StoppableSpeaker):
    """Speaker twin: keeps what was played in memory, or writes it to ``path``."""

    def __init__(self, path: Path | None = None, realtime: bool = False) -> None:
        self.path = path
        """WAV file each playback is written to (the bear's voice only); None: memory only."""
        self.realtime = realtime
        """Whether playback takes the audio's duration (so it can be stopped midway)."""
        self.played: list[tuple[bytes, int, bool]] = []
        """Each playback: the PCM actually played, its rate in Hertz, and if it finished."""
        super().__init__()

    def play(
        self, pcm: bytes, sample_rate: int, on_start: Callable[[], None] | None = None
    ) -> bool:
        """'Play' int16 mono PCM; True if played to the end, False if stopped."""
        self._begin()
        if on_start is not None:
            on_start()
        played, completed = self._play_paced(pcm, sample_rate) if self.realtime else (pcm, True)
        self.played.append((played, sample_rate, completed))
        if self.path is not None:
            self.path.write_bytes(wav_bytes(played, sample_rate))
        return completed

    def _play_paced(self, pcm: bytes, sample_rate: int) -> tuple[bytes, bool]:
        step = sample_rate * 20 // 1000 * SAMPLE_BYTES
        started = time.monotonic()
        for offset in range(0, len(pcm), step):
            due = started + offset / SAMPLE_BYTES / sample_rate
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return pcm[:offset], False
        return pcm, True

