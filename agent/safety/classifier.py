"""The trained safety classifier: an attention-pooling head over MiniLM's token states.

Reads the whole sentence (every token's contextual state, not one averaged vector), one head
per direction ("input": the child's words, "output": the bear's). Weights and their manifest
live in ``agent/safety/model/`` (written by ``scripts/train-safety``); every file is checked
against the SHA-256 in the manifest, and the manifest must name the MiniLM weights the
embedder runs, so a stale or foreign head is refused rather than silently misjudging.
numpy only.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.safety.errors import SafetyListError
from agent.semantic.bert import gelu

logger = logging.getLogger(__name__)

DECISIVE = 0.35
"""An unsafe verdict also needs one unsafe label at least this probable: a sentence the
corpus never saw ("whats the capital of peru") spreads its probability over many unsafe
labels, and their sum alone would flag it."""

MODEL_DIR = "model"
"""Folder of the trained heads, beside the exemplars."""
MANIFEST = "manifest.json"
"""The heads' manifest: labels, thresholds and the SHA-256 of every file it covers."""
HEAD_ARRAYS = ("att_w", "att_b", "att_v", "w1", "b1", "w2", "b2")
"""Arrays of one head, as :func:`head_forward` reads them."""


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def head_forward(arrays: dict[str, np.ndarray], states: np.ndarray) -> np.ndarray:
    """Class probabilities for one text's token states ``(tokens, 384)``.

    Attention pooling (``heads`` learned queries over ``tanh`` scores), concatenated with the
    mean of the states, through a GELU hidden layer, softmax. Mirrors training/safety/head.py.
    """
    scores = np.tanh(states @ arrays["att_w"] + arrays["att_b"]) @ arrays["att_v"]
    scores = scores - scores.max(axis=0, keepdims=True)
    weights = np.exp(scores)
    weights /= weights.sum(axis=0, keepdims=True)
    pooled = np.concatenate([(weights.T @ states).reshape(-1), states.mean(axis=0)])
    hidden = gelu((pooled @ arrays["w1"] + arrays["b1"]).astype(np.float32))
    logits = hidden @ arrays["w2"] + arrays["b2"]
    logits = logits - logits.max()
    probs = np.exp(logits)
    return (probs / probs.sum()).astype(np.float32)


def ensemble_forward(members: list[dict[str, np.ndarray]], states: np.ndarray) -> np.ndarray:
    """The mean of the members' :func:`head_forward` probabilities."""
    total = head_forward(members[0], states)
    for arrays in members[1:]:
        total = total + head_forward(arrays, states)
    return (total / len(members)).astype(np.float32)


def member_arrays(saved) -> list[dict[str, np.ndarray]]:
    """The members of a saved head: arrays named ``m<k>_<name>`` (one per seed), or the plain
    names of a single head."""
    count = sum(1 for key in saved.files if key.endswith("_att_w") and key.startswith("m"))
    if count == 0:
        return [{name: saved[name].astype(np.float32) for name in HEAD_ARRAYS}]
    return [{name: saved[f"m{k}_{name}"].astype(np.float32) for name in HEAD_ARRAYS}
            for k in range(count)]


@dataclass(frozen=True)
class Decision:
    """What one head concluded about one text."""

    label: str
    """The most likely unsafe label when flagged; else the most likely allowed label."""
    probability: float
    """That label's probability."""
    flagged: bool
    """Whether the unsafe labels together reach the direction's threshold."""
    unsafe: float
    """Total probability of the unsafe labels."""


class TrainedHead:
    """One direction's head: its members' arrays (a seed ensemble), labels and threshold."""

    def __init__(self, members: list[dict[str, np.ndarray]], labels: list[str],
                 threshold: float, allow_labels: frozenset[str]) -> None:
        self.members = members
        self.labels = labels
        self.threshold = threshold
        self.allow = np.array([label in allow_labels for label in labels])

    def probabilities(self, states: np.ndarray) -> np.ndarray:
        """Probability of each label (in :attr:`labels` order): the members' mean."""
        return ensemble_forward(self.members, states)

    def decide(self, probs: np.ndarray, allowed: frozenset[str] | None = None,
               threshold: float | None = None) -> Decision:
        """The decision for ``probs``; ``allowed``: only these unsafe labels may be flagged;
        ``threshold``: instead of the trained one."""
        unsafe_mask = ~self.allow
        if allowed is not None:
            unsafe_mask &= np.array([label in allowed for label in self.labels])
        unsafe = float(probs[unsafe_mask].sum())
        if unsafe_mask.any() and unsafe >= (self.threshold if threshold is None else threshold):
            best = int(np.where(unsafe_mask, probs, -1.0).argmax())
            if probs[best] >= DECISIVE:  # one reading, not mass spread over several
                return Decision(self.labels[best], float(probs[best]), True, unsafe)
        best = int(np.where(self.allow, probs, -1.0).argmax())
        return Decision(self.labels[best], float(probs[best]), False, unsafe)


def load_heads(base: Path, fingerprint: str) -> dict[str, TrainedHead]:
    """direction -> head from ``base/model``, hash-checked against the manifest.

    Raises :class:`SafetyListError` when a file is missing, altered, or trained on another
    MiniLM than ``fingerprint``.
    """
    folder = Path(base) / MODEL_DIR
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SafetyListError(f"cannot read the safety model manifest {folder / MANIFEST}: "
                              f"{exc} — run scripts/train-safety") from None
    if manifest.get("minilm_sha256") != fingerprint:
        raise SafetyListError(f"{folder / MANIFEST} was trained on other MiniLM weights — "
                              "run scripts/train-safety with the installed model")
    allow = frozenset(manifest.get("allow_labels", ["benign"]))
    heads = {}
    for direction, spec in manifest["heads"].items():
        path = folder / spec["file"]
        try:
            digest = file_sha256(path)
        except OSError as exc:
            raise SafetyListError(f"safety model file {path} is unreadable: {exc} — restore "
                                  "it or run scripts/train-safety") from None
        if digest != spec["sha256"]:
            raise SafetyListError(f"safety model file {path} fails its hash check — restore "
                                  "it or run scripts/train-safety")
        with np.load(path, allow_pickle=False) as saved:
            members = member_arrays(saved)
        heads[direction] = TrainedHead(members, list(spec["labels"]), float(spec["threshold"]),
                                       allow)
    logger.debug("safety model heads loaded from %s", folder)
    return heads
