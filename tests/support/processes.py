"""``teddy`` and ``teddy-cloud`` as a user runs them: subprocesses from the virtualenv."""

from __future__ import annotations

import subprocess
from pathlib import Path

from support.paths import VENV_BIN
from support.waiting import wait_until


def run_cli(program: str, *args: str, env: dict[str, str], stdin: str | None = None,
            timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``teddy`` or ``teddy-cloud`` from the virtualenv, as a user would."""
    result = subprocess.run([str(VENV_BIN / program), *args], input=stdin, env=env,
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{program} {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def start_cli(program: str, *args: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a long-running ``teddy``/``teddy-cloud`` command with its output in ``log``."""
    handle = log.open("ab")
    return subprocess.Popen([str(VENV_BIN / program), *args], env=env,
                            stdout=handle, stderr=subprocess.STDOUT)


def wait_for_log(log: Path, text: str, timeout: float = 20.0) -> None:
    """Block until ``text`` appears in ``log``; the error shows the log."""
    wait_until(lambda: log.exists() and text in log.read_text(errors="replace"), timeout,
               lambda: f"{text!r} in {log}:\n"
                       f"{log.read_text(errors='replace') if log.exists() else ''}",
               interval=0.05)
