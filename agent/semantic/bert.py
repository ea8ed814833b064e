"""The BERT encoder of all-MiniLM-L6-v2 as plain numpy: embeddings, 6 layers, mean pooling.

Mirrors Hugging Face ``BertModel`` in eval mode (no dropout): absolute position embeddings,
post-layer-norm blocks, exact (erf) GELU, additive attention mask. All in float32. The word
embeddings and the linear layers may be :class:`~agent.semantic.weights.Int8Rows` (int8 with a
scale per row): rows are dequantised on lookup, matrices per product. Query, key and value
are one fused product; weights are kept transposed and contiguous for BLAS.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from agent.semantic.errors import ModelFilesError
from agent.semantic.weights import Int8Rows

_DTYPES = {"F32": np.float32, "I64": np.int64, "F16": np.float16}


def read_safetensors(data: bytes) -> dict[str, np.ndarray]:
    """Tensors of a safetensors file, as read-only numpy views into ``data``."""
    try:
        (header_len,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + header_len])
    except (struct.error, ValueError) as exc:
        raise ModelFilesError(f"model.safetensors has a malformed header: {exc}") from None
    base = 8 + header_len
    tensors = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(spec["dtype"])
        if dtype is None:
            raise ModelFilesError(f"model.safetensors tensor {name} has dtype {spec['dtype']}")
        start, end = spec["data_offsets"]
        array = np.frombuffer(data, dtype=dtype, count=(end - start) // np.dtype(dtype).itemsize,
                              offset=base + start)
        tensors[name] = array.reshape(spec["shape"])
    return tensors


def erf(x: np.ndarray) -> np.ndarray:
    """Error function (Abramowitz-Stegun 7.1.26 refined: |error| < 1.2e-7), elementwise."""
    t = 1.0 / (1.0 + 0.5 * np.abs(x))
    poly = -x * x - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    tau = t * np.exp(poly)
    return np.where(x >= 0, 1.0 - tau, tau - 1.0)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU, as BERT's ``hidden_act = "gelu"`` (float32 throughout)."""
    return (np.float32(0.5) * x * (np.float32(1.0) + erf(x * np.float32(1 / np.sqrt(2.0))))
            ).astype(np.float32, copy=False)


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """Layer normalisation over the last axis."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


@dataclass(frozen=True)
class BertConfig:
    """The parts of ``config.json`` the forward pass needs."""

    hidden_size: int
    heads: int
    layers: int
    eps: float

    @classmethod
    def from_json(cls, raw: bytes) -> BertConfig:
        """Parse ``config.json``."""
        data = json.loads(raw)
        return cls(data["hidden_size"], data["num_attention_heads"],
                   data["num_hidden_layers"], float(data.get("layer_norm_eps", 1e-12)))


Weight = np.ndarray | Int8Rows
"""A matrix as read: float32, or int8 rows with their scales."""


class Linear:
    """``y = x @ W.T + b`` with W kept transposed (float32) or as int8 rows."""

    def __init__(self, weights: list[Weight], biases: list[np.ndarray]) -> None:
        if all(isinstance(w, Int8Rows) for w in weights):
            q = np.concatenate([w.q for w in weights if isinstance(w, Int8Rows)])
            self._q_t: np.ndarray | None = np.ascontiguousarray(q.T)
            self._scale: np.ndarray | None = np.concatenate(
                [w.scale for w in weights if isinstance(w, Int8Rows)])
            self._w_t: np.ndarray | None = None
        else:
            dense = [w.rows(np.arange(w.shape[0])) if isinstance(w, Int8Rows) else w
                     for w in weights]
            self._w_t = np.ascontiguousarray(np.concatenate(dense).T, dtype=np.float32)
            self._q_t = self._scale = None
        self._b = np.concatenate(biases).astype(np.float32)

    @property
    def size(self) -> int:
        """Number of weights (the scratch an int8 product needs, in floats)."""
        weights = self._w_t if self._w_t is not None else self._q_t
        return int(weights.size) if weights is not None else 0

    def __call__(self, x: np.ndarray, scratch: np.ndarray) -> np.ndarray:
        """The layer applied to the last axis of ``x``; ``scratch``: float32 room for
        :attr:`size` values, where int8 weights are widened (no allocation per call)."""
        if self._w_t is not None:
            return x @ self._w_t + self._b
        assert self._q_t is not None and self._scale is not None
        wide = scratch[:self._q_t.size].reshape(self._q_t.shape)
        np.copyto(wide, self._q_t)
        return (x @ wide) * self._scale + self._b


@dataclass(frozen=True)
class Block:
    """One transformer layer's weights."""

    qkv: Linear
    attention_out: Linear
    attention_norm: tuple[np.ndarray, np.ndarray]
    intermediate: Linear
    output: Linear
    output_norm: tuple[np.ndarray, np.ndarray]


