"""The real Vosk engine with the small Korean model, on speech espeak-ng makes at test time."""

from __future__ import annotations

from pathlib import Path

import pytest
from audio_support import KO_PHRASES, korean_model, speech_pcm, synthesize

from agent.voice.ears import Ears, hear_pcm
from agent.voice.errors import ModelError
from agent.voice.recognizer import StreamingRecognizer, check_model, load_model
from agent.voice.vad import VadSegmenter
from config.errors import TeddyError
from config.voice import VoiceSettings
from hardware.wav import WavMicrophone, read_wav


@pytest.fixture(scope="module")
def model():
    """The Korean model, loaded once for the module."""
    return load_model(korean_model(), 16000)


def make_ears(model, grammar=KO_PHRASES, **voice) -> Ears:
    settings = VoiceSettings(**voice)
    return Ears(VadSegmenter(settings), StreamingRecognizer(model, 16000, grammar))


def test_grammar_phrases_come_back_exactly(model, tmp_path: Path) -> None:
    """At least 4 of 5 different spoken phrases are recognized word for word."""
    ears = make_ears(model)
    results = {}
    for index, phrase in enumerate(KO_PHRASES):
        pcm, rate = read_wav(synthesize(phrase, tmp_path / f"phrase{index}.wav"))
        heard = hear_pcm(ears, pcm, rate)
        results[phrase] = heard.transcript.text if heard else None
    exact = [phrase for phrase, text in results.items() if text == phrase]
    print(f"exact: {len(exact)} of 5")
    assert len(exact) >= 4, f"recognized exactly only {len(exact)} of 5: {results}"


def test_partials_then_final_with_word_confidences(model, tmp_path: Path) -> None:
    """Streaming: partial texts arrive during speech, the final carries word confidences."""
    recognizer = StreamingRecognizer(model, 16000, KO_PHRASES)
    pcm = speech_pcm("곰 인형", tmp_path)
    partials = []
    for offset in range(0, len(pcm), 960):
        partial = recognizer.accept(pcm[offset : offset + 960])
        if partial:
            partials.append(partial)
    transcript = recognizer.final()
    assert partials, "no partial result while the audio streamed in"
    assert transcript.text == "곰 인형"
    assert [w.text for w in transcript.words] == ["곰", "인형"]
    assert all(0.5 <= w.confidence <= 1.0 for w in transcript.words)
    assert transcript.words[0].end_s <= transcript.words[1].start_s + 0.01
    assert recognizer.audio_seconds == 0, "the recognizer still holds the utterance's audio"


def test_vad_cuts_one_utterance_between_silences(model, tmp_path: Path) -> None:
    """Silence, a phrase, silence: exactly one utterance, ended by the hang-over."""
    ears = make_ears(model)
    microphone = WavMicrophone(silence_after=False)
    microphone.feed(bytes(32000), 16000)
    microphone.feed(speech_pcm("오늘 날씨", tmp_path), 16000)
    microphone.feed(bytes(48000), 16000)
    heard = [h for f in iter(microphone.read, None) if (h := ears.feed(f)) is not None]
    assert len(heard) == 1
    assert heard[0].reason == "silence" and not heard[0].too_short
    assert heard[0].transcript.text == "오늘 날씨"
    assert ears.segmenter.in_speech is False


def test_a_click_is_too_short_to_be_an_utterance(model) -> None:
    """A 60 ms burst is below min_speech_ms: discarded, not answered."""
    import numpy as np

    ears = make_ears(model, min_speech_ms=300, vad_aggressiveness=0)
    rng = np.random.default_rng(7)
    burst = (rng.standard_normal(16000 * 150 // 1000) * 8000).astype(np.int16).tobytes()
    heard = hear_pcm(ears, bytes(16000) + burst + bytes(32000), 16000)
    assert heard is None


def test_max_utterance_length_cuts_long_speech(model, tmp_path: Path) -> None:
    """Speech longer than max_utterance_s is cut there."""
    ears = make_ears(model, max_utterance_s=1.0)
    pcm = speech_pcm("안녕하세요 곰 인형 오늘 날씨 고양이 좋아 노래 하자", tmp_path)
    heard = hear_pcm(ears, pcm, 16000)
    assert heard is not None and heard.reason == "max_length"
    assert heard.audio_s <= 1.05


def test_missing_model_names_the_path_and_the_way_out(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as caught:
        check_model(tmp_path / "nowhere", 16000)
    message = str(caught.value)
    assert str(tmp_path / "nowhere") in message and "scripts/fetch-model" in message
    assert isinstance(caught.value, TeddyError) and isinstance(caught.value, FileNotFoundError)
    with pytest.raises(ModelError, match="TEDDY_VOICE__MODEL_PATH"):
        check_model(None, 16000)


def test_partial_model_names_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "mfcc.conf").write_text("--use-energy=false\n")
    with pytest.raises(ModelError, match=r"incomplete: no am/final\.mdl, conf/model\.conf, graph"):
        check_model(tmp_path, 16000)


def test_wrong_rate_model_is_refused(tmp_path: Path) -> None:
    source = korean_model()
    for name in ("am/final.mdl", "conf/model.conf", "graph/HCLr.fst", "graph/Gr.fst"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).symlink_to(source / name)
    (tmp_path / "conf" / "mfcc.conf").write_text("--sample-frequency=8000\n")
    with pytest.raises(ModelError, match=r"made for 8000 Hz audio but the bear hears at 16000"):
        load_model(tmp_path, 16000)
    assert check_model(source, 16000) == source


def test_an_unsure_result_asks_the_child_again(model, tmp_path: Path) -> None:
    """Words outside the grammar come back unsure: the bear asks again, never guesses."""
    from agent.voice.ears import reply_for
    from agent.voice.phrases import phrase

    asked: list[str] = []
    ears = make_ears(model)
    for words in ("강아지 친구", "사과 먹자", "엄마 아빠"):
        heard = hear_pcm(ears, speech_pcm(words, tmp_path), 16000)
        assert heard is not None
        assert heard.transcript.unsure(VoiceSettings().min_confidence), heard.transcript
        reply = reply_for(heard, VoiceSettings(), lambda text: asked.append(text) or "answer")
        assert reply == phrase("say_again")
    assert asked == []
    sure = hear_pcm(ears, speech_pcm("곰 인형", tmp_path), 16000)
    assert reply_for(sure, VoiceSettings(), lambda text: f"you said {text}") == "you said 곰 인형"
