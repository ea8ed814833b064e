"""The deciding semantic stage: the trained classifier (agent/safety/classifier.py) reading
MiniLM's token states of the whole sentence, one head per direction.

Same interface as the nearest-neighbour :class:`agent.safety.semantic.SemanticStage` it
replaces (``judge``, ``judge_window``, ``judge_each``, ``closeness``, ``prime``,
``categories``), so the filter runs either; a finding is a :class:`SemanticHit` whose
``similarity`` is the label's probability and whose ``nearest`` names the model.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from agent.safety.classifier import MODEL_DIR, TrainedHead, load_heads
from agent.safety.semantic import BENIGN, SemanticHit, SemanticStage, read_exemplars

logger = logging.getLogger(__name__)

CACHE_SIZE = 4096
"""Recent texts whose probabilities are kept (a turn is judged, then maybe with context)."""
OUTPUT_CONFIDENT = 0.95
"""For the bear's words the exemplar index still blocks what it finds (on the first frozen
set the trained output head alone missed more unsafe replies and blocked more safe ones than
the index: 0.901 / 0.073 vs 0.938 / 0.061); the head adds what it is this sure of (0.6% of the
calibration split's allowed replies reach it)."""
KNOWN_REPLIES = "known_replies.txt"
"""Beside the heads: the built-in replies, benign without a forward pass."""
CONFIRM = 0.15
"""The context pass only confirms: the last turn alone must give the context's category at
least this probability (and more than any other escalating label). A split lure's last turn
("he said hop in quick") leans that way alone; an ordinary question after a sad line does
not."""
MODEL_NAME = "trained classifier"
"""What a finding's ``nearest`` says (no exemplar decided)."""


class ModelStage:
    """Trained heads over the embedder's token states. Thread-safe."""

    suspicion = 0.10
    """A turn whose escalating labels reach this probability is also judged with the turns
    before it (one more forward pass)."""

    def __init__(self, embedder, base: Path, exemplars: SemanticStage | None = None) -> None:
        self._embedder = embedder
        self._exemplars = exemplars
        self.heads: dict[str, TrainedHead] = load_heads(base, embedder.fingerprint)
        self._lock = threading.Lock()
        self._recent: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        """(direction or "vector", text) -> probabilities or sentence vector."""
        self.categories = {d: sorted(set(h.labels) - set(_allowed_labels(h)))
                           for d, h in self.heads.items()}
        """Unsafe labels per direction."""
        folder = Path(base) / "exemplars"
        self._known_benign = {d: frozenset(t for c, t in read_exemplars(folder / d) if c == BENIGN)
                              for d in ("input", "output")}
        self._known_benign["output"] |= read_known_replies(Path(base) / MODEL_DIR / KNOWN_REPLIES)

    def probabilities(self, text: str, direction: str) -> np.ndarray:
        """Each label's probability for ``text`` (recent texts from a small cache)."""
        key = (direction, text)
        with self._lock:
            cached = self._recent.get(key)
            if cached is not None:
                self._recent.move_to_end(key)
                return cached
        probs = self._judged(direction, text, self._embedder.token_states([text])[0])
        return probs

    def _judged(self, direction: str, text: str, states: np.ndarray) -> np.ndarray:
        """The head's probabilities for ``states`` (remembered), and for the bear's words the
        sentence vector for the exemplar index (the mean of the same states: no second pass)."""
        probs = self.heads[direction].probabilities(states)
        if direction == "output" and self._exemplars is not None:
            pooled = states.mean(axis=0)
            self._remember(("vector", text), pooled / max(float(np.linalg.norm(pooled)), 1e-12))
        self._remember((direction, text), probs)
        return probs

    def _exemplar_hit(self, text: str) -> SemanticHit | None:
        """The exemplar index's finding for the bear's words (None without an index)."""
        if self._exemplars is None:
            return None
        self.probabilities(text, "output")
        with self._lock:
            vector = self._recent.get(("vector", text))
        if vector is None:  # evicted between the two reads: one more pass
            pooled = self._embedder.token_states([text])[0].mean(axis=0)
            vector = pooled / max(float(np.linalg.norm(pooled)), 1e-12)
        return self._exemplars.indexes["output"].judge(vector)

    def _remember(self, key: tuple[str, str], probs: np.ndarray) -> None:
        with self._lock:
            self._recent[key] = probs
            while len(self._recent) > CACHE_SIZE:
                self._recent.popitem(last=False)

    def judge(self, text: str, direction: str,
              allowed: frozenset[str] | None = None) -> SemanticHit | None:
        """The finding for ``text``: an unsafe label, or an allowed non-benign label such as
        ``comfort``; None for plain benign. A built-in benign reply needs no forward pass."""
        if allowed is None and text.strip() in self._known_benign[direction]:
            return None
        head = self.heads[direction]
        probs = self.probabilities(text, direction)
        threshold = None
        if direction == "output" and allowed is None and self._exemplars is not None:
            near = self._exemplar_hit(text)
            if near is not None:
                return near
            threshold = OUTPUT_CONFIDENT
        decision = head.decide(probs, allowed, threshold)
        if not decision.flagged and (decision.label == BENIGN or allowed is not None):
            return None
        benign = float(probs[head.labels.index(BENIGN)]) if BENIGN in head.labels else 0.0
        return SemanticHit(decision.label, decision.probability, MODEL_NAME, benign)

    def judge_window(self, texts: list[str], direction: str,
                     allowed: frozenset[str]) -> SemanticHit | None:
        """The finding for several turns taken together (one text, turns joined), kept only
        when the last turn alone leans the same way (:func:`confirms`): the context confirms
        what the line says, it never makes an ordinary line ("why do they hoot") into the
        escalation an earlier turn was about."""
        hit = self.judge(" . ".join(texts), direction, allowed)
        if hit is None or not texts:
            return None
        head = self.heads[direction]
        alone = self.probabilities(texts[-1], direction)
        return hit if confirms(head, alone, hit.category, allowed) else None

    def judge_each(self, texts: list[str], direction: str, allowed: frozenset[str]) -> bool:
        """Whether any one of ``texts`` alone is a finding (in ``allowed`` labels)."""
        return any(self.judge(t, direction, allowed) is not None for t in texts)

    def closeness(self, text: str, direction: str, allowed: frozenset[str]) -> float:
        """Total probability of the ``allowed`` labels for ``text``."""
        head = self.heads[direction]
        probs = self.probabilities(text, direction)
        return float(sum(p for label, p in zip(head.labels, probs, strict=True)
                         if label in allowed))

    def prime(self, texts: list[str], direction: str) -> int:
        """Judge ``texts`` ahead (a content pack's lines); returns how many needed a pass."""
        todo = list(dict.fromkeys(t for t in texts if t.strip()
                                  and t.strip() not in self._known_benign[direction]))
        todo = [t for t in todo if (direction, t) not in self._recent][:CACHE_SIZE]
        for text, states in zip(todo, self._embedder.token_states(todo), strict=True):
            self._judged(direction, text, states)
        return len(todo)


def confirms(head: TrainedHead, alone: np.ndarray, category: str,
             allowed: frozenset[str]) -> bool:
    """Whether a line alone supports the context's ``category``: it is the line's most likely
    label among ``allowed`` and reaches :data:`CONFIRM`."""
    if category not in head.labels:
        return False
    mask = np.array([label in allowed for label in head.labels])
    best = int(np.where(mask, alone, -1.0).argmax())
    return head.labels[best] == category and float(alone[best]) >= CONFIRM


def read_known_replies(path: Path) -> frozenset[str]:
    """The built-in content pack's replies (one a line; ``#`` comments); none if absent."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return frozenset()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def _allowed_labels(head: TrainedHead) -> list[str]:
    return [label for label, allow in zip(head.labels, head.allow, strict=True) if allow]
