"""Tell systemd how a service is doing: READY, WATCHDOG pings, STATUS, RELOADING, STOPPING.

This is the ``sd_notify(3)`` protocol, implemented here in a few lines instead of taken from
a package: systemd hands the service a ``NOTIFY_SOCKET`` (a unix datagram socket path, or
an abstract one when it starts with ``@``) and the service sends it newline-separated
``KEY=VALUE`` datagrams. ``sdnotify`` on PyPI does the same but has been unmaintained since
2017, and ``systemd-python`` needs libsystemd headers and a C compiler on the Pi; the
protocol is stable and documented (``man sd_notify``), so a dependency buys nothing.

Shared by the bear (``teddy run``) and the cloud's services (ingest), so it lives beside the
protocol rather than in either.

Outside systemd (no ``NOTIFY_SOCKET``) every call is a quiet no-op, so ``teddy run`` behaves
the same on a laptop. :class:`Watchdog` pings from its own thread at half ``WatchdogSec``
but *only while the main loop keeps calling* :meth:`Watchdog.alive`: a hung loop stops
the pings and systemd restarts the bear.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

logger = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends ``sd_notify`` messages to systemd; a no-op when not run by systemd."""

    def __init__(self, address: str | None, watchdog_interval: float | None = None) -> None:
        self.address = address
        """The notify socket's path (``@`` prefix: abstract namespace); None: disabled."""
        self.watchdog_interval = watchdog_interval
        """systemd's ``WatchdogSec`` for this process, seconds; None: no watchdog."""
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
        """A notifier for the socket and watchdog systemd gave this process (if any)."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        return cls(address, _watchdog_seconds(env))

    @property
    def enabled(self) -> bool:
        """Whether there is a notify socket to talk to."""
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram; True if sent, False if disabled or lost."""
        if self.address is None:
            return False
        payload = "\n".join(assignments).encode()
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.sendto(payload, target)
                return True
            except OSError as exc:
                logger.warning("cannot notify systemd at %s: %s", self.address, exc)
                return False

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd the service is up (``READY=1``), optionally with a status line."""
        fields = ["READY=1"] + ([f"STATUS={status}"] if status else [])
        return self.notify(*fields)

    def reloading(self) -> bool:
        """Tell systemd a config reload has begun; call :meth:`ready` when it is done."""
        return self.notify("RELOADING=1")

    def stopping(self, status: str | None = None) -> bool:
        """Tell systemd the service is shutting down (``STOPPING=1``)."""
        fields = ["STOPPING=1"] + ([f"STATUS={status}"] if status else [])
        return self.notify(*fields)

    def status(self, text: str) -> bool:
        """Set the one-line status ``systemctl status`` shows (never a transcript)."""
        return self.notify(f"STATUS={text.splitlines()[0] if text else ''}")

    def watchdog_ping(self) -> bool:
        """Reset systemd's watchdog timer (``WATCHDOG=1``)."""
        return self.notify("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more time to start or stop (``EXTEND_TIMEOUT_USEC``), seconds."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def close(self) -> None:
        """Close the socket; idempotent."""
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None

    def __enter__(self) -> SystemdNotifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _watchdog_seconds(env: Mapping[str, str]) -> float | None:
    """``WATCHDOG_USEC`` in seconds, if it is meant for this process."""
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        seconds = int(usec) / 1_000_000
    except ValueError:
        logger.warning("ignoring WATCHDOG_USEC=%r: not an integer", usec)
        return None
    return seconds if seconds > 0 else None


class Watchdog:
    """Pings systemd's watchdog from a thread, but only while the main loop is alive.

    The main loop calls :meth:`alive` each time round (cheap: one clock read). The thread
    wakes every ``interval`` seconds (default: half of ``WatchdogSec``) and sends
    ``WATCHDOG=1`` only if :meth:`alive` was called within the last ``max_stall`` seconds
    (default: ``interval``). A loop stuck longer than that stops the pings, and systemd
    kills and restarts the bear one ``WatchdogSec`` later. Before a step that blocks on
    purpose for long (speaking a long story), call ``alive(grace=seconds)``.
    """

    def __init__(
        self, notifier: SystemdNotifier, interval: float | None = None,
        max_stall: float | None = None,
    ) -> None:
        self.notifier = notifier
        """Where the pings go."""
        period = notifier.watchdog_interval
        self.interval = interval if interval is not None else (period / 2 if period else None)
        """Seconds between pings; None: systemd runs no watchdog, so the thread never starts."""
        self.max_stall = max_stall if max_stall is not None else self.interval
        """Longest the main loop may go without :meth:`alive` and still be pinged for, seconds."""
        self.pings = 0
        """Pings sent so far."""
        self.missed = 0
        """Wake-ups that sent no ping because the main loop looked hung."""
        self._deadline = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def alive(self, grace: float | None = None) -> None:
        """The main loop is making progress; ``grace``: it may now block that long, seconds."""
        if self.max_stall is None:
            return
        allowed = self.max_stall if grace is None else max(grace, self.max_stall)
        self._deadline = max(self._deadline, time.monotonic() + allowed)

    def start(self) -> Watchdog:
        """Start the pinging thread (if systemd asked for a watchdog); returns self."""
        if self.interval is None or self._thread is not None:
            return self
        self.alive()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(self.interval,),
                                        name="sd-watchdog", daemon=True)
        self._thread.start()
        logger.info("watchdog pinging every %.1f s while the main loop is alive", self.interval)
        return self

    def _run(self, interval: float) -> None:
        next_at = time.monotonic()
        while True:
            if time.monotonic() <= self._deadline:
                if self.notifier.watchdog_ping():
                    self.pings += 1
            else:
                self.missed += 1
                if self.missed == 1 or self.missed % 10 == 0:
                    logger.error("main loop silent for over %.1f s: not pinging the watchdog",
                                 self.max_stall)
            next_at += interval  # a fixed schedule: late wake-ups do not add up
            if self._stop.wait(max(0.0, next_at - time.monotonic())):
                return

    def stop(self) -> None:
        """Stop pinging; idempotent."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    close = stop

    def __enter__(self) -> Watchdog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
