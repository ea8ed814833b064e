"""The unit files: ``systemd-analyze verify`` is clean and ``security`` scores 2.0 or lower.

Both run offline against a throwaway filesystem root that stands in for the Pi (or the
cloud host): systemd's own units copied from this machine, our units in
``/etc/systemd/system``, the binaries the units name copied from this machine, and
placeholders for what ``scripts/install-pi`` puts in ``/opt/teddy/venv``. Needs Debian's
``systemd`` package (``scripts/setup --test`` installs it); no running systemd.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS_DIR = Path(__file__).resolve().parent.parent / "systemd"
UNIT_FILES = sorted(p.name for p in UNITS_DIR.glob("*.service"))
INSTANCES = {  # how a template is verified: with a real-looking instance name
    "teddy-cloud-ingest@.service": "teddy-cloud-ingest@1.service",
    "teddy-alert@.service": "teddy-alert@teddy-agent.service.service",
}
MAX_EXPOSURE = 2.0
EXEC_KEYS = ("ExecStart", "ExecStartPre", "ExecStartPost", "ExecReload", "ExecStop")


def analyze() -> str:
    binary = shutil.which("systemd-analyze")
    assert binary, "systemd-analyze missing: apt-get install systemd (scripts/setup --test)"
    return binary


def directives(unit: str) -> dict[str, list[str]]:
    """``Key -> [values]`` of a unit file (keys may repeat; comments skipped)."""
    found: dict[str, list[str]] = {}
    for line in (UNITS_DIR / unit).read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def executables(unit: str) -> list[str]:
    paths = []
    for key in EXEC_KEYS:
        for value in directives(unit).get(key, []):
            paths.append(value.lstrip("-+!@:").split()[0])
    return paths


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A filesystem root with systemd's units, ours, and the binaries they run."""
    root = tmp_path_factory.mktemp("root")
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    for merged in ("bin", "sbin", "lib"):
        (root / merged).symlink_to(f"usr/{merged}")
    (root / "usr/bin").mkdir()
    (root / "usr/sbin").mkdir()
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    for name in UNIT_FILES:
        shutil.copy(UNITS_DIR / name, units / name)
        for path in executables(name):
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.startswith("/opt/teddy/"):  # what install-pi creates
                target.write_text("#!/bin/sh\n")
                target.chmod(0o755)
            else:
                assert Path(path).exists(), f"{name} runs {path}, which Debian does not have"
                shutil.copy(Path(path).resolve(), target)
    return root


def run_analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([analyze(), *args], capture_output=True, text=True, timeout=60)


def test_there_are_the_units_the_bear_and_the_cloud_need() -> None:
    assert {"teddy-agent.service", "teddy-cloud-ingest@.service",
            "teddy-cloud-migrate.service", "teddy-alert@.service"} <= set(UNIT_FILES)


@pytest.mark.parametrize("unit", UNIT_FILES)
def test_systemd_analyze_verify_is_clean(root: Path, unit: str) -> None:
    name = INSTANCES.get(unit, unit)
    result = run_analyze("verify", "--man=no", "--generators=no", f"--root={root}", name)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_verify_catches_a_broken_unit(root: Path, tmp_path: Path) -> None:
    """The check above can fail: a misspelt key or a missing binary is reported."""
    broken = root / "etc/systemd/system/teddy-broken.service"
    text = (UNITS_DIR / "teddy-agent.service").read_text()
    broken.write_text(text.replace("UMask=", "UMsk=").replace("venv/bin/teddy", "venv/bin/nope"))
    try:
        result = run_analyze("verify", "--man=no", "--generators=no", f"--root={root}",
                             "teddy-broken.service")
    finally:
        broken.unlink()
    assert "Unknown key 'UMsk'" in result.stderr
    assert "/opt/teddy/venv/bin/nope is not executable" in result.stderr


@pytest.mark.parametrize("unit", UNIT_FILES)
def test_security_exposure_is_at_most_2(root: Path, unit: str) -> None:
    name = INSTANCES.get(unit, unit)
    result = run_analyze("security", "--offline=true", f"--root={root}", name)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    score = float(found.group(1))
    print(f"{name}: exposure {score}")
    assert score <= MAX_EXPOSURE, result.stdout


def test_the_agent_is_a_watched_notify_service_that_alerts_when_it_gives_up() -> None:
    unit = directives("teddy-agent.service")
    assert unit["Type"] == ["notify"] and unit["Restart"] == ["always"]
    watchdog = int(unit["WatchdogSec"][0])
    assert 10 <= watchdog <= 120
    assert int(unit["StartLimitBurst"][0]) >= 3 and int(unit["StartLimitIntervalSec"][0]) > 0
    assert unit["OnFailure"] == ["teddy-alert@%n.service"]
    assert unit["ExecStart"] == ["/opt/teddy/venv/bin/teddy run"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]  # SIGHUP reloads live config


def test_the_agent_runs_as_teddy_with_its_own_dirs_credentials_and_devices() -> None:
    unit = directives("teddy-agent.service")
    assert unit["User"] == ["teddy"] and unit["SupplementaryGroups"] == ["audio gpio video"]
    assert unit["StateDirectory"] == ["teddy"] and unit["ConfigurationDirectory"] == ["teddy"]
    assert unit["StateDirectoryMode"] == ["0700"] and unit["UMask"] == ["0077"]
    assert any(v.startswith("mqtt-password:") for v in unit["LoadCredential"])
    assert "TEDDY_MQTT__PASSWORD_FILE=%d/mqtt-password" in unit["Environment"]
    assert "TEDDY_STORE__DATA_DIR=/var/lib/teddy" in unit["Environment"]
    assert unit["DevicePolicy"] == ["closed"]
    assert sorted(unit["DeviceAllow"]) == ["/dev/vchiq rw", "char-alsa rw", "char-gpiochip rw"]
    for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges",
                "CapabilityBoundingSet", "RestrictAddressFamilies", "MemoryMax"):
        assert key in unit, key
    assert unit["SystemCallFilter"][0] == "@system-service"


def test_cloud_units_share_the_subscription_and_keep_secrets_out_of_config() -> None:
    ingest = directives("teddy-cloud-ingest@.service")
    migrate = directives("teddy-cloud-migrate.service")
    assert "TEDDY_CLOUD__CLIENT_ID=ingest-%H-%i" in ingest["Environment"]
    assert "teddy-cloud-migrate.service" in ingest["After"][0]
    assert ingest["Type"] == ["notify"] and ingest["TimeoutStartSec"] == ["infinity"]
    assert migrate["Type"] == ["oneshot"]
    for unit in (ingest, migrate):
        assert unit["DynamicUser"] == ["yes"]
        assert "PGPASSFILE=%d/pgpass" in unit["Environment"]
        assert any(v.startswith("pgpass:") for v in unit["LoadCredential"])
