"""The post-update health check.

:func:`collect` runs *inside* the new release (``teddy update health --json``, a
subprocess of the updater started from the new venv), so it proves the new code can do
the real things: load the config, open and verify the store, reach the broker or say why
not, open audio, load the model. :func:`check_release` runs that subprocess and judges it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass
class HealthReport:
    """The outcome of a post-update health check."""

    ok: bool
    """Whether the release may stay."""
    reason: str
    """One line: why it failed, or "healthy"."""
    version: str | None = None
    """Version the new release reports about itself."""
    checks: list[dict] = field(default_factory=list)
    """Every check: ``name``, ``ok``, ``detail``."""


def collect(settings) -> dict:
    """Run every check in this process; ``{"ok", "version", "checks": [...]}``."""
    from agent import __version__

    checks = [
        {"name": "config", "ok": True, "detail": "settings load and validate"},
        _check_store(settings),
        _check_broker(settings),
        _check_audio(settings),
        _check_model(settings),
    ]
    return {"ok": all(c["ok"] for c in checks), "version": __version__, "checks": checks}


def _check_store(settings) -> dict:
    from agent.store import ConversationStore
    from agent.store.verify import verify
    from config.errors import TeddyError

    if not ConversationStore.exists(settings.store):
        return {"name": "store", "ok": True, "detail": "no store yet (no consent)"}
    try:
        with ConversationStore.open(settings.store) as store:
            report = verify(store)
    except (TeddyError, OSError) as exc:
        return {"name": "store", "ok": False, "detail": f"store cannot be opened: {exc}"}
    if not report.ok:
        return {"name": "store", "ok": False,
                "detail": f"store verify found {len(report.problems)} problems"}
    return {"name": "store", "ok": True, "detail": f"{report.turns} turns verify"}


def _check_broker(settings) -> dict:
    mqtt = settings.mqtt
    try:
        with socket.create_connection((mqtt.host, mqtt.port), timeout=2.0):
            return {"name": "broker", "ok": True, "detail": f"{mqtt.host}:{mqtt.port} reachable"}
    except OSError as exc:
        # Offline is a state the bear handles (store-and-forward), not a broken release.
        return {"name": "broker", "ok": True,
                "detail": f"{mqtt.host}:{mqtt.port} unreachable ({exc.strerror or exc}); "
                          "turns wait in the outbox"}


def _check_audio(settings) -> dict:
    if settings.audio.backend == "wav":
        return {"name": "audio", "ok": True, "detail": "simulated twin (wav)"}
    try:
        import sounddevice

        sounddevice.query_devices(kind="input")
        sounddevice.query_devices(kind="output")
    except (ImportError, OSError, ValueError) as exc:
        return {"name": "audio", "ok": False, "detail": f"audio devices unavailable: {exc}"}
    return {"name": "audio", "ok": True, "detail": "input and output devices present"}


def _check_model(settings) -> dict:
    if settings.voice.model_path is None:
        return {"name": "model", "ok": True, "detail": "no model configured (chat only)"}
    from agent.voice.recognizer import load_model
    from config.errors import TeddyError

    try:
        load_model(settings.voice.model_path, settings.audio.sample_rate)
    except (TeddyError, OSError) as exc:
        return {"name": "model", "ok": False, "detail": f"model does not load: {exc}"}
    return {"name": "model", "ok": True, "detail": "model loads"}


def check_release(release_dir: Path, expected_version: str, timeout: float,
                  env: dict[str, str] | None = None) -> HealthReport:
    """Run ``<release>/venv/bin/teddy update health --json`` and judge its answer."""
    program = Path(release_dir) / "venv" / "bin" / "teddy"
    try:
        result = subprocess.run([str(program), "update", "health", "--json"],
                                capture_output=True, text=True, timeout=timeout,
                                env=dict(os.environ if env is None else env))
    except subprocess.TimeoutExpired:
        return HealthReport(False, f"health check did not finish within {timeout:.0f} s")
    except OSError as exc:
        return HealthReport(False, f"health check could not start {program}: {exc.strerror}")
    try:
        answer = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (result.stderr.strip() or "no output").splitlines()[-1][:200]
        return HealthReport(False, f"health check exited {result.returncode}: {tail}")
    failed = [c for c in answer.get("checks", []) if not c.get("ok")]
    version = answer.get("version")
    if failed:
        reason = "; ".join(f"{c['name']}: {c['detail']}" for c in failed)
        return HealthReport(False, reason, version, answer.get("checks", []))
    if version != expected_version:
        return HealthReport(False, f"release reports version {version}, its manifest says "
                                   f"{expected_version}", version, answer.get("checks", []))
    if result.returncode != 0:
        return HealthReport(False, f"health check exited {result.returncode}", version)
    return HealthReport(True, "healthy", version, answer.get("checks", []))
