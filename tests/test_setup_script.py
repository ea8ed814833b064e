"""``scripts/setup``: ``--cloud`` installs the ``[cloud]`` extra (so ``teddy-cloud migrate``
finds psycopg after the documented set-up), ``--test`` keeps installing ``[test]``.

Runs the real script in a copy of it whose ``.venv/bin/python`` records what pip was asked
to install (a real pip install takes a minute and the network); the system packages the
options need are already on this machine, so apt-get is not called."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _run_setup(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, str]:
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "setup", root / "scripts" / "setup")
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    venv = root / ".venv" / "bin"
    venv.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "pip.log"
    (venv / "python").write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    (venv / "teddy").write_text("#!/bin/sh\nexit 0\n")
    for stub in ("python", "teddy"):
        (venv / stub).chmod(0o755)
    result = subprocess.run([str(root / "scripts" / "setup"), *args], capture_output=True,
                            text=True, timeout=120)
    return result, log.read_text() if log.exists() else ""


@pytest.mark.parametrize(("args", "extra"), [
    (("--cloud",), ".[cloud]"), (("--test",), ".[test]"), (("--cloud", "--test"), ".[test]"),
    ((), "."),
])
def test_setup_installs_the_extra_each_option_asks_for(tmp_path: Path, args, extra) -> None:
    result, pip = _run_setup(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    assert f"-m pip install -q -e {extra}\n" in pip, pip


def test_setup_refuses_an_unknown_option(tmp_path: Path) -> None:
    result, pip = _run_setup(tmp_path, "--clodu")
    assert result.returncode == 2 and "unknown option --clodu" in result.stderr
    assert pip == ""


def test_pyproject_cloud_extra_brings_psycopg() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    cloud = " ".join(extras["cloud"])
    assert "psycopg" in cloud and "prometheus-client" in cloud
    assert "teddy[cloud]" in extras["test"]
