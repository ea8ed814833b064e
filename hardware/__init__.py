"""Thin adapters over physical things, each with a simulated twin selected by config.

Audio: :mod:`hardware.microphone` and :mod:`hardware.speaker` (sounddevice), their WAV
twins in :mod:`hardware.wav`; pins: :mod:`hardware.pins` (gpiozero, MockFactory twin).
Build them from settings with :func:`hardware.audio.open_microphone` and
:func:`hardware.audio.open_speaker`.
"""
