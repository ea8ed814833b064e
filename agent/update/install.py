"""Installing a verified release into its own virtualenv (the B beside the running A)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from agent.update.errors import InstallError, UpdateRefused
from agent.update.journal import bootguard
from sync.protocol.release import MANIFEST_NAME, SIGNATURE_NAME, ReleaseManifest

logger = logging.getLogger(__name__)

INSTALLED_MARKER = "installed.json"
"""Written last into a release directory: the install finished."""
PIP_TIMEOUT_S = 900.0
"""Longest a pip install may take, seconds."""


class VenvInstaller:
    """Installs a release with pip into ``releases/<version>/venv``, offline, from its wheels.

    A complete release (every dependency wheel inside) needs nothing else. A development
    release (project wheel only) is installed with ``--no-deps`` into a venv that also sees
    ``base_site_packages``; without that setting it is refused.
    """

    def __init__(self, base_site_packages: Path | None = None,
                 python: str | None = None) -> None:
        self.base_site_packages = base_site_packages
        """Site-packages a development release borrows its dependencies from."""
        self.python = python or sys.executable
        """Interpreter that makes the venvs (a venv's own python resolves to its base)."""

    def install(self, manifest: ReleaseManifest, staged: Path, release_dir: Path) -> None:
        """Install the verified files in ``staged`` into ``release_dir`` (made afresh)."""
        if not manifest.complete and self.base_site_packages is None:
            raise UpdateRefused(
                f"release {manifest.version} carries no dependency wheels — build it with "
                "teddy-cloud release build --with-deps, or set update.base_site_packages "
                "(development only)"
            )
        if release_dir.exists():
            shutil.rmtree(release_dir)
        try:
            self._make_venv(manifest, release_dir / "venv")
            self._pip_install(manifest, staged, release_dir / "venv")
        except InstallError:
            shutil.rmtree(release_dir, ignore_errors=True)
            raise
        mark_installed(manifest, staged, release_dir)

    def _make_venv(self, manifest: ReleaseManifest, venv: Path) -> None:
        command = [self.python, "-m", "venv", str(venv)]
        if not manifest.complete:
            command.insert(3, "--without-pip")  # pip comes from the base site-packages
        _run(command, f"creating the venv {venv}")
        if not manifest.complete:
            site = Path(sysconfig.get_path("purelib", vars={"base": str(venv),
                                                             "platbase": str(venv)}))
            (site / "_teddy_base_site.pth").write_text(f"{self.base_site_packages}\n")

    def _pip_install(self, manifest: ReleaseManifest, staged: Path, venv: Path) -> None:
        command = [self.python, "-m", "pip", "--python", str(venv / "bin" / "python"),
                   "install", "--no-index", "--no-cache-dir", "--disable-pip-version-check",
                   "--quiet", "--find-links", str(staged / "wheels"),
                   str(staged / manifest.project_wheel().path)]
        if not manifest.complete:
            command.insert(command.index("--quiet"), "--no-deps")
        _run(command, f"pip install of teddy {manifest.version}")


def mark_installed(manifest: ReleaseManifest, staged: Path, release_dir: Path) -> None:
    """Copy the manifest and signature beside the venv and write the installed marker."""
    release_dir.mkdir(parents=True, exist_ok=True)
    for name in (MANIFEST_NAME, SIGNATURE_NAME):
        shutil.copyfile(staged / name, release_dir / name)
    marker = {"version": manifest.version, "installed_at": bootguard.now_iso()}
    (release_dir / INSTALLED_MARKER).write_text(json.dumps(marker) + "\n")


def _run(command: list[str], what: str) -> None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallError(f"{what} failed: {exc} — the current release keeps running") from None
    if result.returncode != 0:
        last = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
        raise InstallError(f"{what} failed (exit {result.returncode}): {last} — the current "
                           "release keeps running")
