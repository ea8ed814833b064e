"""Simulated bears that send turns: each the real thing but for the voice.

Every simulated bear has its own encrypted SQLite store (the real ``ConversationStore``,
with consent) and runs the real :class:`sync.device.DeviceSync` over its own MQTT
connection. A driver appends turns at the offered rate through the store API; the report
says what the bears saw acked, what PostgreSQL holds, and the append-to-ack latency.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import SecretStr

from agent.safety.verdict import Action, Verdict
from agent.store import ConversationStore, Scope, TurnToKeep
from config.settings import Settings, StoreSettings
from sync.device import DeviceSync

logger = logging.getLogger(__name__)

FIRMWARE = "simulated"
"""What simulated bears report as their firmware."""
_ALLOW = Verdict(action=Action.ALLOW, categories=(), redacted="")


def device_name(prefix: str, index: int) -> str:
    """The device id of bear number ``index`` of a fleet: ``PREFIX-00042``."""
    return f"{prefix}-{index:05d}"


def open_bear_store(data_dir: Path, synchronous: Literal["FULL", "NORMAL"] = "NORMAL"
                    ) -> ConversationStore:
    """A bear's store in ``data_dir`` with keep+sync consent granted (made if missing)."""
    settings = StoreSettings(data_dir=data_dir, synchronous=synchronous)
    store = ConversationStore.open(settings, create=True)
    if store.consent() is None:
        store.grant_consent("simulated parent", [Scope.KEEP, Scope.SYNC], source="simulate")
    return store


