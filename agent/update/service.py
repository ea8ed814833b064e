"""Restarting the bear after a switch: systemd on the appliance, a supervisor twin elsewhere.

Both run the boot guard before every start, so a release that crash-loops is rolled back
the same way on a Pi and in a test.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from pathlib import Path

from agent.update import bootguard
from agent.update.errors import UpdateError

logger = logging.getLogger(__name__)


class SystemdService:
    """The ``teddy-agent`` unit; its ``ExecStartPre`` runs the boot guard copy in ``root``."""

    def __init__(self, unit: str, root: Path) -> None:
        self.unit = unit
        """The systemd unit restarted after a switch."""
        self.root = Path(root)
        """update.root, where the boot guard copy is kept."""

    def prepare(self) -> None:
        """Keep a copy of the boot guard outside every release (``<root>/bootguard.py``)."""
        install_bootguard(self.root)

    @property
    def detached(self) -> bool:
        """True inside the unit itself: restarting it would kill the updater, so the rest
        of the update runs in a transient unit (:meth:`hand_over`)."""
        return bool(os.environ.get("INVOCATION_ID"))

    def hand_over(self) -> None:
        """Finish the update (restart, check, confirm or roll back) in a transient unit."""
        program = self.root / "current" / "venv" / "bin" / "teddy"
        _systemctl_run("--unit=teddy-update-finish", "--collect", "--no-block",
                       str(program), "update", "finish")

    def restart(self) -> None:
        """``systemctl restart`` the unit (blocks until systemd has started it)."""
        _systemctl("restart", self.unit)

    def is_active(self) -> bool:
        """Whether systemd reports the unit active."""
        result = subprocess.run(["systemctl", "is-active", "--quiet", self.unit], check=False)
        return result.returncode == 0

    def close(self) -> None:
        """Nothing to release."""


def _systemctl(*args: str) -> None:
    if shutil.which("systemctl") is None:
        raise UpdateError("systemctl not found — set TEDDY_UPDATE__SERVICE=simulated off a Pi")
    result = subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise UpdateError(f"systemctl {' '.join(args)} failed: {result.stderr.strip()}")


def _systemctl_run(*args: str) -> None:
    if shutil.which("systemd-run") is None:
        raise UpdateError("systemd-run not found — set TEDDY_UPDATE__SERVICE=simulated off a Pi")
    result = subprocess.run(["systemd-run", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise UpdateError(f"systemd-run {' '.join(args)} failed: {result.stderr.strip()}")


def install_bootguard(root: Path) -> Path:
    """Copy the stdlib-only boot guard to ``<root>/bootguard.py`` (atomically)."""
    target = Path(root) / "bootguard.py"
    temporary = target.with_name(f".bootguard.{os.getpid()}.tmp")
    shutil.copyfile(bootguard.__file__, temporary)
    os.replace(temporary, target)
    return target


class SupervisedService:
    """The simulated twin of systemd: runs ``<root>/current/venv/bin/teddy ARGS`` and starts
    it again when it exits non-zero (``Restart=on-failure``), the boot guard before each
    start.

    ``ARGS`` is ``update.service_command`` (``run`` on a bear; tests use ``chat``, whose
    stdin is held open so it keeps running).
    """

    def __init__(self, root: Path, data_dir: Path, command: tuple[str, ...],
                 env: dict[str, str] | None = None, restart_s: float = 0.2,
                 max_restarts: int = 10) -> None:
        self.root = Path(root)
        """update.root."""
        self.data_dir = Path(data_dir)
        """The bear's data dir (update state and journal)."""
        self.command = tuple(command)
        """``teddy`` arguments of the service."""
        self.env = dict(os.environ if env is None else env)
        """Environment of the service process."""
        self.restart_s = restart_s
        """Pause before a restart after a failure, seconds."""
        self.max_restarts = max_restarts
        """Failures after which the supervisor gives up (systemd's start limit)."""
        self.starts = 0
        """Processes started so far."""
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def prepare(self) -> None:
        """Nothing to prepare: the boot guard is imported directly."""

    def restart(self) -> None:
        """Stop the running process (if any) and start the current release."""
        self._halt()
        self._stop.clear()
        self._start_one()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._thread.start()

    def is_active(self) -> bool:
        """Whether the service process is running now."""
        with self._lock:
            return self._process is not None and self._process.poll() is None

    def close(self) -> None:
        """Stop the service. Idempotent."""
        self._halt()

    def __enter__(self) -> SupervisedService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start_one(self) -> None:
        bootguard.note_start(self.data_dir, self.root)
        program = self.root / "current" / "venv" / "bin" / "teddy"
        with self._lock:
            self.starts += 1
            self._process = subprocess.Popen(
                [str(program), *self.command], env=self.env, stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        logger.info("supervisor started %s (start %d)", program, self.starts)

    def _watch(self) -> None:
        failures = 0
        while not self._stop.is_set():
            with self._lock:
                process = self._process
            if process is None or process.poll() is None:
                self._stop.wait(0.05)
                continue
            if process.returncode == 0 or failures >= self.max_restarts:
                return
            failures += 1
            logger.info("service exited %s; restarting", process.returncode)
            if self._stop.wait(self.restart_s):
                return
            self._start_one()

    def _halt(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        with self._lock:
            process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def service_from_settings(settings, env: dict[str, str] | None = None):
    """The service adapter ``update.service`` names."""
    update = settings.update
    if update.service == "systemd":
        return SystemdService(update.unit, update.root)
    return SupervisedService(update.root, settings.store.data_dir, update.service_command,
                             env=env)
