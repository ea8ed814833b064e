"""The semantic stage: nearest labelled exemplar by meaning, after the rules.

Exemplars are plain text files, one sentence a line, under ``exemplars/<direction>/`` (the
file name is the category; ``benign.txt`` is the contrast set). Adding a line needs no
retraining: the vectors are computed at load and cached in a file keyed by the SHA-256 of
the model and of every exemplar file. A text is flagged when its nearest harmful exemplar is
at least ``threshold`` similar (cosine) AND beats the nearest benign exemplar by ``margin``
(``exemplars/thresholds.json``, per direction, optionally per category).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.safety.errors import SafetyListError

logger = logging.getLogger(__name__)

BENIGN = "benign"
"""Name of the contrast exemplar file in each direction."""
SHIPPED_VECTORS = "vectors.npz"
"""The exemplars' vectors shipped beside them (``scripts/make-safety-vectors``), keyed by the
digest of the model and the exemplars: a stale file is never used, only slower."""
VECTOR_CACHE = 4096
"""Recent texts whose vectors are kept (conversation windows reuse them)."""


@dataclass(frozen=True)
class SemanticHit:
    """The semantic stage's finding about one text."""

    category: str
    """Category of the nearest harmful exemplar."""
    similarity: float
    """Cosine similarity to it."""
    nearest: str
    """The exemplar itself (tuning data, never the child's words)."""
    benign_similarity: float
    """Cosine similarity to the nearest benign exemplar."""


@dataclass(frozen=True)
class Limits:
    """When the nearest harmful exemplars count."""

    threshold: float
    """The nearest harmful exemplar must be at least this similar (cosine)."""
    margin: float
    """Mean similarity of the ``k`` nearest harmful exemplars minus that of the ``k``
    nearest benign ones must be at least this."""
    k: int = 3
    """How many neighbours on each side are averaged for the margin."""


@dataclass
class ExemplarIndex:
    """One direction's exemplars and their vectors."""

    texts: list[str]
    labels: np.ndarray
    vectors: np.ndarray
    benign: np.ndarray
    limits: Limits
    per_category: dict[str, Limits]

    def judge(self, vector: np.ndarray, allowed: frozenset[str] | None = None
              ) -> SemanticHit | None:
        """The finding for one unit vector, or None when it is not close enough."""
        sims = self.vectors @ vector
        harmful = ~self.benign
        if allowed is not None:
            harmful &= np.isin(self.labels, list(allowed))
        if not harmful.any():
            return None
        masked = np.where(harmful, sims, -2.0)
        best = int(masked.argmax())
        category = str(self.labels[best])
        limits = self.per_category.get(category, self.limits)
        benign_sims = sims[self.benign]
        benign_mean = _top_mean(benign_sims, limits.k) if benign_sims.size else -1.0
        score = float(sims[best])
        margin = _top_mean(masked[harmful], limits.k) - benign_mean
        if score < limits.threshold or margin < limits.margin:
            return None
        return SemanticHit(category, score, self.texts[best],
                           float(benign_sims.max()) if benign_sims.size else -1.0)


def _top_mean(values: np.ndarray, k: int) -> float:
    """Mean of the ``k`` largest values."""
    k = min(k, values.size)
    return float(np.partition(values, values.size - k)[values.size - k:].mean())


def read_exemplars(folder: Path) -> list[tuple[str, str]]:
    """(category, sentence) for every line of every ``*.txt`` in ``folder`` (and one level
    of sub-folders); the file's stem is the category."""
    rows = []
    for path in sorted([*folder.glob("*.txt"), *folder.glob("*/*.txt")]):
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                rows.append((path.stem, line))
    return rows


def read_limits(path: Path) -> dict[str, tuple[Limits, dict[str, Limits]]]:
    """direction -> (default limits, per-category limits) from ``thresholds.json``."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        out = {}
        for direction in ("input", "output"):
            spec = raw[direction]
            k = int(spec.get("k", 3))
            per = {name: Limits(float(v["threshold"]), float(v["margin"]), int(v.get("k", k)))
                   for name, v in spec.get("categories", {}).items()}
            out[direction] = (Limits(float(spec["threshold"]), float(spec["margin"]), k), per)
        return out
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SafetyListError(f"cannot read semantic thresholds {path}: {exc!r} — restore "
                              "agent/safety/exemplars/thresholds.json") from None


def default_cache_dir() -> Path:
    """Where exemplar vectors are cached (``$XDG_CACHE_HOME/teddy`` or ``~/.cache/teddy``)."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "teddy"


