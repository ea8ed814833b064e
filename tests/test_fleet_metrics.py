"""The fleet gauges read real PostgreSQL rows: bears by state and firmware, open alerts,
deliveries by state, wellbeing alerts no parent heard of, and the last backups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from support.database import migrated_database
from support.waiting import wait_until

from sync.cloud.fleet_metrics import FleetCollector


@pytest.fixture
def pg():
    with migrated_database() as db:
        yield db


def _samples(collector: FleetCollector) -> dict[tuple, float]:
    found = {}
    for family in collector.collect():
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _alert(conn, device: str, kind: str, raised: datetime, cleared: bool = False) -> int:
    return conn.execute(
        "INSERT INTO alerts (device_id, kind, severity, message, raised_at, cleared_at) "
        "VALUES (%s, %s, 'high', 'm', %s, %s) RETURNING id",
        (device, kind, raised, raised if cleared else None)).fetchone()[0]


def test_gauges_count_what_the_database_holds(pg):
    now = datetime.now(UTC)
    with pg.connect() as conn:
        conn.execute("INSERT INTO devices (device_id, online, firmware) VALUES "
                     "('b1', true, '1.2.0'), ('b2', true, '1.2.0'), ('b3', true, '1.3.0'), "
                     "('b4', false, '1.2.0')")
        heard = _alert(conn, "b1", "wellbeing.escalation", now - timedelta(minutes=20))
        _alert(conn, "b2", "wellbeing.escalation", now - timedelta(minutes=20))  # unheard
        _alert(conn, "b3", "wellbeing.escalation", now - timedelta(minutes=1))  # too new
        _alert(conn, "b4", "system.disk_low", now, cleared=True)
        failed = _alert(conn, "b4", "system.disk_low", now)
        for alert_id, channel, status in ((heard, "parents", "delivered"),
                                          (failed, "ops", "failed"), (failed, "sms", "pending")):
            conn.execute("INSERT INTO notification_deliveries (alert_id, event, channel, "
                         "dedupe_key, status) VALUES (%s, 'raised', %s, 'k', %s)",
                         (alert_id, channel, status))
        conn.execute("INSERT INTO backup_runs (kind, started_at, finished_at, ok) VALUES "
                     "('full', %s, %s, true), ('diff', %s, %s, false)",
                     (now - timedelta(hours=30), now - timedelta(hours=29), now, now))
    collector = FleetCollector(pg.dsn, cache_s=0)
    try:
        got = _samples(collector)
    finally:
        collector.close()
    assert got[("teddy_fleet_db_up", ())] == 1
    assert got[("teddy_fleet_bears", (("state", "online"),))] == 3
    assert got[("teddy_fleet_bears", (("state", "offline"),))] == 1
    assert got[("teddy_fleet_bears_online", (("firmware", "1.2.0"),))] == 2
    assert got[("teddy_fleet_bears_online", (("firmware", "1.3.0"),))] == 1
    assert got[("teddy_fleet_open_alerts", (("kind", "wellbeing.escalation"),
                                            ("severity", "high")))] == 3
    assert got[("teddy_fleet_open_alerts", (("kind", "system.disk_low"),
                                            ("severity", "high")))] == 1
    assert got[("teddy_notify_wellbeing_undelivered", ())] == 1
    assert got[("teddy_notify_deliveries_total", (("channel", "ops"), ("status", "failed")))] == 1
    assert got[("teddy_notify_deliveries_pending", (("channel", "sms"),))] == 1
    last_ok = got[("teddy_backup_last_success_timestamp_seconds", ())]
    assert abs(last_ok - (now - timedelta(hours=29)).timestamp()) < 1
    assert got[("teddy_backup_last_failure_timestamp_seconds", ())] > last_ok


def test_an_unreachable_database_says_so_and_repeats_no_old_values():
    collector = FleetCollector("postgresql://postgres@127.0.0.1:1/nothing", cache_s=0)
    got = _samples(collector)
    collector.close()
    assert got == {("teddy_fleet_db_up", ()): 0.0}


def test_wal_archiving_failing_then_mended_is_seen_in_pg_stat_archiver():
    """A real cluster whose archive_command fails (pgBackRest's stanza not created yet):
    the failure count and time move past the last success; once the stanza exists the
    next segment is archived and the last success is newer than the last failure again —
    the two figures the TeddyWalArchivingFailing rule compares."""
    from support.pg_cluster import running_cluster

    from sync.cloud.migrate import migrate

    with running_cluster(archive_timeout=60) as cluster:
        import psycopg

        with psycopg.connect(cluster.dsn, autocommit=True) as conn:
            migrate(conn)
        collector = FleetCollector(cluster.dsn, cache_s=0)
        try:
            first = _samples(collector)
            assert first[("teddy_pg_archive_mode_on", ())] == 1.0
            assert first[("teddy_pg_wal_archived_total", ())] == 0.0
            cluster.sql("CREATE TABLE t AS SELECT 1 AS x")
            cluster.sql("SELECT pg_switch_wal()")
            failing = wait_until(
                lambda: (s := _samples(collector))[("teddy_pg_wal_archive_failed_total", ())]
                > 0 and s, 60, "a failed archive_command in pg_stat_archiver")
            assert (failing[("teddy_pg_wal_last_failed_timestamp_seconds", ())]
                    > failing[("teddy_pg_wal_last_archived_timestamp_seconds", ())])
            cluster._run("pgbackrest", f"--config={cluster.backrest_conf}",
                         f"--stanza={cluster.stanza}", "stanza-create")
            mended = wait_until(
                lambda: (s := _samples(collector))[("teddy_pg_wal_archived_total", ())]
                > 0 and s, 120, "the segment archived once the stanza exists")
            assert (mended[("teddy_pg_wal_last_archived_timestamp_seconds", ())]
                    >= mended[("teddy_pg_wal_last_failed_timestamp_seconds", ())])
        finally:
            collector.close()
