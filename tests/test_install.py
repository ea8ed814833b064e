"""``scripts/install-pi``: the dry run lists every step, and the real run is idempotent.

The real run needs a Debian Bookworm root made with ``debootstrap`` (about 35 s and 200 MB
from the Debian mirror) and then downloads packages and wheels (about 90 s): too heavy
for every CI run, so it runs when ``TEDDY_TEST_BOOKWORM_ROOT`` names such a root, e.g.

    debootstrap --variant=minbase bookworm /var/tmp/bookworm-root http://deb.debian.org/debian
    TEDDY_TEST_BOOKWORM_ROOT=/var/tmp/bookworm-root .venv/bin/python -m pytest \
        tests/test_install.py -s

It copies the root (the cached one stays pristine), runs install-pi in it twice as root
with ``chroot``, then runs the installed ``teddy`` as the ``teddy`` user and
``systemd-analyze verify`` on the installed units against the real installed binaries.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "scripts" / "install-pi"
STEPS = ["system packages", "groups audio gpio video", "user teddy in audio gpio video",
         "directories", "virtualenv", "teddy wheel", "systemd units", "Vosk model",
         "config /etc/teddy/teddy.toml", "enable teddy-agent.service",
         "start teddy-agent.service"]


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(INSTALL), *args], capture_output=True, text=True, timeout=60,
                          **kwargs)


def test_dry_run_lists_every_step_in_order_and_changes_nothing() -> None:
    before = Path("/opt/teddy").exists(), Path("/etc/teddy").exists()
    result = run("--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "install-pi --dry-run: nothing will be changed"
    positions = []
    for name in STEPS:
        matches = [i for i, line in enumerate(lines) if name in line]
        assert matches, f"step {name!r} not listed:\n{result.stdout}"
        positions.append(matches[0])
    assert positions == sorted(positions)
    states = {line.split()[0] for line in lines[1:]}
    assert states <= {"ok", "would", "skip"}, result.stdout  # never "doing"
    assert (Path("/opt/teddy").exists(), Path("/etc/teddy").exists()) == before


def test_help_and_bad_options() -> None:
    assert "--dry-run" in run("--help").stdout
    bad = run("--frobnicate")
    assert bad.returncode == 2 and "unknown option --frobnicate" in bad.stderr
    missing = run("--dry-run", "--wheel", "/nowhere/teddy.whl")
    assert missing.returncode == 2 and "/nowhere/teddy.whl does not exist" in missing.stderr


@pytest.mark.skipif(not shutil.which("runuser"), reason="needs runuser (util-linux)")
def test_a_real_run_needs_root() -> None:
    result = subprocess.run(["runuser", "-u", "nobody", "--", str(INSTALL)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "must run as root" in result.stderr


# --- the real run in a Bookworm root -----------------------------------------------------

BOOKWORM = os.environ.get("TEDDY_TEST_BOOKWORM_ROOT")


def copy_checkout(target: Path) -> None:
    """The checkout as an operator would have it (no venv, no caches, no git)."""
    skip = {".venv", ".git", ".pytest_cache", ".ruff_cache", "__pycache__", "build", "dist"}
    with tarfile.open(target.with_suffix(".tar"), "w") as archive:
        for path in REPO.iterdir():
            if path.name not in skip and not path.name.endswith(".egg-info"):
                archive.add(path, arcname=path.name,
                            filter=lambda info: None if set(Path(info.name).parts) & skip
                            else info)
    target.mkdir(parents=True)
    with tarfile.open(target.with_suffix(".tar")) as archive:
        archive.extractall(target, filter="tar")


def chroot_env(root: Path) -> dict[str, str]:
    """The host's environment, with its TLS trust store carried into the root (if set)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEDDY_", "PIP_FIND"))}
    bundle = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    if bundle and Path(bundle).is_file():
        shutil.copy(bundle, root / "root/host-ca.crt")
        for key in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
            env[key] = "/root/host-ca.crt"
    return env


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not BOOKWORM, reason="set TEDDY_TEST_BOOKWORM_ROOT to a debootstrapped "
                    "Bookworm root to run install-pi for real (see the module docstring)")
def test_install_pi_for_real_in_a_bookworm_root(tmp_path_factory) -> None:
    root = Path(tmp_path_factory.mktemp("pi")) / "root"
    subprocess.run(["cp", "-a", BOOKWORM, str(root)], check=True)
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    copy_checkout(root / "root/teddy-src")
    env = chroot_env(root)
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
    try:
        def inside(*command: str, timeout: float = 600) -> subprocess.CompletedProcess:
            return subprocess.run(["chroot", str(root), *command], env=env, text=True,
                                  capture_output=True, timeout=timeout)

        first = inside("/root/teddy-src/scripts/install-pi")
        print(first.stdout)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "install-pi: done" in first.stdout
        second = inside("/root/teddy-src/scripts/install-pi")
        print(second.stdout)
        assert second.returncode == 0, second.stderr
        assert "doing" not in second.stdout
        assert second.stdout.strip().endswith("install-pi: nothing to change")
        chat = inside("sh", "-c", "cd / && echo 'hello teddy' | runuser -u teddy -- env "
                      "TEDDY_CONFIG=/etc/teddy/teddy.toml /opt/teddy/venv/bin/teddy chat")
        assert chat.returncode == 0 and chat.stdout.strip(), chat.stderr
        ids = inside("id", "-nG", "teddy").stdout.split()
        assert {"teddy", "audio", "gpio", "video"} <= set(ids)
        assert inside("stat", "-c", "%a %U", "/var/lib/teddy").stdout.split() == ["700", "teddy"]
        assert inside("systemctl", "is-enabled", "teddy-agent.service").stdout.strip() == "enabled"
        verify = inside("systemd-analyze", "verify", "--man=no", "teddy-agent.service",
                        "teddy-cloud-migrate.service", "teddy-cloud-ingest@1.service")
        assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    finally:
        subprocess.run(["umount", str(root / "proc")], check=False)
        subprocess.run(["rm", "-rf", str(root)], check=False)