def append_turns(store: ConversationStore, conversation_id: str, count: int,
                 chunk: int = 500, text_bytes: int = 40) -> list[int]:
    """Append ``count`` turns (child and bear in turn) in chunks; returns their seqs."""
    seqs: list[int] = []
    filler = "la " * (text_bytes // 3 + 1)
    while len(seqs) < count:
        size = min(chunk, count - len(seqs))
        turns = [TurnToKeep("child" if (len(seqs) + i) % 2 == 0 else "bear",
                            f"turn {len(seqs) + i} {filler}"[:text_bytes], _ALLOW)
                 for i in range(size)]
        seqs.extend(store.append(conversation_id, turns))
    return seqs


@dataclass
class Latencies:
    """Append-to-ack latencies, seconds; thread-safe appends."""

    values: list[float] = field(default_factory=list)
    """Every measured latency, seconds."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, value: float) -> None:
        """Record one latency, seconds."""
        with self._lock:
            self.values.append(value)

    def percentile(self, p: float) -> float | None:
        """The ``p``-th percentile (0-100), seconds; None without data."""
        with self._lock:
            ordered = sorted(self.values)
        if not ordered:
            return None
        index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
        return ordered[index]


class SimulatedBear:
    """One bear: its own store and the real sync client. A context manager."""

    def __init__(self, settings: Settings, device_id: str, workdir: Path,
                 latencies: Latencies) -> None:
        self.device_id = device_id
        """Its device id."""
        self.store = open_bear_store(workdir / device_id)
        """Its encrypted store."""
        self.conversation_id = self.store.start_conversation()
        """The conversation its turns go to."""
        self.acked = 0
        """Turns the cloud acked."""
        self._appended_at: dict[int, float] = {}
        self._latencies = latencies
        self._lock = threading.Lock()
        self.sync = DeviceSync(settings, self.store, device_id, FIRMWARE, on_ack=self._on_ack)
        """Its sync client."""
        self._thread: threading.Thread | None = None

    def append(self, count: int) -> None:
        """Keep ``count`` turns now and tell the sync client."""
        now = time.monotonic()
        seqs = append_turns(self.store, self.conversation_id, count)
        with self._lock:
            for seq in seqs:
                self._appended_at[seq] = now
        self.sync.wake()

    def _on_ack(self, ranges: list[tuple[int, int]]) -> None:
        now = time.monotonic()
        with self._lock:
            for first, last in ranges:
                for seq in range(first, last + 1):
                    at = self._appended_at.pop(seq, None)
                    if at is not None:
                        self.acked += 1
                        self._latencies.add(now - at)

    def start(self, stop: threading.Event) -> None:
        """Run the sync client in a thread until ``stop``."""
        self._thread = threading.Thread(target=self.sync.run, args=(stop,),
                                        name=f"sim-{self.device_id}", daemon=True)
        self._thread.start()

    def pending(self) -> int:
        """Turns appended and not yet acked."""
        with self._lock:
            return len(self._appended_at)

    def close(self) -> None:
        """Stop syncing and close the store. Idempotent."""
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.sync.close()
        self.store.close()

    def __enter__(self) -> SimulatedBear:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class SimulationReport:
    """What a simulation did."""

    devices: int = 0
    """Simulated bears started."""
    max_connected: int = 0
    """Most bears connected to the broker at once."""
    senders: int = 0
    """Bears that sent turns from their real stores (the others only held a connection)."""
    bears_acked: int = 0
    """Bears that received the cloud's ack for everything they sent."""
    drops: int = 0
    """Connections of idle bears lost while the turns flowed."""
    idle_cpu_seconds: float = 0.0
    """CPU seconds the idle bears' processes spent, connecting included."""
    idle_peak_mb: float = 0.0
    """Peak resident memory of the idle bears' processes together, MB."""
    turns_appended: int = 0
    """Turns kept in the bears' stores."""
    turns_acked: int = 0
    """Turns the cloud acked back to the bears."""
    left_unacked: int = 0
    """Turns still waiting for an ack when the simulation ended."""
    seconds: float = 0.0
    """From the first append to the last ack (or the timeout), seconds."""
    p50: float | None = None
    """Median append-to-ack latency, seconds."""
    p99: float | None = None
    """99th-percentile append-to-ack latency, seconds."""
    in_database: int | None = None
    """Rows of these bears in PostgreSQL (None if not counted)."""
    distinct_in_database: int | None = None
    """Distinct ``(device_id, seq)`` of these bears in PostgreSQL."""

    @property
    def rate(self) -> float:
        """Acked turns per second."""
        return self.turns_acked / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        """A short human-readable report."""
        ms = lambda v: "n/a" if v is None else f"{v * 1000:.1f} ms"  # noqa: E731
        out = [f"bears: {self.devices} started, {self.max_connected} connected at once",
               f"senders: {self.senders} sent turns from their stores; {self.bears_acked} bears "
               "got every ack back",
               f"turns: {self.turns_appended} appended, {self.turns_acked} acked, "
               f"{self.left_unacked} unacked",
               f"rate: {self.rate:.0f} turns/s over {self.seconds:.1f} s",
               f"append-to-ack latency: p50 {ms(self.p50)}, p99 {ms(self.p99)}"]
        if self.in_database is not None:
            out.append(f"postgresql: {self.in_database} rows, {self.distinct_in_database} "
                       "distinct (device_id, seq)")
        return out


class Simulation:
    """A fleet of simulated bears against the configured broker."""

    def __init__(self, settings: Settings, workdir: Path, devices: int,
                 prefix: str = "sim", first_index: int = 0,
                 password: Callable[[str], str] | None = None) -> None:
        self._settings = settings
        self._password = password
        self._first = first_index
        self._workdir = workdir
        self._prefix = prefix
        self._count = devices
        self.latencies = Latencies()
        """Append-to-ack latencies of every bear."""
        self.bears: list[SimulatedBear] = []
        """The bears, once :meth:`start` made them."""
        self._stop = threading.Event()

    def start(self, connect_timeout: float = 60.0) -> int:
        """Make every bear and connect it; returns how many are connected within the timeout."""
        from concurrent.futures import ThreadPoolExecutor

        def make(index: int) -> SimulatedBear:
            device_id = device_name(self._prefix, self._first + index)
            return SimulatedBear(self._bear_settings(device_id), device_id, self._workdir,
                                 self.latencies)

        with ThreadPoolExecutor(max_workers=16) as pool:  # store creation waits on fsync
            self.bears.extend(pool.map(make, range(self._count)))
        for bear in self.bears:
            bear.start(self._stop)
        deadline = time.monotonic() + connect_timeout
        while time.monotonic() < deadline and self.connected() < len(self.bears):
            time.sleep(0.1)
        return self.connected()

    def _bear_settings(self, device_id: str) -> Settings:
        """The settings, logged in as ``device_id`` itself when a password function is set."""
        if self._password is None:
            return self._settings
        mqtt = self._settings.mqtt.model_copy(update={
            "username": device_id, "password": SecretStr(self._password(device_id))})
        return self._settings.model_copy(update={"mqtt": mqtt})

    def connected(self) -> int:
        """Bears connected to the broker right now."""
        return sum(bear.sync.link.connected for bear in self.bears)

    def drive(self, turns: int, rate: float | None, timeout: float) -> SimulationReport:
        """Append ``turns`` per bear (at ``rate`` turns/s overall, or at once) and wait for
        every ack or the timeout."""
        report = SimulationReport(devices=len(self.bears), max_connected=self.connected(),
                                  senders=len(self.bears))
        started = time.monotonic()
        if rate is None:
            for bear in self.bears:
                bear.append(turns)
        else:
            self._paced(turns, rate)
        report.turns_appended = turns * len(self.bears)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(b.pending() for b in self.bears):
            report.max_connected = max(report.max_connected, self.connected())
            time.sleep(0.05)
        report.seconds = time.monotonic() - started
        report.turns_acked = sum(b.acked for b in self.bears)
        report.left_unacked = sum(b.pending() for b in self.bears)
        report.bears_acked = sum(1 for b in self.bears if b.acked and not b.pending())
        report.p50 = self.latencies.percentile(50)
        report.p99 = self.latencies.percentile(99)
        return report

    def _paced(self, turns: int, rate: float) -> None:
        total = turns * len(self.bears)
        started = time.monotonic()
        for index in range(total):
            due = started + index / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.bears[index % len(self.bears)].append(1)

    def close(self) -> None:
        """Stop every bear. Idempotent."""
        self._stop.set()
        for bear in self.bears:
            bear.sync.wake()
        for bear in self.bears:
            bear.close()
        self.bears.clear()

    def __enter__(self) -> Simulation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
