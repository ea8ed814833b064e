"""The sentence embedder: tokenizer (``tokenizers``, Rust) + BERT + mean pooling.

The BERT forward pass runs on numpy (:mod:`agent.semantic.bert`, the reference and the
default) or on onnxruntime (``[safety] semantic_backend = "onnxruntime"`` or ``"auto"``; the
graph is built at load from the hash-checked weights, :mod:`agent.semantic.onnx_graph`).
"""

from __future__ import annotations

import io
import logging
import tempfile
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
BACKENDS = ("numpy", "onnxruntime", "auto")
"""Where the forward pass runs: ``auto`` is onnxruntime if installed, else numpy."""
RECENT = 64
"""Single texts whose vectors are remembered: the safety filter and the dialogue both encode
the child's words each turn, and the model runs once for them."""


class Embedder:
    """all-MiniLM-L6-v2 sentence vectors, computed with numpy. Thread-safe; a context manager.

    Build with :func:`load_embedder` (or :meth:`from_files`).
    """

    def __init__(self, encoder: Any, tokenizer: Any, files: ModelFiles,
                 precision: str = "float32", backend: str = "numpy") -> None:
        self._encoder: Any = encoder
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
        self.backend = backend
        """Where the forward pass runs: ``"onnxruntime"`` or ``"numpy"``."""
        self._states: OrderedDict[str, np.ndarray] = OrderedDict()
        """Recent single texts' token states: the safety stage and the dialogue share them."""

    @classmethod
    def from_files(cls, files: ModelFiles, precision: str = "float32",
                   backend: str = "numpy") -> Embedder:
        """An embedder over hash-checked model files (``precision``, ``backend``: see
        :func:`load_embedder`)."""
        weights = _read(io.BytesIO(files.weights), precision)
        return cls._build(weights, files, precision, backend)

    @classmethod
    def from_path(cls, path: Path, precision: str = "int8",
                  backend: str = "numpy") -> Embedder:
        """An embedder over the files at ``path`` (directory or zip), the weights streamed and
        hash-checked tensor by tensor (never the whole file in memory)."""
        tokenizer, config = read_small_files(path)
        files = ModelFiles(b"", tokenizer, config, str(path), PINNED_SHA256[WEIGHTS])
        if _backend(backend) == "onnxruntime":
            from agent.semantic.onnx_graph import OrtEncoder, build_from_path

            _check_precision(precision)
            with tempfile.TemporaryDirectory(prefix="teddy-onnx-") as into:
                encoder = OrtEncoder(build_from_path(path, precision, Path(into)),
                                     _max_positions(config))
            _return_freed_memory()
            return cls(encoder, _tokenizer(files), files, precision, "onnxruntime")
        return cls._build(read_tensors(path, precision), files, precision, "numpy")

    @classmethod
    def _build(cls, weights: dict, files: ModelFiles, precision: str,
               backend: str) -> Embedder:
        chosen = _backend(backend)
        config = BertConfig.from_json(files.config)
        if chosen == "onnxruntime":
            from agent.semantic.onnx_graph import OrtEncoder, build_model

            encoder: Any = OrtEncoder(build_model(weights, config),
                                      _max_positions(files.config))
            weights.clear()
        else:
            encoder = BertEncoder(weights, config)
            _one_blas_thread()
        _return_freed_memory()
        return cls(encoder, _tokenizer(files), files, precision, chosen)

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

    def _encode_one(self, text: str, encoder: Any) -> np.ndarray:
        with self._lock:
            vector = self._recent.get(text)
            if vector is not None:
                self._recent.move_to_end(text)
                return vector
        return _pooled(self._states_one(text, encoder))

    def _states_one(self, text: str, encoder: Any) -> np.ndarray:
        """One text's token states, remembered with its sentence vector (one forward pass
        serves the safety stage's heads and the dialogue's intents)."""
        with self._lock:
            states = self._states.get(text)
            if states is not None:
                self._states.move_to_end(text)
                return states
        ids, mask = _pad([self._tokenizer.encode(text).ids])
        with self._lock:
            states = encoder.token_states(ids, mask)[0].astype(np.float32, copy=False)
            states.flags.writeable = False
            self._states[text] = states
            self._recent[text] = _pooled(states)
            for cache in (self._states, self._recent):
                while len(cache) > RECENT:
                    cache.popitem(last=False)
        return states

    def token_states(self, texts: list[str]) -> list[np.ndarray]:
        """The last layer's token states of each text, ``(tokens, 384)`` float32 (``[CLS]``
        and ``[SEP]`` included), in batches like :meth:`encode`: the trained safety
        classifier's input. A single text's states are remembered (read-only) with its
        sentence vector, so :meth:`encode` of the same text needs no second pass."""
        encoder = self._encoder
        if self._closed or encoder is None:
            raise ModelFilesError("the embedder is closed — load it again with load_embedder()")
        if len(texts) == 1:
            return [self._states_one(str(texts[0]), encoder)]
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

    def clear_cache(self) -> None:
        """Forget the remembered vectors and token states (benchmarks time fresh texts)."""
        with self._lock:
            self._recent.clear()
            self._states.clear()

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
        self._states.clear()

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_tensors(path: Path, precision: str) -> dict:
    """The weights at ``path`` (directory or zip), streamed and hash-checked, kept in
    ``precision``."""
    with open_weights(path) as stream:
        return _read(stream, precision)