class BertEncoder:
    """Token ids in, mean-pooled L2-normalised sentence vectors out."""

    def __init__(self, tensors: Mapping[str, Weight], config: BertConfig) -> None:
        self._c = config
        self._head_dim = config.hidden_size // config.heads
        try:
            self._word = tensors["embeddings.word_embeddings.weight"]
            self._pos = _dense(tensors["embeddings.position_embeddings.weight"])
            self._type = _dense(tensors["embeddings.token_type_embeddings.weight"])
            self._norm = (_dense(tensors["embeddings.LayerNorm.weight"]),
                          _dense(tensors["embeddings.LayerNorm.bias"]))
            self._blocks = [_block(tensors, f"encoder.layer.{i}.") for i in range(config.layers)]
        except KeyError as exc:
            raise ModelFilesError(f"model.safetensors lacks tensor {exc}") from None
        largest = max(linear.size for b in self._blocks
                      for linear in (b.qkv, b.attention_out, b.intermediate, b.output))
        self._scratch = np.empty(largest, dtype=np.float32)
        """Where int8 weights are widened, one matrix at a time (callers serialise forward
        passes: :class:`~agent.semantic.embedder.Embedder` holds a lock around them)."""

    @property
    def max_positions(self) -> int:
        """Longest input the position table covers."""
        return self._pos.shape[0]

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Sentence vectors for a padded batch: ``ids`` and ``mask`` of shape (n, length)."""
        x = self.token_states(ids, mask)
        weights = mask[..., None].astype(np.float32)
        pooled = (x * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    def token_states(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The last layer's contextual token vectors, shape (n, length, hidden), float32."""
        n, length = ids.shape
        word = self._word.rows(ids) if isinstance(self._word, Int8Rows) else self._word[ids]
        x = word + self._pos[:length][None] + self._type[0][None, None]
        x = layer_norm(x, *self._norm, self._c.eps)
        additive = ((1.0 - mask[:, None, None, :].astype(np.float32))
                    * np.finfo(np.float32).min).astype(np.float32)
        for block in self._blocks:
            x = self._layer(x, additive, block)
        return x

    def _layer(self, x: np.ndarray, additive: np.ndarray, block: Block) -> np.ndarray:
        n, length, hidden = x.shape
        heads, dim = self._c.heads, self._head_dim
        scratch = self._scratch
        qkv = block.qkv(x, scratch).reshape(n, length, 3, heads, dim).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(dim)) + additive
        scores = scores - scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(n, length, hidden)
        attended = layer_norm(block.attention_out(context, scratch) + x, *block.attention_norm,
                              self._c.eps)
        inner = gelu(block.intermediate(attended, scratch))
        return layer_norm(block.output(inner, scratch) + attended, *block.output_norm,
                          self._c.eps)


def _dense(weight: Weight) -> np.ndarray:
    if isinstance(weight, Int8Rows):
        return weight.rows(np.arange(weight.shape[0]))
    return np.asarray(weight, dtype=np.float32)


def _block(t: Mapping[str, Weight], p: str) -> Block:
    def linear(*names: str) -> Linear:
        return Linear([t[p + n + ".weight"] for n in names],
                      [_dense(t[p + n + ".bias"]) for n in names])

    return Block(
        qkv=linear("attention.self.query", "attention.self.key", "attention.self.value"),
        attention_out=linear("attention.output.dense"),
        attention_norm=(_dense(t[p + "attention.output.LayerNorm.weight"]),
                        _dense(t[p + "attention.output.LayerNorm.bias"])),
        intermediate=linear("intermediate.dense"),
        output=linear("output.dense"),
        output_norm=(_dense(t[p + "output.LayerNorm.weight"]),
                     _dense(t[p + "output.LayerNorm.bias"])),
    )
