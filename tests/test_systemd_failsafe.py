"""The OnFailure= alert: ``python -m agent.failsafe UNIT`` as ``teddy-alert@.service`` runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agent.failsafe import ALERT_KIND, record_failure, take_pending


def test_the_alert_unit_command_logs_critical_and_leaves_the_alert(
    env: dict[str, str], data_dir: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agent.failsafe", "teddy-agent.service"],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert line["level"] == "CRITICAL" and line["unit"] == "teddy-agent.service"
    alerts = take_pending(data_dir)
    assert [a["kind"] for a in alerts] == [ALERT_KIND]
    assert alerts[0]["unit"] == "teddy-agent.service" and alerts[0]["severity"] == "critical"
    assert take_pending(data_dir) == []  # raised once, then gone


def test_pending_alerts_come_oldest_first_and_bad_files_are_dropped(tmp_path: Path) -> None:
    record_failure("b.service", tmp_path, now=200.0)
    record_failure("a.service", tmp_path, now=300.0)
    record_failure("../evil/c.service", tmp_path, now=100.0)
    (tmp_path / "alerts" / "junk.json").write_text("{not json")
    assert [a["unit"] for a in take_pending(tmp_path)] == [
        "../evil/c.service", "b.service", "a.service"]
    assert list((tmp_path / "alerts").iterdir()) == []


def test_a_wrong_call_is_a_usage_error() -> None:
    result = subprocess.run([sys.executable, "-m", "agent.failsafe"], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2 and "usage" in result.stderr
