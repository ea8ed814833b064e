"""The paw button through gpiozero's MockFactory driving the real listen loop (WAV twins
for microphone and speaker, real VAD and Vosk): hold to listen, let go to end the
utterance, a squeeze for one utterance, and a press that stops the bear's speech.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from audio_support import KO_PHRASES, korean_model, speech_pcm

from agent.voice.ears import Ears
from agent.voice.loop import VoiceLoop
from agent.voice.modes import Listening
from agent.voice.recognizer import StreamingRecognizer, load_model
from agent.voice.speech import Synthesizer, Voice
from agent.voice.vad import VadSegmenter
from config.pins import PinsSettings
from config.voice import VoiceSettings
from hardware.led import LED_COLOURS, StatusLed
from hardware.pins import MockPaw, PawButton, make_pin_factory
from hardware.wav import WavMicrophone, WavSpeaker

LONG_REPLY = "Once upon a time a little bear lived in a big forest. " * 4


@pytest.fixture(scope="module")
def model():
    return load_model(korean_model(), 16000)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def bear(model):
    """A running loop on twins; yields (loop, paw hands, microphone, speaker, heard, led)."""
    voice_settings = VoiceSettings(hangover_ms=3000)  # only the paw ends an utterance
    microphone = WavMicrophone(realtime=True)
    speaker = WavSpeaker(realtime=True)
    heard: list[str] = []
    reply = ["Yes!"]
    ears = Ears(VadSegmenter(voice_settings), StreamingRecognizer(model, 16000, KO_PHRASES))
    pins = PinsSettings()
    factory = make_pin_factory(pins)
    led = StatusLed.from_settings(pins, factory)
    loop = VoiceLoop(voice_settings, microphone, ears, Voice(Synthesizer(voice_settings), speaker),
                     lambda text: heard.append(text) or reply[0], led=led)
    button = PawButton(pins, factory, loop.paw_pressed, loop.paw_released)
    runner = threading.Thread(target=loop.run, name="voice-loop")
    runner.start()
    loop.reply = reply  # tests may change what the bear answers
    yield loop, MockPaw(factory, pins.paw_pin), microphone, speaker, heard, led
    loop.request_stop()
    runner.join(15)
    assert not runner.is_alive()
    button.close()
    led.close()
    factory.close()


def test_hold_listens_and_release_ends_the_utterance(bear, tmp_path: Path) -> None:
    loop, paw, microphone, speaker, heard, led = bear
    paw.press()
    wait_for(lambda: loop.gate.state is Listening.HELD, 2, "listening")
    assert led.colour == LED_COLOURS["listening"]
    microphone.feed(speech_pcm("곰 인형", tmp_path), 16000)
    wait_for(lambda: microphone.pending == 0 and loop.ears.in_speech, 5, "speech heard")
    time.sleep(0.3)
    assert heard == [], "with a 3 s hang-over only the paw can end the utterance"
    paw.release()
    wait_for(lambda: loop.turns, 5, "the turn")
    turn = loop.turns[-1]
    assert heard == ["곰 인형"] and turn.heard.reason == "released"
    assert loop.gate.state is Listening.IDLE


def test_nothing_is_heard_while_the_paw_is_idle(bear, tmp_path: Path) -> None:
    loop, paw, microphone, speaker, heard, led = bear
    microphone.feed(speech_pcm("안녕하세요", tmp_path), 16000)
    wait_for(lambda: microphone.pending == 0, 5, "the audio to pass")
    time.sleep(0.2)
    assert heard == [] and not loop.ears.in_speech
    assert microphone.stats.muted > 30


def test_a_press_while_speaking_stops_the_speech(bear, tmp_path: Path) -> None:
    loop, paw, microphone, speaker, heard, led = bear
    loop.reply[0] = LONG_REPLY
    paw.press()
    microphone.feed(speech_pcm("노래 하자", tmp_path), 16000)
    wait_for(lambda: microphone.pending == 0, 5, "the audio to pass")
    paw.release()
    wait_for(lambda: loop.voice.speaking, 5, "the bear to start speaking")
    time.sleep(0.5)
    pressed_at = time.monotonic()
    paw.press()  # barge-in
    wait_for(lambda: not loop.voice.speaking, 1, "the speech to stop")
    stopped_after = time.monotonic() - pressed_at
    wait_for(lambda: loop.turns, 2, "the turn record")
    played, rate, completed = speaker.played[-1]
    full = Synthesizer(VoiceSettings()).synthesize(LONG_REPLY)
    assert not completed and not loop.turns[-1].completed
    assert len(played) / 2 / rate < full.seconds / 2
    assert stopped_after < 0.2 and loop.barge_ins == 1
    wait_for(lambda: loop.gate.state is Listening.HELD, 2, "listening again after barge-in")
    paw.release()


def test_a_squeeze_listens_for_one_utterance(bear, tmp_path: Path) -> None:
    loop, paw, microphone, speaker, heard, led = bear
    paw.press()
    time.sleep(0.1)
    paw.release()  # shorter than squeeze_s: one utterance
    wait_for(lambda: loop.gate.state is Listening.ONE_UTTERANCE, 2, "one-utterance listening")
    microphone.feed(speech_pcm("오늘 날씨", tmp_path), 16000)
    wait_for(lambda: loop.turns, 8, "the utterance to end by silence")
    assert heard == ["오늘 날씨"] and loop.turns[-1].heard.reason == "silence"
    assert loop.gate.state is Listening.IDLE