def _tokenizer(files: ModelFiles) -> Any:
    from tokenizers import Tokenizer  # heavy: only where the model is used

    try:
        tokenizer = Tokenizer.from_str(files.tokenizer.decode("utf-8"))
    except Exception as exc:  # noqa: BLE001 - the Rust side raises plain Exception
        raise ModelFilesError(f"tokenizer.json at {files.source} is unusable: {exc}") from None
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    return tokenizer


def _max_positions(config: bytes) -> int:
    import json

    return int(json.loads(config).get("max_position_embeddings", 512))


def _pooled(states: np.ndarray) -> np.ndarray:
    """The L2-normalised mean of one text's token states (its sentence vector)."""
    pooled = states.mean(axis=0, dtype=np.float32)
    return (pooled / max(float(np.linalg.norm(pooled)), 1e-12)).astype(np.float32)


def _backend(choice: str) -> str:
    """The backend to run: ``auto`` is onnxruntime when both it and ``onnx`` import."""
    if choice not in BACKENDS:
        raise ModelFilesError(f"semantic backend {choice!r} is not one of "
                              f"{', '.join(BACKENDS)} — fix [safety] semantic_backend")
    if choice == "numpy":
        return choice
    from importlib.util import find_spec  # finds without importing (onnx: ~12 MiB)

    missing = [name for name in ("onnxruntime", "onnx") if not _importable(name, find_spec)]
    if missing:
        if choice == "onnxruntime":
            raise ModelFilesError(f"semantic backend onnxruntime needs {' and '.join(missing)} "
                                  "— pip install onnxruntime onnx, or set [safety] "
                                  'semantic_backend = "numpy"')
        logger.info("%s missing: the semantic model runs on numpy", " and ".join(missing))
        return "numpy"
    return "onnxruntime"


def _importable(name: str, find_spec: Any) -> bool:
    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):  # a module blocked in sys.modules has no spec
        return False


def _return_freed_memory() -> None:
    """Give the heap freed after building the graph back to the system (glibc only)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        logger.debug("malloc_trim unavailable: freed memory stays with the process")


def _one_blas_thread() -> None:
    """One BLAS thread: one utterance's small matrices gain nothing from more, and on a busy
    2-core machine spinning BLAS threads took p99 from ~21 ms to over 200 ms (measured)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        logger.debug("threadpoolctl missing: BLAS keeps its default threads")
        return
    threadpool_limits(limits=1, user_api="blas")


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ModelFilesError(f"semantic precision {precision!r} is not one of "
                              f"{', '.join(PRECISIONS)} — fix [safety] semantic_precision")


def _read(stream: Any, precision: str) -> dict:
    """The weights from a stream; in ``int8`` the word embeddings and every linear layer's
    matrix are quantised per row as they are read."""
    _check_precision(precision)
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
    ``"int8"`` (default: a quarter of the memory) or ``"float32"`` (the reference).
    ``settings.safety.semantic_backend``: ``"numpy"`` (default), ``"onnxruntime"`` or
    ``"auto"`` (onnxruntime when installed, else numpy). Files
    that fail their hash check raise :class:`ModelFilesError` (never silently run a
    different model). One embedder per model location, precision and backend per process: the
    safety filter and the dialogue share its weights (~23 MB in int8, ~87 MB in float32)
    (loaded and hash-checked once; loaded again only after it was closed).
    """
    choice, data_dir = _choice(settings)
    precision = _precision(settings)
    backend = _setting(settings, "semantic_backend", "numpy")
    path = locate(choice, data_dir)
    if path is None:
        logger.warning("semantic model %s not installed (%s): safety runs on rules only",
                       MODEL_NAME, choice)
        return None
    with _LOADED_LOCK:
        key = f"{path}|{precision}|{backend}"
        loaded = _LOADED.get(key)
        if loaded is None or loaded.closed:
            loaded = Embedder.from_path(path, precision, backend)
            _LOADED[key] = loaded
            logger.info("semantic model %s loaded from %s (%s, %s)", MODEL_NAME, path,
                        precision, loaded.backend)
        return loaded


def _precision(settings: Any) -> str:
    return _setting(settings, "semantic_precision", "int8")


def _setting(settings: Any, name: str, default: str) -> str:
    safety = getattr(settings, "safety", None)
    return str(getattr(safety, name, default)) if safety is not None else default


def _choice(settings: Any) -> tuple[str, Path | None]:
    if settings is None:
        return "auto", None
    safety = getattr(settings, "safety", None)
    choice = str(getattr(safety, "semantic_model", "auto")) if safety is not None else "auto"
    store = getattr(settings, "store", None)
    return choice, getattr(store, "data_dir", None)
