"""Nothing lost, nothing twice: sync under broker, ingest, PostgreSQL and bear failures.

Every test runs real processes against a Mosquitto it starts and the machine's PostgreSQL,
injects its fault while turns are flowing, and ends with :func:`assert_exactly_once`.
"""

from __future__ import annotations

import signal
import time
import urllib.request

import psutil
import pytest
from support.processes import start_cli
from support.syncing import (
    BackgroundSync,
    IngestProcess,
    assert_exactly_once,
    bear_settings,
    cloud_count,
    filled_store,
    wait_for_count,
)

from config.settings import Settings
from sync.cloud.ingest import Ingestor


def test_broker_sigkilled_three_times_during_10000_turns(broker, database, env, tmp_path):
    ingest = IngestProcess(env, tmp_path).start()
    data_dir, device = tmp_path / "bear", "bear-broker-kills"
    store = filled_store(data_dir, 10_000)
    sync = BackgroundSync(bear_settings(broker.port), store, device).start()
    try:
        for progress in (1_000, 4_000, 7_000):
            wait_for_count(database, device, progress)
            broker.kill()
            time.sleep(0.5)
            broker.start()  # same port and persistence dir; sessions since startup are lost
        report = sync.join()
    finally:
        store.close()
        ingest.stop()
    assert report.resends >= 1  # batches in flight at a kill were sent again
    assert sync.link.link.connects >= 4
    assert_exactly_once(database, device, data_dir, 10_000)


def test_ingest_sigkilled_mid_batch_and_restarted(broker, database, env, tmp_path):
    ingest = IngestProcess(env, tmp_path).start()
    data_dir, device = tmp_path / "bear", "bear-ingest-kill"
    store = filled_store(data_dir, 10_000)
    sync = BackgroundSync(bear_settings(broker.port), store, device).start()
    try:
        wait_for_count(database, device, 2_000)
        ingest.kill()
        stalled = cloud_count(database, device)
        time.sleep(1.0)
        assert cloud_count(database, device) == stalled  # nobody ingests while it is down
        ingest.start()
        report = sync.join()
    finally:
        store.close()
        ingest.stop()
    assert report.resends >= 1
    assert_exactly_once(database, device, data_dir, 10_000)


def _metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name))


def test_two_ingestors_share_the_load_and_one_is_killed(broker, database, env, tmp_path):
    from support.brokers import free_port

    ports = free_port(), free_port()
    first = IngestProcess(env, tmp_path, "ingest-a", metrics_port=ports[0]).start()
    second = IngestProcess(env, tmp_path, "ingest-b", metrics_port=ports[1]).start()
    data_dir, device = tmp_path / "bear", "bear-two-ingestors"
    store = filled_store(data_dir, 10_000)
    sync = BackgroundSync(bear_settings(broker.port), store, device).start()
    try:
        wait_for_count(database, device, 3_000)
        shares = [_metric(port, "teddy_ingest_turn_rows_total") for port in ports]
        first.kill()
        report = sync.join()
        shares_after = _metric(ports[1], "teddy_ingest_turn_rows_total")
    finally:
        store.close()
        first.stop()
        second.stop()
    assert all(share > 0 for share in shares), f"the shared subscription split {shares}"
    assert shares_after > shares[1]  # the survivor took over
    assert report.turns_acked == 10_000
    assert_exactly_once(database, device, data_dir, 10_000)


def _terminate_busy_backends(conn) -> int:
    """pg_terminate_backend every other session on the test database that is inside a
    transaction right now; returns how many."""
    rows = conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND backend_type = 'client backend'"
        " AND (state LIKE 'idle in transaction%%'"
        "      OR query LIKE 'COPY turns%%' OR query LIKE 'INSERT INTO turns%%')"
    ).fetchall()
    return len(rows)


def test_postgresql_backends_terminated_mid_transaction(broker, database, tmp_path):
    import threading

    settings = Settings(mqtt={"port": broker.port},
                        cloud={"pg_dsn": database.dsn, "client_id": "ingest-pg-kill"})
    data_dir, device = tmp_path / "bear", "bear-pg-terminate"
    store = filled_store(data_dir, 10_000)
    with Ingestor(settings) as ingestor:
        worker = threading.Thread(target=ingestor.run)
        worker.start()
        time.sleep(0.5)
        sync = BackgroundSync(bear_settings(broker.port), store, device).start()
        terminated = 0
        try:
            with database.connect() as conn:
                deadline = time.monotonic() + 30
                while terminated < 5 and time.monotonic() < deadline:
                    terminated += _terminate_busy_backends(conn)
                    time.sleep(0.002)
            report = sync.join()
        finally:
            store.close()
            ingestor.stop()
            worker.join(20)
    assert terminated >= 5, f"only {terminated} backends were caught inside a transaction"
    assert ingestor.counters.db_retries >= 1
    assert report.turns_acked == 10_000
    assert_exactly_once(database, device, data_dir, 10_000)


def test_bear_sigkilled_mid_sync_and_restarted(broker, database, env, data_dir, tmp_path):
    device = "bear-sigkilled"
    filled_store(data_dir, 10_000).close()
    ingest = IngestProcess(env, tmp_path).start()
    env = dict(env, TEDDY_DEVICE__ID=device, TEDDY_SYNC__BACKOFF_MIN="0.2")
    try:
        bear = start_cli("teddy", "sync", "--once", "--timeout", "120", env=env,
                         log=tmp_path / "bear.1.log")
        wait_for_count(database, device, 3_000)
        bear.send_signal(signal.SIGKILL)
        bear.wait(10)
        assert cloud_count(database, device) < 10_000, "the sync finished before the kill"
        again = start_cli("teddy", "sync", "--once", "--timeout", "120", env=env,
                          log=tmp_path / "bear.2.log")
        assert again.wait(130) == 0, (tmp_path / "bear.2.log").read_text()
    finally:
        ingest.stop()
    assert "resent" in (tmp_path / "bear.2.log").read_text()
    assert_exactly_once(database, device, data_dir, 10_000)


@pytest.mark.slow
def test_offline_bear_drains_50000_turns_with_flat_memory(broker, database, env, data_dir,
                                                          tmp_path):
    device = "bear-long-offline"
    filled_store(data_dir, 50_000).close()
    ingest = IngestProcess(env, tmp_path).start()
    env = dict(env, TEDDY_DEVICE__ID=device)
    try:
        bear = start_cli("teddy", "sync", "--once", "--timeout", "170", env=env,
                         log=tmp_path / "bear.log")
        watched = psutil.Process(bear.pid)
        wait_for_count(database, device, 5_000)
        baseline = watched.memory_info().rss
        peak, samples = baseline, 0
        while bear.poll() is None:
            try:
                peak = max(peak, watched.memory_info().rss)
                samples += 1
            except psutil.NoSuchProcess:
                break
            time.sleep(0.1)
        assert bear.wait(10) == 0, (tmp_path / "bear.log").read_text()
    finally:
        ingest.stop()
    growth = (peak - baseline) / 2**20
    assert samples >= 10
    assert growth < 16, f"the bear's memory grew {growth:.1f} MiB while draining 45,000 turns"
    assert_exactly_once(database, device, data_dir, 50_000)


@pytest.fixture(autouse=True)
def _fast_resends(env: dict[str, str]) -> None:
    env["TEDDY_SYNC__ACK_TIMEOUT"] = "2"