class SemanticStage:
    """kNN over labelled exemplars with the sentence embedder. Thread-safe."""

    def __init__(self, embedder, base: Path, cache_dir: Path | None = None) -> None:
        self._embedder = embedder
        self._lock = threading.Lock()
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()
        folder = Path(base) / "exemplars"
        limits = read_limits(folder / "thresholds.json")
        rows = {d: read_exemplars(folder / d) for d in ("input", "output")}
        vectors = self._vectors(rows, folder, cache_dir or default_cache_dir())
        self.indexes: dict[str, ExemplarIndex] = {}
        for direction, items in rows.items():
            labels = np.array([c for c, _ in items])
            default, per = limits[direction]
            self.indexes[direction] = ExemplarIndex(
                [t for _, t in items], labels, vectors[direction], labels == BENIGN,
                default, per)
        self.categories = {d: sorted(set(i.labels) - {BENIGN}) for d, i in self.indexes.items()}
        """Harmful categories per direction."""
        self._known_benign = {d: frozenset(t for t, b in zip(i.texts, i.benign, strict=True) if b)
                              for d, i in self.indexes.items()}

    def vector(self, text: str) -> np.ndarray:
        """The unit vector of ``text`` (recent texts from a small cache)."""
        with self._lock:
            cached = self._recent.get(text)
            if cached is not None:
                self._recent.move_to_end(text)
                return cached
        vector = self._embedder.encode([text])[0]
        with self._lock:
            self._recent[text] = vector
            while len(self._recent) > VECTOR_CACHE:
                self._recent.popitem(last=False)
        return vector

    def prime(self, texts: list[str], direction: str) -> int:
        """Embed ``texts`` in batches ahead of judging them one by one (a content pack's
        thousands of lines); returns how many needed a forward pass. At most
        :data:`VECTOR_CACHE` texts are kept, so prime no more than that at once."""
        with self._lock:
            todo = list(dict.fromkeys(
                t for t in texts if t.strip() and t.strip() not in self._known_benign[direction]
                and t not in self._recent))[:VECTOR_CACHE]
        vectors = self._embedder.encode(todo)
        with self._lock:
            for text, vector in zip(todo, vectors, strict=True):
                self._recent[text] = vector
            while len(self._recent) > VECTOR_CACHE:
                self._recent.popitem(last=False)
        return len(todo)

    def judge(self, text: str, direction: str) -> SemanticHit | None:
        """The finding for ``text`` said in ``direction`` ("input" or "output").

        A text that is itself a benign exemplar (e.g. a built-in content reply) is benign
        without a forward pass.
        """
        if text.strip() in self._known_benign[direction]:
            return None
        return self.indexes[direction].judge(self.vector(text))

    def judge_window(self, texts: list[str], direction: str,
                     allowed: frozenset[str]) -> SemanticHit | None:
        """The finding for several turns taken together (one text, turns joined)."""
        return self.indexes[direction].judge(self.vector(" . ".join(texts)), allowed)

    def judge_each(self, texts: list[str], direction: str,
                   allowed: frozenset[str]) -> bool:
        """Whether any one of ``texts`` alone is a finding (in ``allowed`` categories)."""
        index = self.indexes[direction]
        return any(index.judge(self.vector(t), allowed) is not None for t in texts)

    def closeness(self, text: str, direction: str, allowed: frozenset[str]) -> float:
        """Highest similarity of ``text`` to an exemplar of the ``allowed`` categories."""
        index = self.indexes[direction]
        rows = np.isin(index.labels, list(allowed))
        return float((index.vectors[rows] @ self.vector(text)).max()) if rows.any() else -1.0

    def _vectors(self, rows: dict[str, list[tuple[str, str]]], folder: Path,
                 cache_dir: Path) -> dict[str, np.ndarray]:
        key = exemplar_digest(self._embedder.fingerprint, rows)
        cache = cache_dir / f"exemplars-{key}.npz"
        for source in (cache, folder / SHIPPED_VECTORS):
            loaded = _load_vectors(source, key if source != cache else None, rows)
            if loaded is not None:
                logger.debug("exemplar vectors from %s", source)
                return loaded
        logger.info("computing %d exemplar vectors (once; scripts/make-safety-vectors ships "
                    "them)", sum(len(r) for r in rows.values()))
        computed = {d: self._embedder.encode([t for _, t in items])
                    for d, items in rows.items()}
        _save(cache, computed)
        return computed


def exemplar_digest(fingerprint: str, rows: dict[str, list[tuple[str, str]]]) -> str:
    """The key of the exemplars' vectors: the model's fingerprint and every labelled text."""
    digest = hashlib.sha256(fingerprint.encode())
    for direction in ("input", "output"):
        for category, text in rows[direction]:
            digest.update(f"{direction}\t{category}\t{text}\n".encode())
    return digest.hexdigest()[:32]


def _load_vectors(path: Path, key: str | None, rows: dict[str, list[tuple[str, str]]]
                  ) -> dict[str, np.ndarray] | None:
    """Vectors from ``path`` (arrays ``input``/``output``, prefixed ``<key>_`` in the shipped
    file); None when absent, unreadable or not for these exemplars."""
    prefix = f"{key}_" if key else ""
    try:
        with np.load(path, allow_pickle=False) as saved:
            loaded = {d: saved[f"{prefix}{d}"] for d in ("input", "output")}
    except (OSError, ValueError, KeyError):
        return None
    if all(loaded[d].shape[0] == len(rows[d]) for d in rows):
        return loaded
    return None


def ship_vectors(embedder, base: Path) -> Path:
    """Compute the exemplars' vectors and write them beside the exemplars (for the package)."""
    folder = Path(base) / "exemplars"
    rows = {d: read_exemplars(folder / d) for d in ("input", "output")}
    key = exemplar_digest(embedder.fingerprint, rows)
    arrays = {f"{key}_{d}": embedder.encode([t for _, t in items]).astype(np.float32)
              for d, items in rows.items()}
    target = folder / SHIPPED_VECTORS
    with target.open("wb") as handle:
        # numpy's stub types **kwds as if a key could be its own "allow_pickle" flag
        np.savez_compressed(handle, **arrays)  # type: ignore[arg-type, unused-ignore]
    return target


def _save(cache: Path, vectors: dict[str, np.ndarray]) -> None:
    """Write the cache atomically; a read-only disk only costs the next start some time."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache.parent, suffix=".npz", delete=False) as tmp:
            # numpy's stub types **kwds as if a key could be its own "allow_pickle" flag
            np.savez(tmp, **vectors)  # type: ignore[arg-type, unused-ignore]
        os.replace(tmp.name, cache)
        for old in cache.parent.glob("exemplars-*.npz"):
            if old != cache:
                old.unlink(missing_ok=True)  # vectors of earlier exemplars or models
    except OSError as exc:
        logger.debug("cannot cache exemplar vectors at %s: %s", cache, exc)
