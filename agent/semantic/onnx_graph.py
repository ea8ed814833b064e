"""The same BERT encoder as :mod:`agent.semantic.bert`, as an ONNX graph for onnxruntime.

Built at load from the hash-checked weights with the ``onnx`` helper API (no torch, no
exported file): embeddings, 6 post-layer-norm blocks, exact (erf) GELU, additive attention
mask; output the last layer's token states, like :meth:`BertEncoder.token_states`.

Weights kept as :class:`~agent.semantic.weights.Int8Rows` stay int8 in the graph: the word
table is gathered as int8 and scaled per row; an int8 linear layer is onnxruntime's
``MatMulNBits`` with 8 bits (the row's int8 values + 128, its scale repeated per block), at
accuracy level 4: each token's activations are quantised to int8 per block of 16 inputs and
the products run on integer kernels, reading a quarter of float32's bytes (what a short
utterance's pass is bound by). The numpy path (the fallback) keeps float activations: token
states differ by at most ~0.11 and 7 of the 2,763 frozen lines get another verdict (on
frozen v2: lure +1, wellbeing +1, benign replies blocked -1, grooming -1, unsafe replies -1:
so numpy stays the default until the heads are trained on these states). Float32 weights
give plain ``MatMul`` + ``Add``.

Measured and left: ``DynamicQuantizeMatMul`` (activations quantised per tensor, ~2x faster
again) changed 52 of the 2,763 frozen lines' verdicts and cost 1-2 points on frozen v2;
float32 products of the dequantised weights were exact but ~9 ms a pass and +32 MiB; numpy
quantising its activations like this graph (blocks of 32) still left 7 verdicts apart.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from agent.semantic.bert import BertConfig, Weight
from agent.semantic.errors import ModelFilesError
from agent.semantic.weights import Int8Rows

OPSET = 17
"""ONNX opset (``LayerNormalization`` needs 17)."""
BUILD_TIMEOUT_S = 600
"""Longest a child process may take to read the weights and build the graph (a Pi 3)."""
MS_DOMAIN = "com.microsoft"
BLOCK = 16
"""Columns of a weight row per quantisation block (all blocks of a row share its scale), and
the activations' block at accuracy level 4 (16: 7 frozen verdicts apart from numpy; 32: 9)."""
ACCURACY = 4
"""``MatMulNBits`` accuracy level 4: the activations quantised to int8 per block of
:data:`BLOCK` inputs of each token (the fast integer kernels). Level 1 (float32 compute) is
exact but ran 4x slower here (a naive fallback for 8 bits)."""
"""onnxruntime's contrib operators (``DynamicQuantizeMatMul``)."""


