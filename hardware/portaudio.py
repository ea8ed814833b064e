"""PortAudio through sounddevice: finding devices by name or index, and re-scanning.

PortAudio lists devices once, when it is initialised; a USB microphone plugged back in
is invisible until the library is re-initialised. :func:`rescan` does that. It closes
every open stream of the process, so only the listener thread calls it, and only while
the speaker is idle (the bear speaks from that same thread).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Literal

from hardware.errors import AudioDeviceError

logger = logging.getLogger(__name__)

LOCK = threading.Lock()
"""Serialises PortAudio re-initialisation and stream opening."""


def import_sounddevice() -> Any:
    """The sounddevice module, imported on first use."""
    try:
        import sounddevice
    except OSError as exc:  # PortAudio library missing
        raise AudioDeviceError(
            f"PortAudio is not available ({exc}) — apt-get install libportaudio2 "
            "or set TEDDY_AUDIO__BACKEND=wav"
        ) from None
    return sounddevice


def resolve_device(
    backend: Any, wanted: str | int | None, kind: Literal["input", "output"]
) -> int | None:
    """PortAudio index of the device named (substring, case-insensitive) or numbered.

    None means the system default. Raises :class:`AudioDeviceError` naming the device and
    the devices that exist.
    """
    if wanted is None:
        return None
    channels_key = f"max_{kind}_channels"
    devices = list(backend.query_devices())
    if isinstance(wanted, int) or (isinstance(wanted, str) and wanted.isdigit()):
        index = int(wanted)
        if 0 <= index < len(devices) and devices[index][channels_key] > 0:
            return index
    else:
        for index, device in enumerate(devices):
            if wanted.lower() in device["name"].lower() and device[channels_key] > 0:
                return index
    names = ", ".join(f"{i}:{d['name']}" for i, d in enumerate(devices) if d[channels_key] > 0)
    raise AudioDeviceError(
        f"no {kind} device {wanted!r} (have: {names or 'none'}) — plug it in or set "
        f"TEDDY_AUDIO__{kind.upper()}_DEVICE"
    )


def supported_rate(backend: Any, device: int | None, rate: int, kind: str) -> int:
    """``rate`` if the device takes it, else the device's default rate (Hertz)."""
    check = backend.check_input_settings if kind == "input" else backend.check_output_settings
    try:
        check(device=device, channels=1, dtype="int16", samplerate=rate)
        return rate
    except Exception:
        info = backend.query_devices(device, kind=kind) if device is None else (
            backend.query_devices(device))
        fallback = int(info["default_samplerate"])
        logger.info("%s device %s cannot do %d Hz; using %d Hz and resampling",
                    kind, device, rate, fallback)
        return fallback


def rescan(backend: Any) -> None:
    """Re-initialise PortAudio so that devices plugged in since are seen."""
    terminate = getattr(backend, "_terminate", None)
    initialize = getattr(backend, "_initialize", None)
    if terminate is None or initialize is None:
        return
    try:
        terminate()
    except Exception:
        logger.debug("PortAudio terminate failed", exc_info=True)
    initialize()
