"""Fleets over processes: senders (real stores, ``DeviceSync``) and idle bears, one report.

Senders run :class:`fleetsim.simulation.Simulation`, at most :data:`BEARS_PER_PROCESS` to a
process; idle bears run :class:`fleetsim.idle.IdleFleet`, up to :data:`IDLE_PER_PROCESS`
to a process on one network thread. Every process connects its bears, then all meet at a
barrier ("connected at once"); then the senders append their turns and wait for the acks
while the idle bears keep their connections, and the parent merges the reports.
"""

from __future__ import annotations

import logging
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.settings import Settings
from fleetsim.simulation import Latencies, Simulation, SimulationReport, device_name

logger = logging.getLogger(__name__)

BEARS_PER_PROCESS = 100
"""Senders per process. paho's own network thread waits on its sockets with ``select()``,
which cannot watch descriptors past 1024, and each sender holds about seven (SQLite files,
its socket, paho's wake-up pair); so one process hosts at most this many senders."""
IDLE_PER_PROCESS = 1500
"""Idle bears per process: one descriptor each, watched with epoll (no 1024 limit)."""


def plain_settings(settings: Settings) -> Settings:
    """``settings`` as a plain :class:`Settings`, which a worker process can unpickle
    (``load_settings`` with a config file makes a subclass local to that function)."""
    if type(settings) is Settings:
        return settings
    return Settings.model_construct(_fields_set=settings.model_fields_set,
                                    **{name: getattr(settings, name)
                                       for name in Settings.model_fields})


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit; returns the new soft limit.
    Child processes (brokers, workers) inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def _sender_worker(settings: Settings, workdir: Path, count: int, prefix: str, first: int,
                   turns: int, rate: float | None, timeout: float,
                   password: Callable[[str], str] | None, barrier: Any, results: Any) -> None:
    with Simulation(settings, workdir, count, prefix, first, password) as simulation:
        connected = simulation.start(connect_timeout=600)
        barrier.wait(900)  # every process connected: this is "at once"
        at_once = simulation.connected()
        report = simulation.drive(turns, rate, timeout)
        report.max_connected = max(report.max_connected, at_once, connected)
        unsynced = sum(1 for bear in simulation.bears if bear.store.outbox_depth())
        results.put(("senders", report, simulation.latencies.values, unsynced))


def _idle_worker(brokers: list[Settings], device_ids: list[str],
                 password: Callable[[str], str], connect_timeout: float, barrier: Any,
                 done: Any, results: Any) -> None:
    from fleetsim.idle import IdleFleet

    raise_fd_limit()
    fleet = IdleFleet()
    for index, broker in enumerate(brokers):
        fleet.add(broker.mqtt, device_ids[index::len(brokers)], password)
    stop = threading.Event()
    network = threading.Thread(target=fleet.serve, args=(stop,), name="idle-bears")
    network.start()
    deadline = time.monotonic() + connect_timeout
    while time.monotonic() < deadline and not fleet.ready():
        time.sleep(0.2)
    try:
        barrier.wait(900)
        fleet.mark()
        at_once = fleet.report()
        done.wait(3600)
        at_end = fleet.report()
    finally:
        stop.set()
        network.join(60)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report = SimulationReport(devices=at_once.devices,
                              max_connected=min(at_once.connected, at_end.connected),
                              bears_acked=at_end.probes_acked, drops=at_end.drops,
                              idle_cpu_seconds=usage.ru_utime + usage.ru_stime,
                              idle_peak_mb=usage.ru_maxrss / 1024)
    results.put(("idle", report, [], 0))


@dataclass
class FleetResult:
    """What a fleet over several brokers did."""

    report: SimulationReport
    """Merged report of every process."""
    bears_with_unsynced_outbox: int
    """Senders whose outbox still held turns at the end."""


def run_fleet(settings: Settings, workdir: Path, devices: int, turns: int,
              rate: float | None = None, timeout: float = 300.0,
              prefix: str = "sim") -> SimulationReport:
    """Run ``devices`` senders on the configured broker over as many processes as they need;
    at ``rate`` turns/s over the whole fleet (or all at once). One merged report."""
    return run_spread_fleet([settings], workdir, devices, turns, timeout, prefix,
                            rate=rate).report