class _Graph:
    """Nodes and initializers being collected, with fresh names."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper  # heavy: only while building

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, array: np.ndarray | np.generic, stem: str = "c") -> str:
        name = self.name(stem)
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, kind: str, inputs: list[str], domain: str | None = None, **attrs: Any) -> str:
        out = self.name(kind.lower())
        self.nodes.append(self.helper.make_node(kind, inputs, [out], domain=domain, **attrs))
        return out

    def ops(self, kind: str, inputs: list[str], count: int, **attrs: Any) -> list[str]:
        outs = [self.name(kind.lower()) for _ in range(count)]
        self.nodes.append(self.helper.make_node(kind, inputs, outs, **attrs))
        return outs


def build_model(tensors: Mapping[str, Weight], config: BertConfig) -> bytes:
    """The serialised ONNX model: inputs ``ids``, ``mask`` (int64, (n, length)), output
    ``states`` (float32, (n, length, hidden)). Raises :class:`ModelFilesError` when a tensor
    is missing."""
    g = _Graph()
    try:
        states = _encoder(g, tensors, config)
    except KeyError as exc:
        raise ModelFilesError(f"model.safetensors lacks tensor {exc}") from None
    h = g.helper
    from onnx import TensorProto

    graph = h.make_graph(
        g.nodes, "minilm",
        [h.make_tensor_value_info("ids", TensorProto.INT64, ["n", "length"]),
         h.make_tensor_value_info("mask", TensorProto.INT64, ["n", "length"])],
        [h.make_tensor_value_info(states, TensorProto.FLOAT,
                                  ["n", "length", config.hidden_size])],
        g.initializers)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET),
                                               h.make_opsetid(MS_DOMAIN, 1)],
                         producer_name="teddy")
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _encoder(g: _Graph, t: Mapping[str, Weight], c: BertConfig) -> str:
    x = _embeddings(g, t, c)
    mask = g.op("Cast", ["mask"], to=1)  # float
    blocked = g.op("Sub", [g.const(np.float32(1.0)), mask])
    additive = g.op("Mul", [blocked, g.const(np.finfo(np.float32).min)])
    additive = g.op("Unsqueeze", [additive, g.const(np.array([1, 2], dtype=np.int64))])
    for i in range(c.layers):
        x = _layer(g, t, c, f"encoder.layer.{i}.", x, additive)
    return x


def _embeddings(g: _Graph, t: Mapping[str, Weight], c: BertConfig) -> str:
    word = t["embeddings.word_embeddings.weight"]
    if isinstance(word, Int8Rows):
        rows = g.op("Cast", [g.op("Gather", [g.const(word.q, "word_q"), "ids"])], to=1)
        scale = g.op("Gather", [g.const(word.scale[:, None], "word_scale"), "ids"])
        embedded = g.op("Mul", [rows, scale])
    else:
        embedded = g.op("Gather", [g.const(_dense(word), "word"), "ids"])
    length = g.op("Shape", ["ids"], start=1, end=2)
    pos = g.op("Slice", [g.const(_dense(t["embeddings.position_embeddings.weight"]), "pos"),
                         g.const(np.array([0], dtype=np.int64)), length,
                         g.const(np.array([0], dtype=np.int64))])
    kind = _dense(t["embeddings.token_type_embeddings.weight"])[0]
    x = g.op("Add", [g.op("Add", [embedded, pos]), g.const(kind, "type")])
    return _norm(g, t, "embeddings.LayerNorm", x, c.eps)


def _layer(g: _Graph, t: Mapping[str, Weight], c: BertConfig, p: str, x: str,
           additive: str) -> str:
    heads, dim = c.heads, c.hidden_size // c.heads
    qkv = _linear(g, t, [p + "attention.self." + n for n in ("query", "key", "value")], x)
    split = g.const(np.array([c.hidden_size] * 3, dtype=np.int64))
    q, k, v = g.ops("Split", [qkv, split], 3, axis=-1)
    shape = g.const(np.array([0, 0, heads, dim], dtype=np.int64))
    q = g.op("Transpose", [g.op("Reshape", [q, shape])], perm=[0, 2, 1, 3])
    k = g.op("Transpose", [g.op("Reshape", [k, shape])], perm=[0, 2, 3, 1])
    v = g.op("Transpose", [g.op("Reshape", [v, shape])], perm=[0, 2, 1, 3])
    scores = g.op("Mul", [g.op("MatMul", [q, k]), g.const(np.float32(1 / np.sqrt(dim)))])
    probs = g.op("Softmax", [g.op("Add", [scores, additive])], axis=-1)
    context = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
    context = g.op("Reshape", [context, g.const(np.array([0, 0, c.hidden_size],
                                                          dtype=np.int64))])
    attended = _norm(g, t, p + "attention.output.LayerNorm",
                     g.op("Add", [_linear(g, t, [p + "attention.output.dense"], context), x]),
                     c.eps)
    inner = _gelu(g, _linear(g, t, [p + "intermediate.dense"], attended))
    return _norm(g, t, p + "output.LayerNorm",
                 g.op("Add", [_linear(g, t, [p + "output.dense"], inner), attended]), c.eps)


def _linear(g: _Graph, t: Mapping[str, Weight], names: list[str], x: str) -> str:
    """``x @ W.T + b`` for the layers ``names`` fused along the output axis."""
    weights = [t[n + ".weight"] for n in names]
    bias = np.concatenate([_dense(t[n + ".bias"]) for n in names]).astype(np.float32)
    if all(isinstance(w, Int8Rows) for w in weights):
        q = np.concatenate([w.q for w in weights if isinstance(w, Int8Rows)])
        scale = np.concatenate([w.scale for w in weights if isinstance(w, Int8Rows)])
        rows, columns = q.shape
        blocks = columns // BLOCK
        stored = (q.astype(np.int16) + 128).astype(np.uint8).reshape(rows, blocks, BLOCK)
        return g.op("MatMulNBits", [x, g.const(stored, "w_q"),
                                    g.const(np.repeat(scale, blocks).astype(np.float32),
                                            "w_scale"), "", "", g.const(bias, "b")],
                    domain=MS_DOMAIN, K=columns, N=rows, bits=8, block_size=BLOCK,
                    accuracy_level=ACCURACY)
    dense = np.concatenate([_dense(w) for w in weights]).T
    return g.op("Add", [g.op("MatMul", [x, g.const(dense.astype(np.float32), "w")]),
                        g.const(bias, "b")])


def _gelu(g: _Graph, x: str) -> str:
    """Exact GELU, ``0.5 x (1 + erf(x / sqrt 2))`` (onnxruntime fuses it into one kernel)."""
    erf = g.op("Erf", [g.op("Mul", [x, g.const(np.float32(1 / np.sqrt(2.0)))])])
    return g.op("Mul", [g.op("Mul", [x, g.const(np.float32(0.5))]),
                        g.op("Add", [erf, g.const(np.float32(1.0))])])


def _norm(g: _Graph, t: Mapping[str, Weight], p: str, x: str, eps: float) -> str:
    return g.op("LayerNormalization", [x, g.const(_dense(t[p + ".weight"]), "ln_w"),
                                       g.const(_dense(t[p + ".bias"]), "ln_b")],
                axis=-1, epsilon=eps)


def _dense(weight: Weight) -> np.ndarray:
    if isinstance(weight, Int8Rows):
        return weight.rows(np.arange(weight.shape[0]))
    return np.asarray(weight, dtype=np.float32)


def build_from_path(path: Path, precision: str, into: Path) -> Path:
    """The graph of the model files at ``path``, built in a child process and written to a
    file in the directory ``into`` (returned): the weights are read and hash-checked there,
    so the bear's process never imports ``onnx`` nor holds a copy of the weights or of the
    serialised graph (about 60 MiB of RSS saved). Raises :class:`ModelFilesError` with the
    child's one-line reason."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [package_root, *filter(None, [env.get("PYTHONPATH")])])
    target = into / "minilm.onnx"
    try:
        done = subprocess.run([sys.executable, "-m", "agent.semantic.onnx_graph", str(path),
                               precision, str(target)], env=env, capture_output=True,
                              timeout=BUILD_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelFilesError(f"building the onnxruntime graph failed ({exc}) — set [safety] "
                              'semantic_backend = "numpy"') from None
    if done.returncode != 0 or not target.is_file():
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ModelFilesError(lines[-1].removeprefix("error: ") if lines else
                              f"building the onnxruntime graph exited {done.returncode}")
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m agent.semantic.onnx_graph PATH PRECISION OUT``: build the graph into OUT."""
    from agent.semantic.embedder import read_tensors
    from agent.semantic.model_files import read_small_files

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("error: usage: python -m agent.semantic.onnx_graph MODEL_PATH int8|float32 OUT",
              file=sys.stderr)
        return 2
    try:
        path = Path(args[0])
        _, config = read_small_files(path)
        model = build_model(read_tensors(path, args[1]), BertConfig.from_json(config))
        Path(args[2]).write_bytes(model)
    except (ModelFilesError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


class OrtEncoder:
    """An onnxruntime session over :func:`build_model`'s graph, with
    :class:`~agent.semantic.bert.BertEncoder`'s ``forward`` / ``token_states`` API."""

    def __init__(self, model: bytes | Path, max_positions: int, threads: int = 1) -> None:
        """``model``: the serialised graph, or a file holding it."""
        import onnxruntime as ort  # heavy: only where this backend is chosen

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(model if isinstance(model, bytes) else str(model),
                                             options,
                                             providers=["CPUExecutionProvider"])
        self._max_positions = max_positions

    @property
    def max_positions(self) -> int:
        """Longest input the position table covers."""
        return self._max_positions

    def token_states(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The last layer's token vectors, shape (n, length, hidden), float32."""
        (states,) = self._session.run(None, {"ids": ids.astype(np.int64, copy=False),
                                             "mask": mask.astype(np.int64, copy=False)})
        return np.asarray(states, dtype=np.float32)

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Mean-pooled, L2-normalised sentence vectors for a padded batch."""
        x = self.token_states(ids, mask)
        weights = mask[..., None].astype(np.float32)
        pooled = (x * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)


if __name__ == "__main__":
    sys.exit(main())
