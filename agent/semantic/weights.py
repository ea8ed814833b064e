"""Read ``model.safetensors`` as a stream, tensor by tensor, hashing every byte on the way.

The bear never holds the whole 87 MiB file in memory: each tensor is read straight into its
own array, and in ``int8`` precision the big matrices are quantised as they arrive (a few
thousand rows at a time), so the float32 copy of the 45 MiB word-embedding table never
exists. The SHA-256 of the bytes read must equal the pinned one before any weight is used.

Quantisation (``int8``): symmetric, one scale per row (per output channel of a linear layer,
per token of the embedding table): ``scale = max|row| / 127``, ``q = round(row / scale)``.
Deterministic (numpy's round-half-to-even on float32), so every bear gets the same weights.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

import numpy as np

from agent.semantic.errors import ModelFilesError

PRECISIONS = ("int8", "float32")
"""How the weights are kept: int8 (the bear's default) or float32 (the reference)."""
ROWS_PER_READ = 2048
"""Rows of a matrix read (and quantised) at a time."""
_DTYPES = {"F32": np.float32, "I64": np.int64, "F16": np.float16}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Int8Rows:
    """A float32 matrix kept as int8 with one float32 scale per row."""

    q: np.ndarray
    """The int8 values, shape (rows, columns)."""
    scale: np.ndarray
    """Per-row scale (float32): row i is ``q[i] * scale[i]``."""

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the matrix it stands for."""
        return tuple(self.q.shape)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """The float32 rows at ``ids`` (any shape of ids; a trailing axis is added)."""
        return self.q[ids].astype(np.float32) * self.scale[ids][..., None]

    def times_transposed(self, x: np.ndarray) -> np.ndarray:
        """``x @ matrix.T`` in float32 (the scales are applied to the result's columns)."""
        return (x @ self.q.T.astype(np.float32)) * self.scale


def quantize_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 values, float32 per-row scales) of a float32 matrix."""
    peak = np.abs(matrix).max(axis=1)
    scale = np.where(peak > 0, peak / np.float32(127.0), np.float32(1.0)).astype(np.float32)
    q = np.rint(matrix / scale[:, None]).clip(-127, 127).astype(np.int8)
    return q, scale


class _HashingReader:
    """Reads exact byte counts from a stream, hashing them."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.digest = hashlib.sha256()
        self.read_bytes = 0

    def read(self, count: int) -> bytes:
        data = self._stream.read(count)
        if len(data) != count:
            raise ModelFilesError("model.safetensors ends early — reinstall the model files")
        self.digest.update(data)
        self.read_bytes += count
        return data

    def read_into(self, array: np.ndarray) -> None:
        view = memoryview(array.data).cast("B")
        at = 0
        while at < len(view):
            data = self.read(min(_CHUNK, len(view) - at))
            view[at:at + len(data)] = data
            at += len(data)

    def drain(self) -> None:
        while True:
            data = self._stream.read(_CHUNK)
            if not data:
                return
            self.digest.update(data)
            self.read_bytes += len(data)


Tensors = dict[str, np.ndarray | Int8Rows]
"""Weights by name, as read."""


def read_weights(stream: IO[bytes], expected_sha256: str,
                 quantize: Callable[[str, tuple[int, ...]], bool]) -> Tensors:
    """Every tensor of a safetensors stream; those ``quantize(name, shape)`` picks as
    :class:`Int8Rows`. Raises :class:`ModelFilesError` unless the bytes hash to
    ``expected_sha256`` (checked after the last byte, before anything is returned)."""
    reader = _HashingReader(stream)
    try:
        (header_len,) = struct.unpack("<Q", reader.read(8))
        header = json.loads(reader.read(header_len))
    except (struct.error, ValueError) as exc:
        raise ModelFilesError(f"model.safetensors has a malformed header: {exc}") from None
    specs = sorted(((n, s) for n, s in header.items() if n != "__metadata__"),
                   key=lambda item: item[1]["data_offsets"][0])
    base = 8 + header_len
    tensors: Tensors = {}
    for name, spec in specs:
        dtype = _DTYPES.get(spec["dtype"])
        if dtype is None:
            raise ModelFilesError(f"model.safetensors tensor {name} has dtype {spec['dtype']}")
        start, end = spec["data_offsets"]
        if base + start < reader.read_bytes:
            raise ModelFilesError(f"model.safetensors tensor {name} overlaps another")
        reader.read(base + start - reader.read_bytes)  # padding between tensors, if any
        shape = tuple(spec["shape"])
        if int(np.prod(shape)) * np.dtype(dtype).itemsize != end - start:
            raise ModelFilesError(f"model.safetensors tensor {name} has a wrong size")
        if dtype == np.float32 and len(shape) == 2 and quantize(name, shape):
            tensors[name] = _read_quantized(reader, shape)
        else:
            array = np.empty(shape, dtype=dtype)
            reader.read_into(array)
            tensors[name] = array
    reader.drain()
    digest = reader.digest.hexdigest()
    if digest != expected_sha256:
        raise ModelFilesError(
            f"model.safetensors has SHA-256 {digest}, not the pinned {expected_sha256} — "
            "refusing it; reinstall the all-MiniLM-L6-v2 files (scripts/fetch-model)")
    return tensors


def _read_quantized(reader: _HashingReader, shape: tuple[int, ...]) -> Int8Rows:
    rows, columns = shape
    q = np.empty(shape, dtype=np.int8)
    scale = np.empty(rows, dtype=np.float32)
    block = np.empty((min(ROWS_PER_READ, rows), columns), dtype=np.float32)
    for start in range(0, rows, ROWS_PER_READ):
        part = block[:min(ROWS_PER_READ, rows - start)]
        reader.read_into(part)
        q[start:start + len(part)], scale[start:start + len(part)] = quantize_rows(part)
    return Int8Rows(q, scale)
