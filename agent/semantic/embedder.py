"""The sentence embedder: tokenizer (``tokenizers``, Rust) + numpy BERT + mean pooling."""

from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from agent.semantic.bert import BertConfig, BertEncoder
from agent.semantic.errors import ModelFilesError
from agent.semantic.model_files import (
    MODEL_NAME,
    PINNED_SHA256,
    WEIGHTS,
    ModelFiles,
    locate,
    open_weights,
    read_small_files,
)
from agent.semantic.weights import PRECISIONS, read_weights

logger = logging.getLogger(__name__)

DIMENSION = 384
"""Length of every sentence vector."""
MAX_TOKENS = 256
"""Inputs are cut to this many word pieces (sentence-transformers' ``max_seq_length``)."""
BATCH = 32
"""Texts per forward pass when encoding many (sorted by length to limit padding)."""
RECENT = 64
"""Single texts whose vectors are remembered: the safety filter and the dialogue both encode
the child's words each turn, and the model runs once for them."""


class Embedder:
    """all-MiniLM-L6-v2 sentence vectors, computed with numpy. Thread-safe; a context manager.

    Build with :func:`load_embedder` (or :meth:`from_files`).
    """

    def __init__(self, encoder: BertEncoder, tokenizer: Any, files: ModelFiles,
                 precision: str = "float32") -> None:
        self._encoder: BertEncoder | None = encoder
        self._tokenizer = tokenizer
        self._lock = threading.Lock()
        self._closed = False
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()
        self.source = files.source
        """Where the model files were read from."""
        self.fingerprint = files.fingerprint
        """SHA-256 of the weights: part of the key of any cache of vectors."""
        self.precision = precision
        """How the weights are kept: ``"int8"`` or ``"float32"``."""

    @classmethod
    def from_files(cls, files: ModelFiles, precision: str = "float32") -> Embedder:
        """An embedder over hash-checked model files (``precision``: see :func:`load_embedder`)."""
        weights = _read(io.BytesIO(files.weights), precision)
        return cls._build(weights, files, precision)

    @classmethod
    def from_path(cls, path: Path, precision: str = "int8") -> Embedder:
        """An embedder over the files at ``path`` (directory or zip), the weights streamed and
        hash-checked tensor by tensor (never the whole file in memory)."""
        tokenizer, config = read_small_files(path)
        with open_weights(path) as stream:
            weights = _read(stream, precision)
        files = ModelFiles(b"", tokenizer, config, str(path), PINNED_SHA256[WEIGHTS])
        return cls._build(weights, files, precision)

    @classmethod
    def _build(cls, weights: dict, files: ModelFiles, precision: str) -> Embedder:
        from tokenizers import Tokenizer  # heavy: only where the model is used

        try:
            tokenizer = Tokenizer.from_str(files.tokenizer.decode("utf-8"))
        except Exception as exc:  # noqa: BLE001 - the Rust side raises plain Exception
            raise ModelFilesError(f"tokenizer.json at {files.source} is unusable: {exc}") from None
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        encoder = BertEncoder(weights, BertConfig.from_json(files.config))
        _one_blas_thread()
        return cls(encoder, tokenizer, files, precision)

    def encode(self, texts: list[str]) -> np.ndarray:
        """One L2-normalised float32 vector per text: shape ``(len(texts), 384)``."""
        encoder = self._encoder
        if self._closed or encoder is None:
            raise ModelFilesError("the embedder is closed — load it again with load_embedder()")
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        if len(texts) == 1:
            return self._encode_one(str(texts[0]), encoder)[None].copy()
        encodings = self._tokenizer.encode_batch([str(t) for t in texts])
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = np.empty((len(texts), DIMENSION), dtype=np.float32)
        for start in range(0, len(order), BATCH):
            chunk = order[start:start + BATCH]
            ids, mask = _pad([encodings[i].ids for i in chunk])
            with self._lock:
                out[chunk] = encoder.forward(ids, mask)
        return out

    def _encode_one(self, text: str, encoder: BertEncoder) -> np.ndarray:
        with self._lock:
            vector = self._recent.get(text)
            if vector is not None:
                self._recent.move_to_end(text)
                return vector
        ids, mask = _pad([self._tokenizer.encode(text).ids])
        with self._lock:
            vector = encoder.forward(ids, mask)[0]
            self._recent[text] = vector
            while len(self._recent) > RECENT:
                self._recent.popitem(last=False)
        return vector

    def token_states(self, texts: list[str]) -> list[np.ndarray]:
        """The last layer's token states of each text, ``(tokens, 384)`` float32 (``[CLS]``
        and ``[SEP]`` included), in batches like :meth:`encode`: the trained safety
        classifier's input."""
        encoder = self._encoder
        if self._closed or encoder is None:
            raise ModelFilesError("the embedder is closed — load it again with load_embedder()")
        encodings = self._tokenizer.encode_batch([str(t) for t in texts])
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out: list[np.ndarray] = [np.zeros((0, DIMENSION), dtype=np.float32)] * len(texts)
        for start in range(0, len(order), BATCH):
            chunk = order[start:start + BATCH]
            ids, mask = _pad([encodings[i].ids for i in chunk])
            with self._lock:
                states = encoder.token_states(ids, mask)
            for row, i in enumerate(chunk):
                out[i] = states[row, :len(encodings[i].ids)].astype(np.float32)
        return out

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Word-piece ids of each text, as :meth:`token_states` reads them (for trainers)."""
        return [e.ids for e in self._tokenizer.encode_batch([str(t) for t in texts])]

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` dropped the weights."""
        return self._closed

    def close(self) -> None:
        """Drop the weights (idempotent); :meth:`encode` refuses afterwards. The embedder
        may be shared (:func:`load_embedder`): the next load then reads the files again."""
        self._closed = True
        self._encoder = None
        self._tokenizer = None
        self._recent.clear()

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _one_blas_thread() -> None:
    """One BLAS thread: one utterance's small matrices gain nothing from more, and on a busy
    2-core machine spinning BLAS threads took p99 from ~21 ms to over 200 ms (measured)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        logger.debug("threadpoolctl missing: BLAS keeps its default threads")
        return
    threadpool_limits(limits=1, user_api="blas")


def _read(stream: Any, precision: str) -> dict:
    """The weights from a stream; in ``int8`` the word embeddings and every linear layer's
    matrix are quantised per row as they are read."""
    if precision not in PRECISIONS:
        raise ModelFilesError(f"semantic precision {precision!r} is not one of "
                              f"{', '.join(PRECISIONS)} — fix [safety] semantic_precision")
    return read_weights(stream, PINNED_SHA256[WEIGHTS],
                        lambda name, shape: precision == "int8" and _quantized(name))


def _quantized(name: str) -> bool:
    """Whether a tensor is kept as int8: the word table and the linear layers' matrices."""
    return name == "embeddings.word_embeddings.weight" or (
        name.startswith("encoder.layer.") and name.endswith(".weight")
        and "LayerNorm" not in name)