def run_spread_fleet(brokers: list[Settings], workdir: Path, devices: int, turns: int,
                     timeout: float, prefix: str, password: Callable[[str], str] | None = None,
                     senders: int | None = None, rate: float | None = None) -> FleetResult:
    """``devices`` bears dealt round ``brokers``: the first ``senders`` (default: all) append
    ``turns`` each from their real stores once every process has connected; the rest are idle
    bears holding a connection. With ``password`` (a picklable function of the device id)
    every bear logs in as itself, which idle bears need."""
    import multiprocessing

    senders = devices if senders is None else min(senders, devices)
    if senders < devices and password is None:
        raise ValueError("idle bears log in as themselves: pass password=")
    brokers = [plain_settings(broker) for broker in brokers]
    context = multiprocessing.get_context("spawn")
    sender_groups = [(first, min(BEARS_PER_PROCESS, senders - first))
                     for first in range(0, senders, BEARS_PER_PROCESS)]
    idle_ids = [device_name(prefix, index) for index in range(senders, devices)]
    idle_groups = [idle_ids[first:first + IDLE_PER_PROCESS]
                   for first in range(0, len(idle_ids), IDLE_PER_PROCESS)]
    barrier = context.Barrier(len(sender_groups) + len(idle_groups))
    results, done = context.Queue(), context.Event()
    share = None if rate is None else rate / max(senders, 1)
    workers = [context.Process(target=_sender_worker, daemon=True, args=(
        brokers[index % len(brokers)], workdir, count, prefix, first, turns,
        None if share is None else share * count, timeout, password, barrier, results))
        for index, (first, count) in enumerate(sender_groups)]
    workers += [context.Process(target=_idle_worker, daemon=True, args=(
        brokers, group, password, 600.0, barrier, done, results)) for group in idle_groups]
    for worker in workers:
        worker.start()
    try:
        return _collect(results, done, len(sender_groups), len(idle_groups), timeout)
    finally:
        done.set()
        for worker in workers:
            worker.join(60)
            if worker.is_alive():
                worker.kill()


def _collect(results: Any, done: Any, sender_processes: int, idle_processes: int,
             timeout: float) -> FleetResult:
    merged, latencies, unsynced = SimulationReport(), Latencies(), 0
    idle_parts: list[SimulationReport] = []
    for received in range(sender_processes + idle_processes):
        if received == sender_processes:
            done.set()  # every sender finished: the idle bears report their connections
        kind, report, values, left = results.get(timeout=timeout + 1200)
        if kind == "idle":
            idle_parts.append(report)
            continue
        _merge(merged, report)
        latencies.values.extend(values)
        unsynced += left
    for part in idle_parts:
        merged.devices += part.devices
        merged.max_connected += part.max_connected
        merged.bears_acked += part.bears_acked
        merged.drops += part.drops
        merged.idle_cpu_seconds += part.idle_cpu_seconds
        merged.idle_peak_mb += part.idle_peak_mb
    merged.p50, merged.p99 = latencies.percentile(50), latencies.percentile(99)
    return FleetResult(merged, unsynced)


def _merge(total: SimulationReport, part: SimulationReport) -> None:
    total.devices += part.devices
    total.senders += part.senders
    total.bears_acked += part.bears_acked
    total.max_connected += part.max_connected
    total.turns_appended += part.turns_appended
    total.turns_acked += part.turns_acked
    total.left_unacked += part.left_unacked
    total.seconds = max(total.seconds, part.seconds)


def count_in_database(settings: Settings, prefix: str, report: SimulationReport) -> None:
    """Fill ``in_database`` and ``distinct_in_database`` from PostgreSQL (``cloud.pg_dsn``)."""
    from sync.cloud import db

    with db.connect(settings.cloud) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (device_id, seq)) FROM turns"
            " WHERE device_id LIKE %s", (f"{prefix}-%",)).fetchone()
    report.in_database, report.distinct_in_database = row
