"""The real sounddevice path: PortAudio -> ALSA pulse plugin -> a PulseAudio null sink's
monitor that the test plays synthesized speech into. Also: the microphone vanishing
mid-utterance and coming back while the agent keeps running.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from audio_support import KO_PHRASES, PulseServer, korean_model, synthesize

from agent.alerts import AlertSink
from agent.voice.ears import Ears
from agent.voice.loop import VoiceLoop
from agent.voice.recognizer import StreamingRecognizer, load_model
from agent.voice.speech import Synthesizer, Voice
from agent.voice.vad import VadSegmenter
from config.pins import PinsSettings
from config.voice import AudioSettings, VoiceSettings
from hardware import portaudio
from hardware.microphone import SoundDeviceMicrophone
from hardware.pins import MockPaw, PawButton, make_pin_factory
from hardware.wav import WavSpeaker


@pytest.fixture
def pulse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A PulseAudio server of this test's own; PortAudio re-scanned to see it."""
    server = PulseServer(tmp_path / "pulse")
    server.start()
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    backend = portaudio.import_sounddevice()
    portaudio.rescan(backend)
    yield server
    server.stop()
    portaudio.rescan(backend)


@pytest.fixture(scope="module")
def model():
    return load_model(korean_model(), 16000)


def make_ears(model) -> Ears:
    return Ears(VadSegmenter(VoiceSettings()), StreamingRecognizer(model, 16000, KO_PHRASES))


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_real_microphone_hears_exactly_one_utterance(pulse, model, tmp_path: Path) -> None:
    wav = synthesize("오늘 날씨", tmp_path / "utterance.wav")
    ears = make_ears(model)
    heard = []
    with SoundDeviceMicrophone(AudioSettings(input_device="pulse")) as microphone:
        assert microphone.is_open and microphone.device_rate == 16000
        player = threading.Timer(0.6, pulse.play, args=(wav,))
        player.start()
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            frame = microphone.read(0.2)
            if frame is not None and (result := ears.feed(frame)) is not None:
                heard.append(result)
        player.join()
        stats = microphone.stats
    assert [h.transcript.text for h in heard] == ["오늘 날씨"]
    assert heard[0].reason == "silence"
    assert stats.blocks > 100 and stats.dropped == 0 and stats.losses == 0


def test_microphone_vanishes_mid_utterance_and_comes_back(pulse, model, tmp_path: Path) -> None:
    long_wav = synthesize("안녕하세요 곰 인형 오늘 날씨 노래 하자", tmp_path / "cut.wav")
    next_wav = synthesize("고양이 좋아", tmp_path / "next.wav")
    alerts = AlertSink()
    answered: list[str] = []
    audio = AudioSettings(input_device="pulse", stall_timeout_s=1.0, reopen_backoff_s=0.2)
    microphone = SoundDeviceMicrophone(audio, alert=alerts.raise_alert)
    voice = Voice(Synthesizer(VoiceSettings()), WavSpeaker())
    loop = VoiceLoop(VoiceSettings(), microphone, make_ears(model), voice,
                     lambda text: answered.append(text) or "좋아요")
    pins = PinsSettings()
    factory = make_pin_factory(pins)
    runner = threading.Thread(target=loop.run, name="voice-loop")
    with microphone, factory, PawButton(pins, factory, loop.paw_pressed, loop.paw_released):
        paw = MockPaw(factory, pins.paw_pin)
        runner.start()
        wait_for(lambda: microphone.stats.blocks > 5, 5, "the stream to deliver")
        paw.press()  # held for the whole test: listening throughout
        cut_player = pulse.start_playing(long_wav)
        wait_for(lambda: loop.ears.in_speech, 3, "speech to start")
        time.sleep(0.5)  # mid-utterance: the player stops and the microphone vanishes
        cut_player.kill()
        cut_player.wait(5)
        pulse.unload_sink()
        wait_for(lambda: alerts.recent("audio.device_lost"), 5, "the device_lost alert")
        time.sleep(0.5)
        pulse.load_sink()
        wait_for(lambda: alerts.recent("audio.device_restored"), 10, "the device_restored alert")
        assert runner.is_alive()
        blocks = microphone.stats.blocks
        wait_for(lambda: microphone.stats.blocks > blocks + 5, 5, "the reopened stream")
        pulse.play(next_wav)
        wait_for(lambda: "고양이 좋아" in answered, 8, "the next utterance to be answered")
        paw.release()
        loop.request_stop()
        runner.join(10)
    assert not runner.is_alive()
    assert microphone.stats.losses >= 1 and microphone.stats.reopens >= 1
    lost = alerts.recent("audio.device_lost")[0]
    assert "pulse" in lost.message and lost.severity.value == "warning"
