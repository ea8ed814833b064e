"""Streaming speech recognition with Vosk: partials while the child speaks, then the final
text with word confidences. The model is checked before Vosk sees it, so a missing,
partial or wrong-rate model is one clear error, not a Kaldi crash.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.voice.errors import ModelError
from config.voice import MODEL_HELP

if TYPE_CHECKING:
    import vosk  # untyped: its names are Any to mypy, but say what is meant

logger = logging.getLogger(__name__)

REQUIRED_FILES = ("am/final.mdl", "conf/mfcc.conf", "conf/model.conf")
"""Files every Vosk model directory has."""
GRAPHS = (("graph/HCLG.fst",), ("graph/HCLr.fst", "graph/Gr.fst"))
"""A model has a static graph, or a lookahead graph of two parts (small models)."""
UNKNOWN_WORD = "[unk]"
"""Vosk's catch-all word in a phrase grammar."""

_models: dict[Path, vosk.Model] = {}
_models_lock = threading.Lock()


@dataclass(frozen=True)
class Word:
    """One recognized word."""

    text: str
    """The word."""
    confidence: float
    """Vosk's confidence, 0..1."""
    start_s: float
    """Start, seconds from the start of the utterance."""
    end_s: float
    """End, seconds from the start of the utterance."""


@dataclass(frozen=True)
class Transcript:
    """The final result for one utterance."""

    text: str
    """What was said, words joined by spaces (empty: nothing recognized)."""
    words: tuple[Word, ...]
    """The words with their confidences."""
    in_grammar: bool = True
    """False when a phrase grammar was used and the text is none of its phrases."""

    @property
    def confidence(self) -> float:
        """The weakest word's confidence (0 when nothing was recognized)."""
        known = [w.confidence for w in self.words if w.text != UNKNOWN_WORD]
        return min(known) if known and len(known) == len(self.words) else 0.0

    def unsure(self, min_confidence: float) -> bool:
        """Whether the bear should ask again rather than answer (never guess)."""
        return not self.text or not self.in_grammar or self.confidence < min_confidence


def model_sample_rate(path: Path) -> int:
    """The sample rate the model's features were trained at, Hertz (default 16000)."""
    text = (path / "conf" / "mfcc.conf").read_text(encoding="utf-8", errors="replace")
    match = re.search(r"--sample-frequency\s*=\s*(\d+)", text)
    return int(match.group(1)) if match else 16000


def check_model(path: Path | None, sample_rate: int) -> Path:
    """The model directory if it is complete and made for ``sample_rate``; else ModelError."""
    if path is None:
        raise ModelError(f"no Vosk model configured (voice.model_path is unset) — {MODEL_HELP}")
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ModelError(f"Vosk model at {path} does not exist — {MODEL_HELP}")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if not any(all((path / name).is_file() for name in graph) for graph in GRAPHS):
        missing.append("graph/HCLG.fst (or graph/HCLr.fst + graph/Gr.fst)")
    if missing:
        raise ModelError(
            f"Vosk model at {path} is incomplete: no {', '.join(missing)} — {MODEL_HELP}"
        )
    rate = model_sample_rate(path)
    if rate != sample_rate:
        raise ModelError(
            f"Vosk model at {path} is made for {rate} Hz audio but the bear hears at "
            f"{sample_rate} Hz — use a {sample_rate} Hz model ({MODEL_HELP}) or set "
            "TEDDY_AUDIO__SAMPLE_RATE"
        )
    return path


def load_model(path: Path | None, sample_rate: int = 16000) -> vosk.Model:
    """The Vosk model at ``path``, checked and loaded once per process."""
    checked = check_model(path, sample_rate).resolve()
    with _models_lock:
        if checked not in _models:
            import vosk

            vosk.SetLogLevel(-1)
            try:
                _models[checked] = vosk.Model(str(checked))
            except Exception as exc:
                raise ModelError(f"Vosk cannot load the model at {checked} ({exc}) — "
                                 f"{MODEL_HELP}") from None
            logger.info("Vosk model loaded from %s", checked)
        return _models[checked]


class StreamingRecognizer:
    """Vosk recognition of one utterance at a time, fed frame by frame."""

    def __init__(self, model: vosk.Model, sample_rate: int = 16000,
                 grammar: list[str] | None = None) -> None:
        import vosk

        self.sample_rate = sample_rate
        """Rate of the frames fed, Hertz."""
        self.grammar = list(grammar) if grammar else None
        """The phrase grammar, or None for free dictation."""
        self._phrases = {" ".join(p.split()) for p in self.grammar or ()}
        if self.grammar:
            phrases = json.dumps([*self.grammar, UNKNOWN_WORD], ensure_ascii=False)
            self._kaldi = vosk.KaldiRecognizer(model, sample_rate, phrases)
        else:
            self._kaldi = vosk.KaldiRecognizer(model, sample_rate)
        self._kaldi.SetWords(True)
        self._segments: list[dict[str, Any]] = []
        self._partial = ""
        self.audio_seconds = 0.0
        """Audio fed since the last :meth:`final`, seconds."""

    def accept(self, frame: bytes) -> str | None:
        """Feed one frame; returns the partial text when it changed, else None."""
        self.audio_seconds += len(frame) / 2 / self.sample_rate
        if self._kaldi.AcceptWaveform(frame):
            self._segments.append(json.loads(self._kaldi.Result()))
            partial = ""
        else:
            partial = json.loads(self._kaldi.PartialResult()).get("partial", "")
        if partial != self._partial:
            self._partial = partial
            return partial
        return None

    def final(self) -> Transcript:
        """The final result of the utterance fed so far; then ready for the next one."""
        self._segments.append(json.loads(self._kaldi.FinalResult()))
        words = tuple(
            Word(item["word"], float(item.get("conf", 0.0)), float(item.get("start", 0.0)),
                 float(item.get("end", 0.0)))
            for segment in self._segments for item in segment.get("result", ())
        )
        text = " ".join(" ".join(segment.get("text", "") for segment in self._segments).split())
        self.audio_seconds = 0.0
        self.reset()
        in_grammar = self.grammar is None or text in self._phrases
        return Transcript(text, words, in_grammar)

    def reset(self) -> None:
        """Forget the audio fed so far."""
        if self.audio_seconds:
            self._kaldi.FinalResult()  # Reset() alone keeps audio buffered mid-utterance
        self._kaldi.Reset()
        self._segments = []
        self._partial = ""
        self.audio_seconds = 0.0
