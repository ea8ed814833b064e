"""The onnxruntime backend of the embedder (issue 20, fit a Pi): built from the hash-checked
weights in a child process, chosen with ``[safety] semantic_backend``, numpy the default and
the fallback; both backends' states and verdicts side by side on the frozen sets, and the
full check's p99 bar (measured by scripts/bench-check's own code)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from support.frozen_sets import VERSIONS, load
from support.paths import ROOT

from agent.safety import SafetyFilter
from agent.semantic import ModelFilesError, load_embedder
from agent.semantic.embedder import Embedder
from agent.semantic.model_files import fetched_model_dir, packaged_model_zip
from config.settings import load_settings

DIFFERING_VERDICTS = 7
"""Frozen lines (v1 + v2, both directions: 2,763) whose verdict differs between the backends
when this landed: onnxruntime quantises each token's activations per block of 16 for its int8
kernels, numpy multiplies float activations (max token-state difference 0.11)."""
ONNX = {"TEDDY_SAFETY__SEMANTIC_BACKEND": "onnxruntime"}


def _embedder(backend: str) -> Embedder:
    embedder = load_embedder(load_settings(safety={"semantic_backend": backend}))
    assert embedder is not None and embedder.backend == backend
    return embedder


@pytest.fixture(scope="module")
def backends() -> dict[str, Embedder]:
    return {name: _embedder(name) for name in ("onnxruntime", "numpy")}


@pytest.fixture(scope="module")
def verdicts(backends) -> dict[str, list[tuple]]:
    """Every frozen line's verdict (action, categories, severity) under each backend."""
    out: dict[str, list[tuple]] = {}
    for name, embedder in backends.items():
        safety = SafetyFilter.load(embedder=embedder)
        rows = []
        for version in VERSIONS:
            for direction in ("input", "output"):
                check = safety.check_input if direction == "input" else safety.check_output
                for row in load(direction, version):
                    verdict = check(row["text"])
                    rows.append((row["text"], verdict.action.value, verdict.categories,
                                 verdict.severity))
        out[name] = rows
    return out


def test_onnxruntime_runs_without_onnx_in_the_bear():
    """The graph is built in a child process: the bear's process never imports onnx."""
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from agent.semantic import load_embedder; "
         "from config.settings import load_settings; e = load_embedder(load_settings()); "
         "print(e.backend, e.precision, 'onnx' in sys.modules, "
         "e.encode(['hello teddy']).shape)"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=600, env=_env(ONNX))
    assert out.stdout.split() == ["onnxruntime", "int8", "False", "(1,", "384)"], out


def test_auto_falls_back_to_numpy_without_onnxruntime():
    out = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['onnxruntime'] = None; "
         "from agent.semantic import load_embedder; from config.settings import load_settings; "
         "print(load_embedder(load_settings()).backend)"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=600,
        env=_env({"TEDDY_SAFETY__SEMANTIC_BACKEND": "auto"}))
    assert out.stdout.split() == ["numpy"], out
    assert load_embedder().backend == "numpy"  # the default


def test_both_backends_give_close_token_states(backends):
    texts = [r["text"] for r in load("input", "v2")][::4]
    worst, cosines = 0.0, []
    for text in texts:
        fast, = backends["onnxruntime"].token_states([text])
        slow, = backends["numpy"].token_states([text])
        assert fast.shape == slow.shape and fast.dtype == np.float32
        worst = max(worst, float(np.abs(fast - slow).max()))
        cosines.append(float(((fast * slow).sum(-1) / np.linalg.norm(fast, axis=-1)
                              / np.linalg.norm(slow, axis=-1)).min()))
    assert worst < 0.2, worst  # measured 0.13 over all frozen lines
    assert min(cosines) > 0.995, min(cosines)


def test_a_padded_batch_gives_each_text_its_own_states(backends):
    embedder = backends["onnxruntime"]
    texts = ["hi", "my friend said a man at the park gave him sweets and a puppy"]
    batch = embedder.token_states(texts)
    embedder.clear_cache()
    for text, states in zip(texts, batch, strict=True):
        alone, = embedder.token_states([text])
        assert np.abs(alone - states).max() < 1e-4


