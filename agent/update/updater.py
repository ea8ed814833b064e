"""The bear's updater: fetch, verify, install beside, switch, check, confirm or roll back."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.update import bootguard
from agent.update.errors import UpdateDeferred, UpdateError, UpdateRefused
from agent.update.fetch import download_file, fetch_small
from agent.update.health import HealthReport, check_release
from agent.update.install import INSTALLED_MARKER, VenvInstaller
from agent.update.journal import UpdateJournal, UpdateState
from agent.update.service import service_from_settings
from config.errors import ProtocolError
from sync.protocol.release import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    ReleaseManifest,
    load_public_key,
    parse_version,
    verify_manifest,
)

logger = logging.getLogger(__name__)

FREE_SPACE_MARGIN = 64 * 1024 * 1024
"""Bytes kept free beyond three times the release (download, wheels, installed venv)."""
ADOPTED_MARKER = "adopted.json"
"""Marks a release directory made around a venv that was not installed by the updater."""

BatteryProbe = Callable[[], float | None]
"""Battery charge in percent, or None when the bear has no battery."""
HealthCheck = Callable[[Path, str], HealthReport]
"""Judges an installed release: ``(release_dir, expected_version) -> HealthReport``."""


@dataclass(frozen=True)
class UpdateResult:
    """What an update ended as."""

    version: str
    """The release's version."""
    outcome: str
    """``installed``, ``rolled_back``, ``already_current`` or ``switching`` (finishing in
    a separate unit, see :meth:`Updater.finish`)."""
    reason: str
    """One line: why it rolled back, or what happened."""
    running: str
    """Version the ``current`` link names afterwards."""


def psutil_battery() -> float | None:
    """The battery charge from psutil, percent; None without a battery."""
    import psutil

    battery = psutil.sensors_battery()
    return None if battery is None else float(battery.percent)


