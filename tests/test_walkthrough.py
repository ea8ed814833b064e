"""docs/operations.md is true: ``scripts/walkthrough`` runs its marked shell blocks, in order,
on a private copy of this host (mount, network and PID namespaces), with the shipped configs
and unit files, the installed commands, a fresh PostgreSQL and Mosquitto, and ends with a
paired bear answering a ping, its turn in PostgreSQL and its wellbeing alert at a webhook."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "walkthrough"
PG_BIN = Path(os.environ.get("TEDDY_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))

FIRST_INSTALL = (
    "apt-get install -y /root/dist/teddy-cloud_",
    "install -m 0644 config/examples/cloud-site.toml /etc/teddy/cloud-site.toml",
    "teddy-cloud setup --config /etc/teddy/cloud-site.toml",
    "teddy-cloud provision bear-0042",
    "sudo scripts/provision-device --from-cloud",
    "teddy-cloud fleet pair approve --code \"$CODE\"",
    "sudo scripts/install-pi",
    "teddy-cloud fleet send bear-0042 ping --wait",
    "teddy-cloud doctor --config /etc/teddy/cloud-site.toml",
)
"""Steps of a first installation that must stay in the walkthrough's blocks."""


def walkthrough_module():
    """``scripts/walkthrough`` as a module (it has no .py suffix)."""
    loader = importlib.machinery.SourceFileLoader("walkthrough", str(SCRIPT))
    spec = importlib.util.spec_from_loader("walkthrough", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_the_walkthrough_blocks_hold_every_step_of_a_first_install():
    """Taking a step out of a marked block (or unmarking it) would leave it untested."""
    walkthrough = walkthrough_module()
    found = walkthrough.blocks((ROOT / "docs" / "operations.md").read_text())
    text = "\n".join(body.replace("\\\n", " ") for _, body in found)
    missing = [step for step in FIRST_INSTALL if step not in text]
    assert not missing, f"docs/operations.md's walkthrough blocks lost: {missing}"
    assert [kind for kind, _ in found].count("background") == 1  # the bear waiting to pair
    for _, body in found:
        for part, line in walkthrough.segments(body):
            if part == "unit" and line.startswith("systemctl"):
                assert line.split()[1] in ("daemon-reload", "start", "restart", "enable"), line


needs_a_host = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("unshare", "mosquitto",
                                                                 "openssl", "runuser"))
    or not (PG_BIN / "initdb").exists(),
    reason="the walkthrough plays a whole host: root, unshare, mosquitto, openssl, PostgreSQL")


@needs_a_host
def test_the_operations_runbook_installs_a_cloud_and_a_bear_that_work():
    """Every marked block of docs/operations.md, as written, on a fresh private host."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                            timeout=600)
    took = time.monotonic() - started
    output = result.stdout + result.stderr
    print(f"walkthrough: exit {result.returncode} in {took:.0f} s")
    assert result.returncode == 0, output[-8000:]
    assert "bear-0042 answered the ping" in output
    assert "turns of bear-0042 in PostgreSQL" in output
    assert "wellbeing alert at the webhook: wellbeing.escalation ['medical_emergency']" in output
    # setup made every account the example's two ingest instances use, and started every
    # unit (the parent app and the second ingest too); doctor found nothing wrong
    assert "setup: service accounts: made svc.ingest-1, svc.ingest-2, svc.fleet" in output
    assert "systemctl enable --now teddy-cloud-migrate.service teddy-cloud-ingest@1.service " \
           "teddy-cloud-ingest@2.service" in output
    assert "teddy-cloud-portal.service" in output
    assert "doctor: everything is in order" in output
    assert "Setting up teddy-cloud (0.1.0)" in output  # the package, its postinst's venv
    leftovers = subprocess.run(["pgrep", "-f", "postgresql/walkthrough|teddy-walkthrough-"],
                               capture_output=True, text=True).stdout.split()
    assert not leftovers, f"the walkthrough left processes behind: {leftovers}"
