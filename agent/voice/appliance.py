"""Builds the voice loop from settings: microphone, speaker, paw, LED, ears and voice.

Everything here is an adapter picked by config, so the same wiring runs on the bear
(sounddevice, lgpio) and on a laptop or in CI (WAV twins, gpiozero's MockFactory).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.voice.ears import Ears
from agent.voice.loop import VoiceLoop
from agent.voice.recognizer import StreamingRecognizer, load_model
from agent.voice.speech import Synthesizer, Voice
from agent.voice.vad import VadSegmenter
from config.settings import Settings
from hardware.audio import AlertHook, open_microphone, open_speaker
from hardware.led import StatusLed
from hardware.pins import PawButton, make_pin_factory

if TYPE_CHECKING:
    import vosk

logger = logging.getLogger(__name__)


def build_ears(settings: Settings, grammar: list[str] | None = None,
               model: vosk.Model | None = None) -> Ears:
    """A VAD segmenter and a Vosk recognizer (grammar from settings unless given)."""
    rate = settings.audio.sample_rate
    model = model if model is not None else load_model(settings.voice.model_path, rate)
    phrases = grammar if grammar is not None else settings.voice.grammar
    return Ears(
        VadSegmenter(settings.voice, rate, settings.audio.block_ms),
        StreamingRecognizer(model, rate, phrases),
    )


@dataclass
class Appliance:
    """The running appliance's parts (the loop, and the adapters tests may reach)."""

    loop: VoiceLoop
    """The listen loop; call ``loop.run()``."""
    paw: PawButton | None
    """The paw button adapter (set once the loop exists)."""
    pin_factory: Any
    """The gpiozero pin factory (a MockFactory in the simulated twin)."""
    led: StatusLed
    """The status LED (one table of patterns: hardware/led.py)."""
    voice: Voice
    """The bear's voice (pairing speaks its code with it)."""
    paw_listeners: list[tuple[Callable[[], None], Callable[[], None]]] = field(
        default_factory=list)
    """More ``(pressed, released)`` hooks for the paw, after the loop's own (pairing)."""

    def _paw_pressed(self) -> None:
        self.loop.paw_pressed()
        for pressed, _ in list(self.paw_listeners):
            pressed()

    def _paw_released(self) -> None:
        self.loop.paw_released()
        for _, released in list(self.paw_listeners):
            released()


@contextmanager
def open_appliance(
    settings: Settings, respond: Callable[[str], str], alert: AlertHook | None = None
) -> Iterator[Appliance]:
    """Open every adapter, wire the loop, and close everything on exit."""
    with ExitStack() as stack:
        model = load_model(settings.voice.model_path, settings.audio.sample_rate)
        ears = build_ears(settings, model=model)
        wake_ears = None
        if settings.voice.listen_mode == "wake_phrase":
            wake_ears = build_ears(settings, [settings.voice.wake_phrase], model)
        microphone = open_microphone(settings.audio, alert)
        stack.callback(microphone.close)
        speaker = open_speaker(settings.audio)
        stack.callback(speaker.close)
        voice = Voice(Synthesizer(settings.voice), speaker)
        factory = make_pin_factory(settings.pins)
        stack.callback(factory.close)
        led = stack.enter_context(StatusLed.from_settings(settings.pins, factory))
        loop = VoiceLoop(settings.voice, microphone, ears, voice, respond, wake_ears, led, alert)
        appliance = Appliance(loop, None, factory, led, voice)
        appliance.paw = stack.enter_context(
            PawButton(settings.pins, factory, appliance._paw_pressed, appliance._paw_released)
        )
        yield appliance