def _pad(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    length = max(len(r) for r in rows)
    ids = np.zeros((len(rows), length), dtype=np.int64)
    mask = np.zeros((len(rows), length), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = row
        mask[i, :len(row)] = 1
    return ids, mask


_LOADED: dict[str, Embedder] = {}
_LOADED_LOCK = threading.Lock()


def load_embedder(settings: Any = None) -> Embedder | None:
    """The embedder the settings ask for, or None when the model is off or not installed.

    ``settings.safety.semantic_model``: ``"auto"`` (default; the fetched files, else the
    PyPI package's), ``"off"``, or a path. ``settings.safety.semantic_precision``:
    ``"int8"`` (default: a quarter of the memory) or ``"float32"`` (the reference). Files
    that fail their hash check raise :class:`ModelFilesError` (never silently run a
    different model). One embedder per model location and precision per process: the
    safety filter and the dialogue share its weights (~23 MB in int8, ~87 MB in float32)
    (loaded and hash-checked once; loaded again only after it was closed).
    """
    choice, data_dir = _choice(settings)
    precision = _precision(settings)
    path = locate(choice, data_dir)
    if path is None:
        logger.warning("semantic model %s not installed (%s): safety runs on rules only",
                       MODEL_NAME, choice)
        return None
    with _LOADED_LOCK:
        key = f"{path}|{precision}"
        loaded = _LOADED.get(key)
        if loaded is None or loaded.closed:
            loaded = Embedder.from_path(path, precision)
            _LOADED[key] = loaded
            logger.info("semantic model %s loaded from %s (%s)", MODEL_NAME, path, precision)
        return loaded


def _precision(settings: Any) -> str:
    safety = getattr(settings, "safety", None)
    return str(getattr(safety, "semantic_precision", "int8")) if safety is not None else "int8"


def _choice(settings: Any) -> tuple[str, Path | None]:
    if settings is None:
        return "auto", None
    safety = getattr(settings, "safety", None)
    choice = str(getattr(safety, "semantic_model", "auto")) if safety is not None else "auto"
    store = getattr(settings, "store", None)
    return choice, getattr(store, "data_dir", None)
