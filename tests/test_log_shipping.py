"""Logs leave the machine: systemd-journal-upload ships the services' JSON journal entries
to a central systemd-journal-remote, as docs/operations.md sets them up.

No journald runs here, so the cloud host's journal is made from real ``teddy-cloud`` log
lines with systemd-journal-remote's own export-format reader (the fields journald would
add: unit, identifier, priority). Then the real uploader sends it over HTTP to a real
collector on a free port; the collector's journal holds every entry, in order, the JSON intact,
and a second upload run (from the saved cursor) sends nothing new: at most the one entry at
the saved cursor again (systemd 252's uploader re-reads its cursor entry on restart; the
runbook says so)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from support.brokers import free_port, wait_for_port
from support.processes import run_cli

REMOTE = Path("/lib/systemd/systemd-journal-remote")
UPLOAD = Path("/lib/systemd/systemd-journal-upload")
PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}

pytestmark = pytest.mark.skipif(
    not (REMOTE.exists() and UPLOAD.exists() and shutil.which("journalctl")),
    reason="apt-get install systemd-journal-remote (scripts/setup --test)")


def _journal_from(lines: list[str], unit: str, path: Path) -> None:
    """Write ``lines`` (the service's stderr) as journald would keep them."""
    now = int(time.time() * 1_000_000)
    export = "".join(
        f"__REALTIME_TIMESTAMP={now + n}\n__MONOTONIC_TIMESTAMP={n}\n"
        f"MESSAGE={line}\nSYSLOG_IDENTIFIER=teddy-cloud\n_SYSTEMD_UNIT={unit}\n"
        f"PRIORITY={PRIORITY[json.loads(line)['level']]}\n\n"
        for n, line in enumerate(lines))
    subprocess.run([str(REMOTE), f"--output={path}", "-"], input=export, text=True,
                   check=True, capture_output=True, timeout=30)


def _upload(port: int, local: Path, state: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(UPLOAD), f"--url=http://127.0.0.1:{port}", f"--directory={local}",
                           "--follow=no", f"--save-state={state}"],
                          capture_output=True, text=True, timeout=30)


def _remote_entries(remote: Path) -> list[dict]:
    out = subprocess.run(["journalctl", f"--directory={remote}", "-o", "json", "--no-pager"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_the_journal_is_shipped_to_the_collector_with_its_json_intact(env, tmp_path):
    stderr = "".join(
        run_cli("teddy-cloud", "--log-level", "INFO", "fleet", "keygen",
                env=dict(env, TEDDY_FLEET__SIGNING_KEY_FILE=str(tmp_path / f"fleet{n}.key"))
                ).stderr for n in range(3))
    lines = [line for line in stderr.splitlines() if line.startswith("{")]
    assert len(lines) == 3, stderr
    local, remote = tmp_path / "local", tmp_path / "remote"
    local.mkdir()
    remote.mkdir()
    _journal_from(lines, "teddy-cloud-notify.service", local / "system.journal")
    port = free_port()
    collector = subprocess.Popen([str(REMOTE), f"--listen-http=127.0.0.1:{port}",
                                  f"--output={remote}/all.journal", "--split-mode=none"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
        first = _upload(port, local, tmp_path / "state")
        assert first.returncode == 0, first.stderr
        again = _upload(port, local, tmp_path / "state")
        assert again.returncode == 0, again.stderr
    finally:
        collector.terminate()
        collector.wait(10)
    shipped = [e for e in _remote_entries(remote)
               if e.get("_SYSTEMD_UNIT") == "teddy-cloud-notify.service"]
    messages = [e["MESSAGE"] for e in shipped]
    assert messages[:len(lines)] == lines  # every entry, in order
    assert messages[len(lines):] in ([], lines[-1:])  # the restart resent nothing older
    record = json.loads(shipped[0]["MESSAGE"])
    assert record["logger"] == "sync.cloud.fleet" and "signing key" in record["msg"]
    assert shipped[0]["PRIORITY"] == "6"
