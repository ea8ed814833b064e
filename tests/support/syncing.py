"""Helpers of the sync, ingest and fault tests: bears with full outboxes, ingest processes,
and the one check every fault test ends with (every turn in PostgreSQL exactly once, every
outbox fully acked)."""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

from agent.store import ConversationStore
from config.settings import Settings, StoreSettings
from fleetsim.simulation import append_turns, open_bear_store
from support.processes import start_cli, wait_for_log
from support.waiting import wait_until
from sync.cloud.ingest import Ingestor
from sync.device import DeviceSync, SyncReport


def filled_store(data_dir: Path, turns: int) -> ConversationStore:
    """A bear's store with consent and ``turns`` turns waiting in its outbox."""
    store = open_bear_store(data_dir)
    append_turns(store, store.start_conversation(), turns)
    return store


def bear_settings(port: int, **sync: float) -> Settings:
    """Settings of an in-process bear: fast acks, resends and reconnects for tests."""
    values = {"ack_timeout": 2.0, "backoff_min": 0.2, "backoff_max": 2.0, "once_timeout": 120}
    values.update(sync)
    return Settings(mqtt={"port": port}, sync=values)


class IngestProcess:
    """``teddy-cloud ingest`` as a real subprocess that tests kill and restart."""

    def __init__(self, env: dict[str, str], logdir: Path, name: str = "ingest",
                 **settings: str) -> None:
        self.env = dict(env)
        self.env.update({f"TEDDY_CLOUD__{k.upper()}": str(v) for k, v in settings.items()})
        self.env.setdefault("TEDDY_CLOUD__CLIENT_ID", name)
        self.logdir = logdir
        self.name = name
        self.starts = 0
        self.process: subprocess.Popen | None = None

    @property
    def log(self) -> Path:
        """Log of the current (last) start."""
        return self.logdir / f"{self.name}.{self.starts}.log"

    def start(self) -> IngestProcess:
        """Start and wait until it subscribed."""
        self.starts += 1
        self.process = start_cli("teddy-cloud", "--log-level", "INFO", "ingest",
                                 env=self.env, log=self.log)
        wait_for_log(self.log, "ingesting")
        return self

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, whatever it held uncommitted is lost with it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> int | None:
        """SIGTERM and wait; returns the exit code."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            return self.process.wait(30)
        return None if self.process is None else self.process.returncode


class BackgroundSync:
    """An in-process bear running ``sync_once`` in a thread."""

    def __init__(self, settings: Settings, store: ConversationStore, device_id: str,
                 timeout: float = 120.0) -> None:
        self.link = DeviceSync(settings, store, device_id, "test")
        self.report: SyncReport | None = None
        self.error: BaseException | None = None
        self._timeout = timeout
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.report = self.link.sync_once(self._timeout)
        except BaseException as exc:  # handed to the test through join()
            self.error = exc

    def start(self) -> BackgroundSync:
        """Connect and start syncing."""
        self.link.connect()
        self._thread.start()
        return self

    def join(self) -> SyncReport:
        """Wait for the sync to finish; re-raises its error."""
        self._thread.join(self._timeout + 10)
        self.link.close()
        if self.error is not None:
            raise self.error
        assert self.report is not None, "sync did not finish"
        return self.report


def cloud_count(database, device_id: str) -> int:
    """Turn rows of one bear in PostgreSQL."""
    with database.connect() as conn:
        return conn.execute("SELECT count(*) FROM turns WHERE device_id = %s",
                            (device_id,)).fetchone()[0]


def wait_for_count(database, device_id: str, at_least: int, timeout: float = 60.0) -> int:
    """Block until PostgreSQL holds ``at_least`` rows of the bear; returns the count."""
    def arrived() -> int:
        count = cloud_count(database, device_id)
        return count if count >= at_least else 0

    return wait_until(arrived, timeout, lambda: f"{at_least} turns of {device_id} (only "
                                                f"{cloud_count(database, device_id)} arrived)")


def assert_exactly_once(database, device_id: str, data_dir: Path, turns: int) -> None:
    """PostgreSQL holds every committed turn of the bear once, with its text; the bear's
    outbox is empty and every turn is marked synced."""
    store = ConversationStore.open(StoreSettings(data_dir=data_dir))
    try:
        local = {t.seq: (t.role, t.text) for t in store.turns()}
        assert store.outbox_depth() == 0, f"{store.outbox_depth()} turns still unacked"
        assert all(t.synced_at is not None for t in store.turns())
    finally:
        store.close()
    with database.connect() as conn:
        rows = conn.execute("SELECT seq, role, text FROM turns WHERE device_id = %s",
                            (device_id,)).fetchall()
    assert len(local) == turns
    assert len(rows) == turns, f"PostgreSQL holds {len(rows)} rows for {turns} turns"
    assert {seq: (role, text) for seq, role, text in rows} == local


def start_ingestor(broker, database, client_id: str, keyring=None,
                   **cloud) -> tuple[Ingestor, threading.Thread]:
    """An in-process :class:`Ingestor` on ``broker`` and ``database``, running in a thread,
    once it has subscribed; ``keyring``: family keys to seal with; ``cloud``: more ``cloud``
    settings. Stop it with :func:`stop_ingestor`."""
    settings = Settings(mqtt={"port": broker.port},
                        cloud={"pg_dsn": database.dsn, "client_id": client_id, **cloud})
    ingestor = Ingestor(settings, keyring=keyring)
    worker = threading.Thread(target=ingestor.run)
    worker.start()
    wait_until(lambda: ingestor.subscribed, 15, "ingest to subscribe")
    return ingestor, worker


def stop_ingestor(ingestor: Ingestor, worker: threading.Thread) -> None:
    """Stop what :func:`start_ingestor` started."""
    ingestor.stop()
    worker.join(15)
    ingestor.close()
