"""sd_notify: messages reach a real unix datagram socket bound by the test, as systemd's would."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from systemd_support import FakeSystemd

from sync.systemd_notify import SystemdNotifier, Watchdog


@pytest.fixture
def systemd(tmp_path: Path):
    fake = FakeSystemd(str(tmp_path / "notify.sock"))
    yield fake
    fake.close()


def wait_until(condition, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_messages_reach_the_notify_socket(systemd: FakeSystemd) -> None:
    with SystemdNotifier.from_environment({"NOTIFY_SOCKET": systemd.address}) as notifier:
        assert notifier.enabled
        assert notifier.ready("listening")
        assert notifier.status("3 turns\nsecond line is dropped")
        assert notifier.reloading()
        assert notifier.stopping()
        assert notifier.extend_timeout(2.5)
    assert wait_until(lambda: len(systemd.messages) == 5)
    texts = [text for _, text in systemd.messages]
    assert texts == ["READY=1\nSTATUS=listening", "STATUS=3 turns", "RELOADING=1",
                     "STOPPING=1", "EXTEND_TIMEOUT_USEC=2500000"]


def test_abstract_socket_address_is_supported() -> None:
    fake = FakeSystemd(f"@teddy-test-{os.getpid()}-{time.monotonic_ns()}")
    try:
        assert SystemdNotifier(fake.address).watchdog_ping()
        assert wait_until(lambda: fake.times_of("WATCHDOG=1"))
    finally:
        fake.close()


def test_without_systemd_every_call_is_a_quiet_no_op() -> None:
    notifier = SystemdNotifier.from_environment({})
    assert not notifier.enabled
    assert notifier.ready() is False and notifier.watchdog_ping() is False
    watchdog = Watchdog(notifier).start()
    assert watchdog.interval is None and watchdog._thread is None
    watchdog.stop()


def test_a_vanished_socket_is_logged_not_raised(tmp_path: Path, caplog) -> None:
    notifier = SystemdNotifier(str(tmp_path / "gone.sock"))
    assert notifier.ready() is False
    assert "cannot notify systemd" in caplog.text


def test_watchdog_interval_comes_from_watchdog_usec_for_this_pid_only() -> None:
    mine = SystemdNotifier.from_environment(
        {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    )
    assert mine.watchdog_interval == 30.0
    assert Watchdog(mine).interval == 15.0
    other = SystemdNotifier.from_environment({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval is None
    assert SystemdNotifier.from_environment({"WATCHDOG_USEC": "junk"}).watchdog_interval is None


def test_watchdog_pings_twice_per_period_while_alive_and_stops_when_the_loop_hangs(
    systemd: FakeSystemd,
) -> None:
    watchdog_sec = 0.6
    notifier = SystemdNotifier.from_environment(
        {"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": str(int(watchdog_sec * 1e6))}
    )
    hang = threading.Event()
    done = threading.Event()

    def main_loop() -> None:  # a loop that does its work in 50 ms steps, until it hangs
        while not done.is_set():
            if not hang.is_set():
                watchdog.alive()
            time.sleep(0.05)

    watchdog = Watchdog(notifier)
    loop = threading.Thread(target=main_loop)
    with watchdog:
        loop.start()
        time.sleep(3 * watchdog_sec)
        healthy = systemd.times_of("WATCHDOG=1")
        hang.set()
        hung_at = time.monotonic()
        time.sleep(3 * watchdog_sec)
        done.set()
        loop.join()
    pings = systemd.times_of("WATCHDOG=1")
    print(f"pings while alive: {len(healthy)} in {3 * watchdog_sec:.1f} s; "
          f"after the hang: {len([t for t in pings if t > hung_at])}")
    assert len(healthy) >= 6  # at least twice per WatchdogSec, over three periods
    gaps = [b - a for a, b in zip(healthy, healthy[1:], strict=False)]
    assert max(gaps) < watchdog_sec  # never a full WatchdogSec without a ping
    late = [t for t in pings if t > hung_at + watchdog.max_stall + 0.1]
    assert late == []  # a hung loop stops the pings, so systemd would restart the bear
    assert watchdog.missed >= 3


def test_grace_keeps_pinging_through_a_long_blocking_step(systemd: FakeSystemd) -> None:
    notifier = SystemdNotifier(systemd.address, watchdog_interval=0.4)
    with Watchdog(notifier) as watchdog:
        watchdog.alive(grace=1.2)  # e.g. about to speak a long story
        time.sleep(1.0)
    assert len(systemd.times_of("WATCHDOG=1")) >= 4
    assert watchdog.missed == 0
