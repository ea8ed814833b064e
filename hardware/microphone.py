"""The microphone on sounddevice: a RawInputStream whose callback only queues frames.

The PortAudio callback copies each block into a bounded queue and returns; recognition
runs in the listener thread, so a slow recognizer costs queued frames (counted in
:class:`~hardware.audio.MicStats`), never an input overflow. A device that stops
delivering (unplugged, server gone) is closed and reopened with exponential backoff
from :meth:`SoundDeviceMicrophone.read`; each loss and recovery goes to the alert hook.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from typing import Any

from config.voice import AudioSettings
from hardware import portaudio
from hardware.audio import AlertHook, MicStats
from hardware.errors import AudioDeviceError
from hardware.frames import Framer, Resampler, frame_bytes

logger = logging.getLogger(__name__)

STARTUP_GRACE_S = 2.0
"""Extra time a freshly opened stream gets to deliver its first block, seconds."""


class SoundDeviceMicrophone:
    """Microphone adapter over sounddevice (or any module with its API, as ``backend``)."""

    def __init__(
        self, settings: AudioSettings, alert: AlertHook | None = None, backend: Any = None
    ) -> None:
        self._settings = settings
        self._alert = alert
        self._sd = backend if backend is not None else portaudio.import_sounddevice()
        self.sample_rate = settings.sample_rate
        """Rate of the frames :meth:`read` returns, Hertz."""
        self.frame_bytes = frame_bytes(settings.sample_rate, settings.block_ms)
        """Size of each frame :meth:`read` returns, bytes."""
        self.stats = MicStats()
        """Counters of delivered, dropped and muted blocks, losses and reopens."""
        self.device_rate: int | None = None
        """Rate the device actually captures at, Hertz (None while closed)."""
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=settings.queue_frames)
        self._framer = Framer(self.frame_bytes)
        self._ready: deque[bytes] = deque()
        self._resampler: Resampler | None = None
        self._stream: Any = None
        self._finished = threading.Event()
        self._muted = False
        self._closed = False
        self._last_block = time.monotonic()
        self._blocks_at_open = 0
        self._backoff = settings.reopen_backoff_s
        self._next_attempt = 0.0
        self._lost_reported = False
        self._try_open(first=True)

    # -- PortAudio thread ---------------------------------------------------------------

    def _callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        self._last_block = time.monotonic()
        self.stats.blocks += 1
        if status and status.input_overflow:
            self.stats.overflows += 1
        if self._muted:
            self.stats.muted += 1
            return
        try:
            self._queue.put_nowait(bytes(indata))
        except queue.Full:
            self.stats.dropped += 1

    def _on_finished(self) -> None:
        self._finished.set()

    # -- listener thread ----------------------------------------------------------------

    def read(self, timeout: float = 0.1) -> bytes | None:
        """The next frame, or None after ``timeout`` seconds (also while reopening)."""
        deadline = time.monotonic() + timeout
        while not self._ready:
            if self._closed:
                return None
            if self._stream is None:
                self._wait_and_reopen(deadline)
                if self._stream is None:
                    return None
                continue
            try:
                block = self._queue.get(timeout=max(0.0, min(0.05, deadline - time.monotonic())))
            except queue.Empty:
                if self._is_lost():
                    self._lose()
                elif time.monotonic() >= deadline:
                    return None
                continue
            self._take(block)
        return self._ready.popleft()

    def _take(self, block: bytes) -> None:
        if self._resampler is not None:
            block = self._resampler.convert(block)
        self._ready.extend(self._framer.push(block))

    def _is_lost(self) -> bool:
        silent_for = time.monotonic() - self._last_block
        allowed = self._settings.stall_timeout_s
        if self._blocks_at_open == self.stats.blocks:
            allowed += STARTUP_GRACE_S  # a stream's first block can take a while
        return self._finished.is_set() or silent_for > allowed

    def _lose(self) -> None:
        self.stats.losses += 1
        reason = "stream ended" if self._finished.is_set() else "no audio"
        logger.warning("microphone lost (%s); reopening with backoff", reason)
        self._report("audio.device_lost", "warning",
                     f"microphone {self._device_label()} lost ({reason}); reopening")
        self._close_stream()
        self._next_attempt = time.monotonic() + self._backoff

    def _wait_and_reopen(self, deadline: float) -> None:
        now = time.monotonic()
        if now < self._next_attempt:
            time.sleep(max(0.0, min(deadline, self._next_attempt) - now))
            if time.monotonic() < self._next_attempt:
                return
        with portaudio.LOCK:
            portaudio.rescan(self._sd)
        self._try_open(first=False)

    def _try_open(self, first: bool) -> None:
        try:
            with portaudio.LOCK:
                try:
                    self._open_stream()
                except AudioDeviceError:
                    if not first:
                        raise
                    portaudio.rescan(self._sd)  # plugged in (or server started) since
                    self._open_stream()
        except Exception as exc:
            self._backoff = min(self._backoff * 2, self._settings.reopen_backoff_max_s)
            self._next_attempt = time.monotonic() + self._backoff
            logger.warning("microphone %s cannot be opened: %s (retry in %.1f s)",
                           self._device_label(), exc, self._backoff)
            if first or not self._lost_reported:
                self._report("audio.device_lost", "warning",
                             f"microphone {self._device_label()} cannot be opened: {exc}")
            return
        self._backoff = self._settings.reopen_backoff_s
        if not first:
            self.stats.reopens += 1
            self._report("audio.device_restored", "info",
                         f"microphone {self._device_label()} reopened")
        self._lost_reported = False

    def _open_stream(self) -> None:
        sd = self._sd
        device = portaudio.resolve_device(sd, self._settings.input_device, "input")
        rate = portaudio.supported_rate(sd, device, self.sample_rate, "input")
        self._resampler = Resampler(rate, self.sample_rate) if rate != self.sample_rate else None
        self._framer.clear()
        self._finished.clear()
        stream = sd.RawInputStream(
            samplerate=rate,
            blocksize=rate * self._settings.block_ms // 1000,
            device=device,
            channels=1,
            dtype="int16",
            latency="low",
            callback=self._callback,
            finished_callback=self._on_finished,
        )
        self._last_block = time.monotonic()
        self._blocks_at_open = self.stats.blocks
        stream.start()
        self._stream = stream
        self.device_rate = rate
        logger.info("microphone %s open at %d Hz", self._device_label(), rate)

    def _report(self, kind: str, severity: str, message: str) -> None:
        if kind == "audio.device_lost":
            self._lost_reported = True
        if self._alert is not None:
            self._alert(kind, severity, message)

    def _device_label(self) -> str:
        wanted = self._settings.input_device
        return "(default)" if wanted is None else repr(wanted)

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        self.device_rate = None
        if stream is None:
            return
        try:
            stream.abort()
            stream.close()
        except Exception:
            logger.debug("closing a lost microphone stream failed", exc_info=True)

    # -- any thread ---------------------------------------------------------------------

    def set_muted(self, muted: bool) -> None:
        """Mute (the callback discards and counts blocks) or unmute (drop what queued)."""
        was_muted, self._muted = self._muted, muted
        if was_muted and not muted:
            self._drain()

    def _drain(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._framer.clear()
        self._ready.clear()

    @property
    def is_open(self) -> bool:
        """Whether a stream is open now (False while the device is lost)."""
        return self._stream is not None

    def close(self) -> None:
        """Stop and close the stream; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._close_stream()
        self._drain()

    def __enter__(self) -> SoundDeviceMicrophone:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