class Updater:
    """Updates one bear. Collaborators are adapters with twins:

    ``installer`` (:class:`VenvInstaller`), ``service`` (systemd or the supervisor twin),
    ``health_check`` (runs the new release's ``teddy update health``), ``is_busy`` (True
    while the child is mid-conversation), ``battery`` (:func:`psutil_battery`).
    """

    def __init__(self, settings, *, is_busy: Callable[[], bool] = lambda: False,
                 battery: BatteryProbe = psutil_battery, installer=None, service=None,
                 health_check: HealthCheck | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.settings = settings
        """The bear's settings."""
        self.config = settings.update
        """The ``update`` section."""
        self.is_busy = is_busy
        """True while the child is mid-conversation: no update then."""
        self.battery = battery
        """Battery probe, percent or None."""
        self.env = dict(os.environ if env is None else env)
        """Environment of the health check and the service."""
        self.installer = installer or VenvInstaller(self.config.base_site_packages)
        """Installs a verified release into its directory."""
        self.service = service or service_from_settings(settings, self.env)
        """Restarts the bear after a switch."""
        self.health_check = health_check or self._subprocess_health_check
        """Judges the installed release."""
        self.journal = UpdateJournal(settings.store.data_dir)
        """The bear's update journal."""
        self.state = UpdateState(settings.store.data_dir)
        """In-flight update and floor."""

    # --- the whole update -------------------------------------------------------------

    def apply(self, release_url: str, manifest_url: str | None = None) -> UpdateResult:
        """Update to the release at ``release_url`` (a directory URL ending in ``/``).

        Raises :class:`UpdateDeferred` (busy, battery) or :class:`UpdateRefused`
        (signature, hash, size, floor) with the running release untouched; returns the
        outcome otherwise (installed, or rolled back with the reason).
        """
        base = release_url if release_url.endswith("/") else release_url + "/"
        manifest_url = manifest_url or urllib.parse.urljoin(base, MANIFEST_NAME)
        with self._one_at_a_time():
            return self._apply(release_url, manifest_url)

    @contextlib.contextmanager
    def _one_at_a_time(self) -> Iterator[None]:
        """Hold ``<root>/update.lock``; a second update meanwhile is deferred."""
        self.config.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.config.root / "update.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UpdateDeferred("another update is in progress on this bear — try again "
                                     "when it has finished") from None
            yield
        finally:
            os.close(fd)

    def _apply(self, release_url: str, manifest_url: str) -> UpdateResult:
        version = None
        try:
            self._check_conditions()
            self._ensure_current()
            manifest, staged = self._fetch_and_verify(manifest_url)
            version = manifest.version
            if version == self.current_version():
                self.journal.record("check", version, "already_current", release=release_url)
                return UpdateResult(version, "already_current", "already running", version)
            release_dir = self._install(manifest, staged, release_url)
            self._check_conditions()
        except UpdateDeferred as exc:
            self.journal.record("check", version, "deferred", reason=str(exc),
                                release=release_url)
            raise
        except UpdateRefused as exc:
            self.journal.record("verify", version, "refused", reason=str(exc),
                                release=release_url)
            raise
        except UpdateError as exc:
            self.journal.record("install", version, "failed", reason=str(exc),
                                release=release_url)
            raise
        self.switch(manifest, release_dir, release_url)
        if getattr(self.service, "detached", False):
            self.service.hand_over()
            return UpdateResult(version, "switching", "finishing in a separate unit", version)
        return self.finish()

    def _check_conditions(self) -> None:
        if self.is_busy():
            raise UpdateDeferred("the child is mid-conversation — the update waits until the "
                                 "conversation ends")
        charge = self.battery()
        if charge is not None and charge < self.config.min_battery_percent:
            raise UpdateDeferred(f"battery at {charge:.0f}% (below update.min_battery_percent "
                                 f"{self.config.min_battery_percent:.0f}%) — charge the bear")

    # --- fetch and verify -------------------------------------------------------------

    def _fetch_and_verify(self, manifest_url: str) -> tuple[ReleaseManifest, Path]:
        if not self.config.public_key:
            raise UpdateRefused("update.public_key is not set — no release can be trusted; "
                                "set TEDDY_UPDATE__PUBLIC_KEY from teddy-cloud release keygen")
        timeout = self.config.download_timeout_s
        started = time.monotonic()
        manifest_bytes = fetch_small(manifest_url, timeout)
        signature = fetch_small(urllib.parse.urljoin(manifest_url, SIGNATURE_NAME), timeout)
        try:
            manifest = verify_manifest(load_public_key(self.config.public_key),
                                       manifest_bytes, signature)
        except ProtocolError as exc:
            raise UpdateRefused(str(exc)) from None
        self._check_policy(manifest)
        staged = self._staging_dir(manifest_bytes, manifest.version)
        (staged / MANIFEST_NAME).write_bytes(manifest_bytes)
        (staged / SIGNATURE_NAME).write_bytes(signature)
        for item in manifest.files:
            download_file(urllib.parse.urljoin(manifest_url, item.path), item,
                          staged / item.path, self.config.download_attempts, timeout)
        self.journal.record("verify", manifest.version, "verified", files=len(manifest.files),
                            bytes=manifest.total_size,
                            seconds=round(time.monotonic() - started, 2))
        return manifest, staged

    def _check_policy(self, manifest: ReleaseManifest) -> None:
        floor = self.floor()
        if floor is not None and parse_version(manifest.version) < parse_version(floor):
            raise UpdateRefused(
                f"release {manifest.version} is below this bear's floor {floor} (the minimum "
                f"previous version of an installed release) — publish a release >= {floor}"
            )
        if manifest.total_size > self.config.max_download_bytes:
            raise UpdateRefused(
                f"release {manifest.version} is {manifest.total_size} bytes, over "
                f"update.max_download_bytes {self.config.max_download_bytes}"
            )
        self.config.root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.config.root).free
        needed = 3 * manifest.total_size + FREE_SPACE_MARGIN
        if free < needed:
            raise UpdateDeferred(
                f"only {free // 2**20} MB free under {self.config.root}, release "
                f"{manifest.version} needs about {needed // 2**20} MB — free some space"
            )

    def _staging_dir(self, manifest_bytes: bytes, version: str) -> Path:
        import hashlib

        digest = hashlib.sha256(manifest_bytes).hexdigest()[:12]
        staged = self.config.downloads_dir / f"{version}-{digest}"
        staged.mkdir(parents=True, exist_ok=True)
        return staged

    def _install(self, manifest: ReleaseManifest, staged: Path, release_url: str) -> Path:
        release_dir = self.config.releases_dir / manifest.version
        if release_dir.resolve() in (self._link_target(self.config.current_link),
                                     self._link_target(self.config.previous_link)):
            release_dir = self.config.releases_dir / f"{manifest.version}-{int(time.time())}"
        started = time.monotonic()
        self.installer.install(manifest, staged, release_dir)
        shutil.rmtree(staged, ignore_errors=True)
        self.journal.record("install", manifest.version, "installed", release=release_url,
                            dir=str(release_dir), seconds=round(time.monotonic() - started, 2))
        return release_dir

    # --- switch, check, confirm -------------------------------------------------------

    def switch(self, manifest: ReleaseManifest, release_dir: Path, release_url: str) -> None:
        """Make ``release_dir`` current (``previous`` keeps the old one); pending until
        :meth:`finish` confirms it."""
        old = self._link_target(self.config.current_link)
        self.state.begin(manifest.version, release_dir, old, self.config.max_starts)
        if old is not None:
            bootguard.switch_link(self.config.previous_link, old)
        bootguard.switch_link(self.config.current_link, release_dir)
        self.journal.record("switch", manifest.version, "switched", release=release_url,
                            previous=old.name if old else None)

    def finish(self) -> UpdateResult:
        """Restart into the pending release, check it, watch it; confirm or roll back."""
        pending = self.state.read()["pending"]
        if not pending:
            raise UpdateError("no update is pending — nothing to finish")
        version, release_dir = pending["version"], Path(pending["release"])
        previous = Path(pending["previous"]) if pending.get("previous") else None
        self.service.prepare()
        self.service.restart()
        started = time.monotonic()
        report = self.health_check(release_dir, version)
        self.journal.record("health", version, "healthy" if report.ok else "unhealthy",
                            reason=report.reason, checks=report.checks,
                            seconds=round(time.monotonic() - started, 2))
        if not report.ok:
            return self.roll_back(version, previous, f"post-update check failed: {report.reason}")
        by_guard, reason = self._watch(version)
        if by_guard:
            return UpdateResult(version, "rolled_back", reason or "rolled back by the boot guard",
                                self.current_version())
        if reason is not None:
            return self.roll_back(version, previous, reason)
        manifest = self._manifest_of(release_dir)
        self.state.finish(version, manifest.floor if manifest else None)
        self.journal.record("confirm", version, "installed",
                            floor=manifest.floor if manifest else None)
        self._prune()
        return UpdateResult(version, "installed", "healthy", version)

    def _subprocess_health_check(self, release_dir: Path, version: str) -> HealthReport:
        return check_release(release_dir, version, self.config.health_timeout_s, self.env)

    def _watch(self, version: str) -> tuple[bool, str | None]:
        """Wait until the release has run ``confirm_after_s`` without a new start.

        ``(True, reason)`` when the boot guard rolled it back meanwhile; ``(False, None)``
        when it is stable; ``(False, reason)`` when it never became stable.
        """
        window = self.config.confirm_after_s
        give_up = time.monotonic() + window * (self.config.max_starts + 2) + 10
        starts, stable_since = None, time.monotonic()
        while True:
            state = self.state.read()
            pending = state["pending"]
            if not pending or pending.get("version") != version:
                last = state.get("last_rollback") or {}
                return True, last.get("reason", "rolled back by the boot guard")
            now = time.monotonic()
            if pending.get("starts") != starts:  # (re)started: the window begins again
                starts, stable_since = pending.get("starts"), now
            if now - stable_since >= window and self.service.is_active():
                return False, None
            if now >= give_up:
                return False, (f"the new release did not stay up {window:g} s "
                               f"({starts} starts)")
            time.sleep(0.1)

    def roll_back(self, version: str, previous: Path | None, reason: str) -> UpdateResult:
        """Switch ``current`` back to ``previous``, restart, and record why."""
        if previous is None:
            raise UpdateError(f"cannot roll back {version}: no previous release — {reason}")
        bootguard.switch_link(self.config.current_link, previous)
        with bootguard.locked(self.state.data_dir):
            state = bootguard.read_state(self.state.data_dir)
            state["pending"] = None
            state["last_rollback"] = {"version": version, "reason": reason,
                                      "at": bootguard.now_iso()}
            bootguard.write_state(self.state.data_dir, state)
        self.journal.record("rollback", version, "rolled_back", reason=reason,
                            to=previous.name, by="updater")
        self.service.restart()
        return UpdateResult(version, "rolled_back", reason, self.current_version())

    # --- what is installed ------------------------------------------------------------

    def _ensure_current(self) -> None:
        """Adopt the running venv as the first release when there is no ``current`` yet.

        The version it shipped with becomes the bear's floor: a bear that never updated
        refuses a signed release older than its own (whatever that release's floor says).
        """
        if self.config.current_link.is_symlink():
            return
        from agent import __version__

        self.state.raise_floor(__version__)
        adopted = self.config.releases_dir / __version__
        adopted.mkdir(parents=True, exist_ok=True)
        if not (adopted / "venv").exists():
            os.symlink(sys.prefix, adopted / "venv")
        (adopted / ADOPTED_MARKER).write_text(json.dumps({"version": __version__,
                                                          "venv": sys.prefix}) + "\n")
        bootguard.switch_link(self.config.current_link, adopted)
        self.journal.record("adopt", __version__, "adopted", venv=sys.prefix)

    def _link_target(self, link: Path) -> Path | None:
        return link.resolve() if link.is_symlink() else None

    def _manifest_of(self, release_dir: Path | None) -> ReleaseManifest | None:
        if release_dir is None or not (release_dir / MANIFEST_NAME).exists():
            return None
        return ReleaseManifest.from_payload((release_dir / MANIFEST_NAME).read_bytes())

    def current_version(self) -> str:
        """Version the ``current`` link names (the running code's when there is none)."""
        target = self._link_target(self.config.current_link)
        for marker in (INSTALLED_MARKER, ADOPTED_MARKER):
            if target is not None and (target / marker).exists():
                return json.loads((target / marker).read_text())["version"]
        from agent import __version__

        return __version__

    def floor(self) -> str | None:
        """The lowest version this bear accepts: the highest floor it has installed."""
        floors = [self.state.read().get("floor"), self._adopted_floor()]
        current = self._manifest_of(self._link_target(self.config.current_link))
        if current is not None:
            floors.append(current.floor)
        known = [f for f in floors if f]
        return max(known, key=parse_version) if known else None

    def _adopted_floor(self) -> str | None:
        """The highest version adopted as shipped (bears adopted before the floor was kept)."""
        versions = []
        if self.config.releases_dir.is_dir():
            for marker in self.config.releases_dir.glob(f"*/{ADOPTED_MARKER}"):
                with contextlib.suppress(OSError, ValueError, KeyError):
                    versions.append(json.loads(marker.read_text())["version"])
        return max(versions, key=parse_version) if versions else None

    def status(self) -> dict:
        """What runs, what is pending, the floor and the last journal entry."""
        from agent import __version__

        state = self.state.read()
        previous = self._link_target(self.config.previous_link)
        entries = self.journal.entries()
        return {"version": __version__, "current": self.current_version(),
                "previous": previous.name if previous else None, "pending": state["pending"],
                "floor": self.floor(), "last_rollback": state["last_rollback"],
                "last": entries[-1] if entries else None}

    def _prune(self) -> None:
        keep = {self._link_target(self.config.current_link),
                self._link_target(self.config.previous_link)}
        releases = sorted((p for p in self.config.releases_dir.iterdir() if p.is_dir()),
                          key=lambda p: p.stat().st_mtime, reverse=True)
        for extra in releases[self.config.keep_releases:]:
            if extra.resolve() not in keep:
                shutil.rmtree(extra, ignore_errors=True)
                logger.info("removed old release %s", extra.name)

    def close(self) -> None:
        """Release the service adapter. Idempotent."""
        self.service.close()

    def __enter__(self) -> Updater:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
