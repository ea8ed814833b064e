"""What the shipped safety model was trained from, and whether it is stale.

The manifest (agent/safety/model/manifest.json) records the SHA-256 of the corpus files, of
the training config, of the training code, and of the MiniLM weights; a shipped model is stale
when any of them changed (or the corpus no longer matches its templates). Read by
scripts/train-safety and tests/test_safety_model.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
CONFIG = HERE / "config.json"
CODE = (HERE / "head.py", HERE / "torch_bert.py", HERE.parents[1] / "scripts" / "train-safety")
"""Training code whose change makes the weights stale."""


def read_config() -> dict:
    """training/safety/config.json."""
    return json.loads(CONFIG.read_text(encoding="utf-8"))


def digest(paths) -> str:
    """SHA-256 over the bytes of ``paths`` in order (names included)."""
    hasher = hashlib.sha256()
    for path in paths:
        hasher.update(Path(path).name.encode() + b"\0" + Path(path).read_bytes() + b"\0")
    return hasher.hexdigest()


def corpus_sha256() -> str:
    """SHA-256 of the corpus files."""
    return digest(sorted(DATA.glob("*.jsonl")))


def training_sha256() -> str:
    """SHA-256 of the training config and code."""
    return digest([CONFIG, *CODE])


def manifest(heads: dict, minilm: str, config: dict, figures: dict,
             sources: dict[str, str]) -> dict:
    """The manifest written beside the heads; ``sources``: :func:`sources` taken when
    training started (so an edit during training leaves the result stale)."""
    return {
        "_doc": "Written by scripts/train-safety; every file is hash-checked at load and "
                "tests/test_safety_model.py fails when the corpus or training changed since.",
        "minilm_sha256": minilm,
        **sources,
        "allow_labels": config["allow_labels"],
        "heads": heads,
        "held_out_figures": figures,
    }


def sources() -> dict[str, str]:
    """The corpus's and the training's SHA-256, as the manifest records them."""
    return {"corpus_sha256": corpus_sha256(), "training_sha256": training_sha256()}


def stale_reasons(model_dir: Path) -> list[str]:
    """Why the shipped model no longer matches its sources (empty: up to date)."""
    try:
        shipped = json.loads((model_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"no readable manifest in {model_dir}: {exc}"]
    reasons = []
    if shipped.get("corpus_sha256") != corpus_sha256():
        reasons.append("the corpus changed since training — run scripts/train-safety")
    if shipped.get("training_sha256") != training_sha256():
        reasons.append("training config or code changed — run scripts/train-safety")
    return reasons
