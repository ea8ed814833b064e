"""The BERT encoder of all-MiniLM-L6-v2 as plain numpy: embeddings, 6 layers, mean pooling.

Mirrors Hugging Face ``BertModel`` in eval mode (no dropout): absolute position embeddings,
post-layer-norm blocks, exact (erf) GELU, additive attention mask. Weights are views into the
safetensors bytes (no copy).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import numpy as np

from agent.semantic.errors import ModelFilesError

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
    """Exact GELU, as BERT's ``hidden_act = "gelu"``."""
    return (0.5 * x * (1.0 + erf(x.astype(np.float64) / np.sqrt(2.0)))).astype(np.float32)


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


class BertEncoder:
    """Token ids in, mean-pooled L2-normalised sentence vectors out."""

    def __init__(self, tensors: dict[str, np.ndarray], config: BertConfig) -> None:
        self._t = tensors
        self._c = config
        self._head_dim = config.hidden_size // config.heads
        try:
            self._word = tensors["embeddings.word_embeddings.weight"]
            self._pos = tensors["embeddings.position_embeddings.weight"]
            self._type = tensors["embeddings.token_type_embeddings.weight"]
            for i in range(config.layers):
                tensors[f"encoder.layer.{i}.output.dense.weight"]
        except KeyError as exc:
            raise ModelFilesError(f"model.safetensors lacks tensor {exc}") from None

    @property
    def max_positions(self) -> int:
        """Longest input the position table covers."""
        return self._pos.shape[0]

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Sentence vectors for a padded batch: ``ids`` and ``mask`` of shape (n, length)."""
        x = self.hidden(ids, mask)
        weights = mask[..., None].astype(np.float32)
        pooled = (x * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The last layer's token states for a padded batch: shape (n, length, hidden)."""
        n, length = ids.shape
        t = self._t
        x = self._word[ids] + self._pos[:length][None] + self._type[0][None, None]
        x = layer_norm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"],
                       self._c.eps)
        additive = ((1.0 - mask[:, None, None, :].astype(np.float32))
                    * np.finfo(np.float32).min).astype(np.float32)
        for i in range(self._c.layers):
            x = self._layer(x, additive, f"encoder.layer.{i}.")
        return x

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self._t[name + ".weight"].T + self._t[name + ".bias"]

    def _layer(self, x: np.ndarray, additive: np.ndarray, p: str) -> np.ndarray:
        n, length, hidden = x.shape
        heads, dim = self._c.heads, self._head_dim

        def split(y: np.ndarray) -> np.ndarray:
            return y.reshape(n, length, heads, dim).transpose(0, 2, 1, 3)

        q = split(self._linear(x, p + "attention.self.query"))
        k = split(self._linear(x, p + "attention.self.key"))
        v = split(self._linear(x, p + "attention.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(dim)) + additive
        scores = scores - scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(n, length, hidden)
        attended = layer_norm(self._linear(context, p + "attention.output.dense") + x,
                              self._t[p + "attention.output.LayerNorm.weight"],
                              self._t[p + "attention.output.LayerNorm.bias"], self._c.eps)
        inner = gelu(self._linear(attended, p + "intermediate.dense"))
        return layer_norm(self._linear(inner, p + "output.dense") + attended,
                          self._t[p + "output.LayerNorm.weight"],
                          self._t[p + "output.LayerNorm.bias"], self._c.eps)
