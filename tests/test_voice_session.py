"""Whole sessions through the ``teddy`` command: ``listen`` on a WAV, ``run`` on the twins
stopped with SIGTERM; raw audio never reaches the disk (data dir and temp dir inspected).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.audio import KO_PHRASES, korean_model, synthesize

AUDIO_SUFFIXES = {".wav", ".raw", ".pcm", ".flac", ".ogg", ".mp3"}


def audio_files(*roots: Path) -> list[Path]:
    """Every file under ``roots`` that is audio by name or by a RIFF/WAVE header."""
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if not path.is_file():
                continue
            with path.open("rb") as handle:
                head = handle.read(12)
            if path.suffix.lower() in AUDIO_SUFFIXES or head[:4] == b"RIFF":
                found.append(path)
    return found


def teddy_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEDDY_")}
    env.update({
        "TEDDY_STORE__DATA_DIR": str(tmp_path / "data"),
        "TEDDY_VOICE__MODEL_PATH": str(korean_model()),
        "TEDDY_VOICE__GRAMMAR": __import__("json").dumps(KO_PHRASES),
        "TEDDY_AUDIO__BACKEND": "wav",
        "TMPDIR": str(tmp_path / "tmp"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    })
    return env


def teddy(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_listen_answers_and_leaves_no_audio_behind(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    utterance = synthesize("노래 하자", inputs / "utterance.wav")
    env = teddy_env(tmp_path)
    consent = teddy("consent", "grant", "--parent", "parent@example.org", env=env)
    assert consent.returncode == 0, consent.stderr
    done = teddy("listen", str(utterance), env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() and "say it again" not in done.stdout
    assert (tmp_path / "data").is_dir()
    assert audio_files(tmp_path / "data", tmp_path / "tmp") == []


def test_listen_writes_the_reply_wav_only_where_asked(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    utterance = synthesize("안녕하세요", inputs / "utterance.wav")
    reply = tmp_path / "out" / "reply.wav"
    reply.parent.mkdir()
    done = teddy("listen", str(utterance), "--reply-wav", str(reply), env=teddy_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert reply.read_bytes()[:4] == b"RIFF" and reply.stat().st_size > 10000
    assert audio_files(tmp_path / "tmp") == []


def test_missing_model_is_one_clear_line(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    utterance = synthesize("안녕하세요", inputs / "utterance.wav")
    env = teddy_env(tmp_path) | {"TEDDY_VOICE__MODEL_PATH": str(tmp_path / "no-model")}
    done = teddy("listen", str(utterance), env=env)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path / "no-model") in lines[0]
    assert "scripts/fetch-model" in lines[0]


def test_run_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    env = teddy_env(tmp_path)
    process = subprocess.Popen([sys.executable, "-m", "agent.cli", "run"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    line, lines = "", []
    while time.monotonic() < deadline and "running" not in line and process.poll() is None:
        line = process.stderr.readline()
        lines.append(line)
    if "running" not in line:
        process.kill()
        out, err = process.communicate(timeout=10)
        raise AssertionError(f"teddy run did not start (exit {process.returncode}): "
                             f"{''.join(lines)}{err}")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "stopped" in err
    assert audio_files(tmp_path / "data", tmp_path / "tmp") == []
