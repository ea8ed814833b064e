"""Settings section ``update``: signed A/B releases on the bear, building and rolling them out
in the cloud.

The bear keeps its releases under ``root``::

    <root>/releases/<version>/venv/     one virtualenv per release (A/B)
    <root>/releases/<version>/manifest.json + manifest.sig
    <root>/current  -> releases/<version>   switched atomically; systemd runs current/venv
    <root>/previous -> releases/<version>   where a rollback goes
    <root>/downloads/<version>/         partial downloads, resumed
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from config.settings import Section


class UpdateSettings(Section):
    """Over-the-air updates: where releases live, whom to trust, when to roll back."""

    root: Path = Path("/opt/teddy")
    """Directory of the A/B releases and the ``current`` link."""
    public_key: str | None = None
    """Base64 of the fleet's 32-byte Ed25519 release public key; None: updates refused."""
    public_key_file: Path | None = None
    """File holding ``public_key`` (read at load when ``public_key`` is unset)."""
    max_download_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    """Largest release accepted, bytes (all files together)."""
    download_attempts: int = Field(default=5, ge=1, le=50)
    """Tries per file; each try resumes where the last one stopped (HTTP Range)."""
    download_timeout_s: float = Field(default=30.0, gt=0, le=600)
    """Socket timeout of one download request, seconds."""
    min_battery_percent: float = Field(default=30.0, ge=0, le=100)
    """Below this battery charge (percent) no update starts; no battery: no limit."""
    health_timeout_s: float = Field(default=120.0, gt=0, le=1800)
    """Seconds the new release's ``teddy update health`` may take."""
    confirm_after_s: float = Field(default=60.0, ge=0, le=3600)
    """Seconds the new release must keep running before the update is confirmed."""
    max_starts: int = Field(default=3, ge=1, le=20)
    """Starts an unconfirmed release gets; one more and the boot guard rolls back."""
    service: Literal["systemd", "simulated"] = "systemd"
    """How the bear restarts: systemd, or a simulated supervisor (tests, laptops)."""
    unit: str = "teddy-agent.service"
    """The systemd unit restarted after a switch."""
    service_command: tuple[str, ...] = ("run",)
    """``teddy`` arguments the simulated supervisor runs as the service."""
    base_site_packages: Path | None = None
    """Development only: a release without dependency wheels (``complete = false``) is
    installed into a venv that also sees this site-packages; None: such releases refused."""
    keep_releases: int = Field(default=3, ge=2, le=10)
    """Release directories kept on disk (current and previous always among them)."""
    signing_key_file: Path | None = None
    """Cloud: PEM file of the fleet's Ed25519 release private key (mode 0600)."""
    release_store: Path | None = None
    """Cloud: directory ``release publish`` copies releases into (content-addressed)."""
    release_base_url: str | None = None
    """Cloud: URL at which ``release_store`` is served to bears."""

    @model_validator(mode="after")
    def _read_public_key_file(self) -> UpdateSettings:
        if self.public_key is None and self.public_key_file is not None:
            try:
                text = self.public_key_file.read_text().strip()
            except OSError as exc:
                raise ValueError(f"update.public_key_file {self.public_key_file} cannot be read "
                                 f"({exc.strerror}) — fix the path") from None
            object.__setattr__(self, "public_key", text)
        return self

    @property
    def releases_dir(self) -> Path:
        """Directory holding one sub-directory per installed release."""
        return self.root / "releases"

    @property
    def current_link(self) -> Path:
        """The link systemd follows to the running release."""
        return self.root / "current"

    @property
    def previous_link(self) -> Path:
        """The link to the release a rollback returns to."""
        return self.root / "previous"

    @property
    def downloads_dir(self) -> Path:
        """Where partial downloads wait to be resumed."""
        return self.root / "downloads"
