"""Nearest labelled example by meaning: sentence vectors of the exemplars, cached.

An :class:`ExemplarIndex` holds one L2-normalised vector per example phrase and its label.
``nearest`` scores each label by its closest example (cosine = dot product) and reports the
best label, its score, and the best score of any label from another *group* — the margin
rule: a match counts only when it is clearly nearer than every other kind of answer.

Vectors are computed once per (model, phrase list) and kept in memory. They are looked up
first in a ``shipped`` file (``.npz`` made by ``scripts/make-dialogue-vectors`` for the
built-in content; used only when its digest matches the phrases and model exactly), then in
``cache_dir`` (``.npy``, written after computing, e.g. for a fleet-installed pack), so a bear
starts without re-encoding hundreds of phrases.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

logger = logging.getLogger(__name__)

_MEMORY: dict[str, np.ndarray] = {}
_LOCK = threading.Lock()


class Encoder(Protocol):
    """What the index needs from an embedder (``agent.semantic.Embedder``)."""

    def encode(self, texts: list[str]) -> np.ndarray:
        """One L2-normalised vector per text."""


@dataclass(frozen=True)
class Nearest:
    """The best label for a text and how sure the index is."""

    label: str
    """Label of the nearest example."""
    score: float
    """Cosine similarity to that example."""
    runner_up: float
    """Best cosine of any label from a different group."""
    example: str
    """The nearest example phrase (for explaining a decision)."""

    @property
    def margin(self) -> float:
        """How much nearer the best label is than any other group's."""
        return self.score - self.runner_up


class ExemplarIndex:
    """Labelled example phrases and their vectors."""

    def __init__(self, encoder: Encoder, examples: Sequence[tuple[str, str]],
                 group: Callable[[str], str] = lambda label: label,
                 cache_dir: Path | None = None, fingerprint: str = "",
                 shipped: Path | None = None) -> None:
        self.encoder = encoder
        """The embedder the vectors come from."""
        self.labels = [label for label, _ in examples]
        """Label of each example, in order."""
        self.texts = [text for _, text in examples]
        """Each example phrase, in order."""
        self._groups = np.array([group(label) for label in self.labels])
        self._label_ids = {label: i for i, label in enumerate(dict.fromkeys(self.labels))}
        self._label_of = np.array([self._label_ids[label] for label in self.labels])
        self._label_names = list(self._label_ids)
        self.digest = digest(self.texts, fingerprint or _fingerprint(encoder))
        """Identifies (model, phrases): the key of every cache of these vectors."""
        self.vectors = _vectors(encoder, self.texts, self.digest, cache_dir, shipped)
        """One row per example (float32, L2-normalised)."""

    def encode(self, text: str) -> np.ndarray:
        """The vector of one text."""
        return self.encoder.encode([text])[0]

    def nearest(self, vector: np.ndarray, exclude: int | None = None) -> Nearest | None:
        """The nearest label to ``vector`` (``exclude``: an example index to leave out)."""
        if not self.labels:
            return None
        scores = self.vectors @ vector
        if exclude is not None:
            scores = scores.copy()
            scores[exclude] = -2.0
        best = int(np.argmax(scores))
        other = self._groups != self._groups[best]
        runner_up = float(scores[other].max()) if other.any() else -1.0
        return Nearest(self.labels[best], float(scores[best]), runner_up, self.texts[best])


def _fingerprint(encoder: Encoder) -> str:
    return str(getattr(encoder, "fingerprint", type(encoder).__name__))


def digest(texts: list[str], fingerprint: str) -> str:
    """Key of the vectors of ``texts`` under the model with weights ``fingerprint``."""
    return hashlib.sha256("\n".join([fingerprint, *texts]).encode("utf-8")).hexdigest()[:24]


def save_shipped(path: Path, vectors: dict[str, np.ndarray]) -> None:
    """Write vectors (digest -> array) to ship beside the content."""
    with Path(path).open("wb") as handle:
        arrays = {f"v_{k}": v.astype(np.float32) for k, v in vectors.items()}
        # numpy's stub types **kwds as if a key could be its own "allow_pickle" flag
        np.savez_compressed(handle, **arrays)  # type: ignore[arg-type, unused-ignore]


def _from_shipped(path: Path | None, key: str, rows: int) -> np.ndarray | None:
    if path is None or not Path(path).exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if f"v_{key}" not in data.files:
                logger.info("shipped exemplar vectors are for other phrases; computing")
                return None
            array = data[f"v_{key}"]
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable shipped exemplar vectors %s: %s", path, exc)
        return None
    return array if array.shape == (rows, array.shape[1]) else None


def _vectors(encoder: Encoder, texts: list[str], digest: str,
             cache_dir: Path | None, shipped: Path | None) -> np.ndarray:
    with _LOCK:
        cached = _MEMORY.get(digest)
        if cached is None:
            cached = _from_shipped(shipped, digest, len(texts))
        if cached is None:
            cached = _from_disk(cache_dir, digest, len(texts))
        if cached is None:
            cached = encoder.encode(list(texts)).astype(np.float32) if texts else \
                np.zeros((0, 384), dtype=np.float32)
            _to_disk(cache_dir, digest, cached)
        _MEMORY[digest] = cached
    return cached


def _from_disk(cache_dir: Path | None, digest: str, rows: int) -> np.ndarray | None:
    if cache_dir is None:
        return None
    path = Path(cache_dir) / f"dialogue-exemplars-{digest}.npy"
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if array.ndim != 2 or array.shape[0] != rows or array.dtype != np.float32:
        logger.warning("ignoring a damaged exemplar cache %s", path)
        return None
    return array


def _to_disk(cache_dir: Path | None, digest: str, array: np.ndarray) -> None:
    if cache_dir is None:
        return
    path = Path(cache_dir) / f"dialogue-exemplars-{digest}.npy"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        with partial.open("wb") as handle:
            np.save(handle, array, allow_pickle=False)
        partial.replace(path)
    except OSError as exc:
        logger.warning("could not keep the exemplar cache in %s: %s", cache_dir, exc)
