"""A real PostgreSQL restart mid-ingest: ``pg_ctl stop -m immediate`` (a crash: no
checkpoint, every backend killed) and start again, twice, on a private cluster while a bear
streams turns through a running ``teddy-cloud ingest``: 0 lost, 0 duplicated."""

from __future__ import annotations

import time

import pytest
from support.pg_cluster import ClusterDatabase, running_cluster
from support.processes import run_cli
from support.syncing import (
    BackgroundSync,
    IngestProcess,
    assert_exactly_once,
    bear_settings,
    filled_store,
    wait_for_count,
)

TURNS = 4000


def database_rows(cluster, device: str) -> int:
    return cluster.sql(f"SELECT count(*) FROM turns WHERE device_id = '{device}'")[0][0]


@pytest.fixture
def cluster():
    with running_cluster(archive=False) as cluster:
        yield cluster


def test_postgresql_crash_restarted_twice_mid_ingest_loses_and_doubles_nothing(
        broker, cluster, env, tmp_path):
    env = dict(env, TEDDY_CLOUD__PG_DSN=cluster.dsn)
    database = ClusterDatabase(cluster)
    run_cli("teddy-cloud", "migrate", env=env)
    ingest = IngestProcess(env, tmp_path).start()
    data_dir, device = tmp_path / "bear", "bear-pg-restart"
    store = filled_store(data_dir, TURNS)
    sync = BackgroundSync(bear_settings(broker.port), store, device).start()
    outages, boots = [], [cluster.sql("SELECT pg_postmaster_start_time()")[0][0]]
    try:
        for progress in (800, 2400):
            wait_for_count(database, device, progress)
            assert database_rows(cluster, device) < TURNS  # the bear is still streaming
            started = time.monotonic()
            cluster.stop("immediate")
            time.sleep(1.0)
            cluster.start()  # crash recovery from the WAL
            cluster.wait_primary()
            outages.append(time.monotonic() - started)
            boots.append(cluster.sql("SELECT pg_postmaster_start_time()")[0][0])
            assert ingest.process.poll() is None, "ingest exited on the restart"
        report = sync.join()
    finally:
        store.close()
        ingest.stop()
    assert len(set(boots)) == 3  # two real server restarts
    assert ingest.process.returncode == 0, ingest.log.read_text()[-2000:]
    assert report.turns_acked == TURNS
    assert_exactly_once(database, device, data_dir, TURNS)
    print(f"\npostgresql restarts: outages {', '.join(f'{s:.1f} s' for s in outages)}; "
          f"{TURNS} turns, 0 lost, 0 duplicated")
