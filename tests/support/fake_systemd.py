"""A stand-in for systemd's end of ``NOTIFY_SOCKET``: a real unix datagram socket."""

from __future__ import annotations

import socket
import threading
import time

from support.waiting import wait_until


class FakeSystemd:
    """Binds ``address`` (``@`` prefix: abstract) and records every datagram with its time."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def times_of(self, line: str) -> list[float]:
        """When each message holding ``line`` (e.g. ``WATCHDOG=1``) arrived."""
        return [at for at, text in self.messages if line in text.split("\n")]

    def wait_for(self, line: str, timeout: float) -> float:
        """When ``line`` first arrived; raises TimeoutError if it does not within ``timeout``."""
        seen = wait_until(lambda: self.times_of(line), timeout,
                          lambda: f"{line}; got {[m for _, m in self.messages]}")
        return seen[0]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
