"""Recovery drill: a private PostgreSQL cluster takes turns from a running ingest, is backed
up (pgBackRest, WAL archiving), takes more, is destroyed, and is restored with
``teddy-cloud backup restore --to TIME`` to a chosen moment. Exactly the turns committed
before that moment are back; ingest (which kept running) resumes by itself and a bear that
synced while the database was gone gets every turn in exactly once. RTO and RPO are printed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.pg_cluster import ClusterDatabase, PrivateCluster, running_cluster
from support.processes import run_cli
from support.syncing import (
    BackgroundSync,
    IngestProcess,
    assert_exactly_once,
    bear_settings,
    filled_store,
)
from support.waiting import wait_until

TURNS = 150


@pytest.fixture
def cluster():
    with running_cluster() as cluster:
        yield cluster


def _sync(broker, tmp_path: Path, device: str) -> None:
    """A bear with TURNS turns syncs them all (acked after commit) and stops."""
    store = filled_store(tmp_path / device, TURNS)
    try:
        report = BackgroundSync(bear_settings(broker.port), store, device).start().join()
    finally:
        store.close()
    assert report.turns_acked == TURNS


def _rows(cluster: PrivateCluster) -> dict[str, int]:
    return dict(cluster.sql("SELECT device_id, count(*) FROM turns GROUP BY device_id"))


def test_restore_to_a_moment_brings_back_exactly_the_turns_before_it(broker, cluster, env,
                                                                     tmp_path):
    env = dict(env, TEDDY_CLOUD__PG_DSN=cluster.dsn, **cluster.backup_env())
    run_cli("teddy-cloud", "migrate", env=env)
    run_cli("teddy-cloud", "backup", "init", env=env)
    ingest = IngestProcess(env, tmp_path).start()
    try:
        _sync(broker, tmp_path, "bear-a")
        taken = run_cli("teddy-cloud", "backup", "take", "--type", "full", env=env)
        assert "backup " in taken.stdout and "F (full)" in taken.stdout, taken.stdout
        run_cli("teddy-cloud", "backup", "check", env=env)
        listed = run_cli("teddy-cloud", "backup", "list", env=env).stdout
        assert "full" in listed
        _sync(broker, tmp_path, "bear-b")
        (moment,) = cluster.sql("SELECT clock_timestamp()")[0]
        time.sleep(1.0)
        _sync(broker, tmp_path, "bear-c")  # after the moment: restoring to it drops these
        (c_done,) = cluster.sql("SELECT clock_timestamp()")[0]
        wait_until(lambda: (cluster.sql("SELECT last_archived_time FROM pg_stat_archiver")[0][0]
                            or c_done) > c_done, 30, "bear-c's WAL to be archived")
        (last_archived,) = cluster.sql("SELECT last_archived_time FROM pg_stat_archiver")[0]
        (destroyed_at,) = cluster.sql("SELECT clock_timestamp()")[0]
        cluster.destroy()

        # while the database is gone a bear keeps syncing: nothing is acked, it resends
        store_d = filled_store(tmp_path / "bear-d", TURNS)
        sync_d = BackgroundSync(bear_settings(broker.port), store_d, "bear-d").start()
        time.sleep(2.0)
        started = time.monotonic()
        restored = run_cli("teddy-cloud", "backup", "restore", "--to", moment.isoformat(),
                           env=env, timeout=300)
        assert "restored to" in restored.stdout
        cluster.start()  # replays the archived WAL up to the moment, then promotes
        cluster.wait_primary()
        restore_s = time.monotonic() - started
        rows = _rows(cluster)
        assert cluster.sql("SELECT kind, ok FROM backup_runs") == [("full", True)]
        assert (rows.get("bear-a"), rows.get("bear-b"), rows.get("bear-c")) == (
            TURNS, TURNS, None), rows
        try:
            report_d = sync_d.join()
        finally:
            store_d.close()
        resumed_s = time.monotonic() - started
    finally:
        ingest.stop()
    assert report_d.turns_acked == TURNS and report_d.resends >= 1
    assert_exactly_once(ClusterDatabase(cluster), "bear-d", tmp_path / "bear-d", TURNS)
    listed = run_cli("teddy-cloud", "backup", "list", "--json", env=env).stdout
    assert listed.count('"kind": "full"') == 1
    rpo_s = (destroyed_at - last_archived).total_seconds()
    print(f"\nrecovery drill: RTO {restore_s:.1f} s to a promoted database, {resumed_s:.1f} s "
          f"until the bear that synced during the outage was fully acked; RPO (WAL not yet "
          f"archived at the disaster) {max(rpo_s, 0.0):.1f} s with archive_timeout = 1 s; "
          f"{TURNS} turns committed after the chosen moment are gone by design")


def test_bad_backup_input_is_one_clear_line(env, tmp_path):
    naive = run_cli("teddy-cloud", "backup", "restore", "--to", "2026-01-31T09:30:00", env=env,
                    check=False)
    assert naive.returncode != 0 and "has no time zone" in naive.stderr
    garbled = run_cli("teddy-cloud", "backup", "restore", "--to", "yesterday", env=env,
                      check=False)
    assert garbled.returncode != 0 and "is not an ISO time" in garbled.stderr
    missing = run_cli("teddy-cloud", "backup", "list", env=dict(
        env, TEDDY_BACKUP__CONFIG_FILE=str(tmp_path / "nope.conf"), TEDDY_BACKUP__USER=""),
        check=False)
    assert missing.returncode != 0 and "pgbackrest info failed" in missing.stderr
    for result in (naive, garbled, missing):
        assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
