"""Errors raised by the hardware adapters."""

from config.errors import TeddyError


class AudioDeviceError(TeddyError, OSError):
    """An audio device cannot be found or opened."""


class PinError(TeddyError, OSError):
    """A GPIO pin factory or pin cannot be set up."""
