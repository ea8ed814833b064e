"""Errors of the voice pipeline."""

from config.errors import TeddyError


class ModelError(TeddyError, FileNotFoundError):
    """The Vosk model is missing, incomplete, or made for another sample rate."""


class SpeechError(TeddyError, RuntimeError):
    """The speech synthesizer failed."""