def test_backends_differ_on_no_more_verdicts_than_when_this_landed(verdicts):
    differing = [(a, b) for a, b in zip(verdicts["numpy"], verdicts["onnxruntime"],
                                        strict=True) if a != b]
    assert len(verdicts["numpy"]) == 2763
    assert len(differing) <= DIFFERING_VERDICTS, differing


@pytest.mark.xfail(strict=True, reason=f"measured: {DIFFERING_VERDICTS} of 2,763 frozen "
                   "verdicts differ between onnxruntime (int8 activations per block of 16) "
                   "and numpy (float activations)")
def test_backends_agree_on_every_frozen_verdict(verdicts):
    assert verdicts["numpy"] == verdicts["onnxruntime"]


def test_one_forward_pass_serves_the_safety_stage_and_the_dialogue(backends):
    """The safety stage reads token states, the dialogue a sentence vector: one pass."""
    embedder = backends["onnxruntime"]
    counting = _CountingEncoder(embedder._encoder)
    embedder._encoder = counting
    try:
        text = "can we play a game about dinosaurs"
        embedder.clear_cache()
        states, = embedder.token_states([text])
        vector = embedder.encode([text])[0]
        assert counting.passes == 1
        pooled = states.mean(axis=0)
        assert np.allclose(vector, pooled / np.linalg.norm(pooled), atol=1e-6)
        with pytest.raises(ValueError):
            states[0, 0] = 1.0  # the shared states are read-only
    finally:
        embedder._encoder = counting.inner


def test_a_tampered_model_is_refused_by_the_graph_builder(tmp_path):
    import zipfile

    target = fetched_model_dir(tmp_path)
    target.mkdir(parents=True)
    with zipfile.ZipFile(packaged_model_zip()) as archive:
        for name in ("model.safetensors", "tokenizer.json", "config.json"):
            data = bytearray(archive.read(name))
            if name == "model.safetensors":
                data[-1000] ^= 1
            (target / name).write_bytes(bytes(data))
    with pytest.raises(ModelFilesError, match="model.safetensors has SHA-256 .* refusing it"):
        Embedder.from_path(target, "int8", "onnxruntime")


def test_an_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="semantic_backend"):
        load_settings(safety={"semantic_backend": "cuda"})
    with pytest.raises(ModelFilesError, match="semantic_backend"):
        Embedder.from_path(packaged_model_zip(), "int8", "cuda")


@pytest.mark.xfail(strict=True, reason="issue 20 bar p99 <= 10 ms not met by the default "
                   "(numpy): scripts/bench-check 2026-12-07, thread CPU time, load 1.4: numpy "
                   "int8 p99 19.3 ms (main 19.7; 31.1 at load 8.6); onnxruntime int8 p99 6.5 "
                   "ms (14.2 at load 8.6), not the default (see config/safety.py); RSS "
                   "142 / 185 MiB (bar 200: met)")
def test_the_full_check_p99_is_within_10_ms():
    """The bar for the bear as configured by default (numpy), measured the way
    scripts/bench-check measures it (its own code, a child process pinned to one core, every
    frozen v1 line once, thread CPU time). With ``semantic_backend = "onnxruntime"`` the p99
    is about the bar (between 9 and 14 ms here, by load)."""
    from importlib.machinery import SourceFileLoader

    bench = SourceFileLoader("bench_check", str(ROOT / "scripts" / "bench-check")).load_module()
    figures = bench.run_child(ROOT, None, 1)
    assert figures["backend"] == "numpy"
    assert figures["rss"] <= 200, figures
    assert figures["cpu_p99"] <= 10, figures


def _env(extra: dict[str, str]) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("TEDDY_")}
    return env | extra


class _CountingEncoder:
    """Delegates to the real encoder, counting forward passes."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.passes = 0

    def token_states(self, ids, mask):
        self.passes += 1
        return self.inner.token_states(ids, mask)

    def forward(self, ids, mask):
        self.passes += 1
        return self.inner.forward(ids, mask)
