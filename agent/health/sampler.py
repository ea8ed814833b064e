"""The system half of a health sample: psutil, the thermal zone, vcgencmd, the clock.

Every reading is a float (booleans as 0/1) or None when this machine cannot tell (no
temperature sensor on a laptop, no ``vcgencmd`` off a Pi); a rule never fires on None.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")
"""Millidegrees Celsius on a Raspberry Pi (and most Linux boards)."""
THROTTLE_NOW_BITS = 0x0F
"""``get_throttled`` bits meaning "right now": under-voltage, freq capped, throttled, soft temp."""
EARLIEST_PLAUSIBLE_TIME = 1_704_067_200.0
"""2024-01-01 in Unix seconds: a clock before this has never been set (a Pi without RTC)."""
STA_UNSYNC = 0x0040
"""``adjtimex`` status bit: the kernel clock is not synchronised."""
TIME_ERROR = 5
"""``adjtimex`` return value: clock not synchronised."""


class SystemSampler:
    """Reads the machine and the bear's own process. ``sample()`` never raises."""

    def __init__(self, data_dir: Path, key_path: Path | None = None,
                 db_path: Path | None = None, retention_days: float | None = None) -> None:
        import psutil

        self._psutil = psutil
        self.data_dir = data_dir
        """Directory whose disk's free space is watched."""
        self.key_path = key_path
        """Key file whose mode is checked (0600); None: not checked."""
        self.db_path = db_path
        """Conversation store whose outbox is measured (metadata only); None: not measured."""
        self.retention_days = retention_days
        """Days parents were promised conversations are kept; None: not checked."""
        self._process = psutil.Process()
        self._vcgencmd = shutil.which("vcgencmd")
        psutil.cpu_percent(interval=None)

    def sample(self, now: float | None = None) -> dict[str, float | None]:
        """One reading of every system metric; ``now`` (Unix seconds) dates store ages."""
        readings: dict[str, float | None] = {}
        for name, read in self._readers():
            try:
                readings[name] = read()
            except Exception as exc:  # one broken sensor must not stop the others
                logger.debug("health reading %s failed: %s", name, exc)
                readings[name] = None
        readings.update(self._outbox(now))
        readings["play_today_min"] = self._play_today()
        return readings

    def _play_today(self) -> float | None:
        """Minutes the child played today (the parent's dashboard shows it beside the
        limit); None when the bear has not counted any play yet."""
        from agent.play import STATE_FILE, played_today_min

        try:
            return played_today_min(Path(self.data_dir) / STATE_FILE)
        except OSError:
            return None

    def _readers(self):
        psutil, proc = self._psutil, self._process
        return (
            ("cpu_percent", lambda: float(psutil.cpu_percent(interval=None))),
            ("load_per_cpu", lambda: os.getloadavg()[0] / (psutil.cpu_count() or 1)),
            ("memory_percent", lambda: float(psutil.virtual_memory().percent)),
            ("swap_percent", lambda: float(psutil.swap_memory().percent)),
            ("disk_free_mb", lambda: psutil.disk_usage(str(_existing(self.data_dir))).free / 2**20),
            ("cpu_temp_c", self._temperature),
            ("throttled", self._throttled),
            ("rss_mb", lambda: proc.memory_info().rss / 2**20),
            ("open_files", lambda: float(_open_files(proc))),
            ("uptime_s", lambda: time.time() - psutil.boot_time()),
            ("process_uptime_s", lambda: time.time() - proc.create_time()),
            ("clock_synchronised", clock_synchronised),
            ("key_file_insecure", self._key_insecure),
        )

    def _temperature(self) -> float | None:
        sensors: dict[str, list[Any]] = (
            getattr(self._psutil, "sensors_temperatures", lambda: {})() or {})
        for name in ("cpu_thermal", "coretemp", "k10temp", "soc_thermal"):
            if sensors.get(name):
                return float(sensors[name][0].current)
        if THERMAL_ZONE.exists():
            return int(THERMAL_ZONE.read_text().strip()) / 1000.0
        return None

    def _throttled(self) -> float | None:
        if self._vcgencmd is None:
            return None
        out = subprocess.run([self._vcgencmd, "get_throttled"], capture_output=True,
                             text=True, timeout=5).stdout
        return parse_throttled(out)

    def _key_insecure(self) -> float | None:
        if self.key_path is None or not self.key_path.exists():
            return None
        return 1.0 if self.key_path.stat().st_mode & 0o077 else 0.0

    def _outbox(self, now: float | None) -> dict[str, float | None]:
        if self.db_path is None or not self.db_path.exists():
            return {}
        try:
            return outbox_metrics(self.db_path, now, self.retention_days)
        except sqlite3.Error as exc:
            logger.debug("reading the outbox of %s failed: %s", self.db_path, exc)
            return {}


def parse_throttled(output: str) -> float | None:
    """``throttled=0x50005`` -> 1.0 if a "right now" bit is set, else 0.0; None if unparsable."""
    _, _, value = output.strip().partition("=")
    try:
        bits = int(value, 16)
    except ValueError:
        return None
    return 1.0 if bits & THROTTLE_NOW_BITS else 0.0


def outbox_metrics(db_path: Path, now: float | None = None,
                   retention_days: float | None = None) -> dict[str, float | None]:
    """Outbox depth, oldest unsynced age and (with ``retention_days``) how many days the
    stalest conversation is kept past retention, from the store's plaintext metadata
    (read-only; no key, no text)."""
    now = time.time() if now is None else now
    uri = f"file:{db_path}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=2)
    try:
        depth, oldest = conn.execute(
            "SELECT count(*), min(t.created_at) FROM outbox o JOIN turns t ON t.seq = o.seq"
        ).fetchone()
        stalest = conn.execute(STALEST_CONVERSATION).fetchone()[0]
    finally:
        conn.close()
    metrics = {"outbox_depth": float(depth),
               "oldest_unsynced_age_s": None if oldest is None else max(0.0, now - oldest)}
    if retention_days is not None:
        metrics["retention_overdue_days"] = (
            None if stalest is None else (now - stalest) / DAY - retention_days)
    return metrics


STALEST_CONVERSATION = (
    "SELECT min(last_at) FROM (SELECT COALESCE(MAX(t.created_at), c.started_at) AS last_at "
    "FROM conversations c LEFT JOIN turns t ON t.conversation_id = c.id GROUP BY c.id)"
)
"""Last activity of the conversation idle longest (retention counts from there), Unix s."""
DAY = 86400.0
"""Seconds in a day."""


def clock_synchronised() -> float | None:
    """1.0 if the kernel says NTP has synchronised the clock, 0.0 if not; None if unknown."""
    if time.time() < EARLIEST_PLAUSIBLE_TIME:
        return 0.0
    libc_name = ctypes.util.find_library("c")
    if libc_name is None or not hasattr(ctypes.CDLL(libc_name), "adjtimex"):
        return None
    timex = _Timex()  # modes = 0: read only, changes nothing
    state = ctypes.CDLL(libc_name, use_errno=True).adjtimex(ctypes.byref(timex))
    if state < 0:
        return None
    return 0.0 if state == TIME_ERROR or timex.status & STA_UNSYNC else 1.0


class _Timex(ctypes.Structure):
    """The head of ``struct timex`` (ctypes aligns it per platform), then room for the rest."""

    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long),
                ("status", ctypes.c_int), ("rest", ctypes.c_char * 256)]


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _open_files(proc) -> int:
    try:
        return proc.num_fds()
    except (AttributeError, NotImplementedError):
        return len(proc.open_files())
