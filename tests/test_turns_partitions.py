"""``turns`` partitioned by month (migration 0010): the conversion of a populated table keeps
every row, resends still never duplicate, partitions are made ahead and dropped whole past
retention while the per-family sweep still deletes rows (real PostgreSQL)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from support.database import Database, migrated_database
from support.processes import run_cli

from sync.cloud import partitions, writer
from sync.cloud.messages import Received, parse
from sync.cloud.migrate import migrate, migration_files
from sync.cloud.portal.service import retention_sweep
from sync.protocol import TurnsBatch

NOW = datetime.now(UTC)
SNAPSHOT = ("SELECT device_id, seq, conversation_id, role, text, created_at, action, categories,"
            " batch_id, received_at, pairing_id FROM turns ORDER BY device_id, seq, created_at")


def _schema_before_0010(db: Database) -> None:
    with db.connect() as conn:
        conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY,"
                     " applied_at timestamptz NOT NULL DEFAULT now())")
        for version, sql in migration_files():
            if version < "0010":
                conn.execute(sql)
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))


def _paired_device(conn, device_id: str) -> str:
    conn.execute("INSERT INTO devices (device_id) VALUES (%s)", (device_id,))
    pairing = conn.execute(
        "INSERT INTO pairings (claim_id, device_id, code_digest, public_key, requested_at,"
        " expires_at, status, parent_email, approved_at) VALUES (%s, %s, 'x', 'x', now(),"
        " now(), 'approved', 'p@example.org', now()) RETURNING pairing_id::text",
        (f"claim-{device_id}", device_id)).fetchone()[0]
    conn.execute("UPDATE devices SET pairing_id = %s WHERE device_id = %s", (pairing, device_id))
    if conn.execute("SELECT 1 FROM information_schema.columns WHERE table_name = 'devices'"
                    " AND column_name = 'generation'").fetchone():  # custody (0011) is there
        conn.execute("UPDATE devices SET generation = generation + 1 WHERE device_id = %s",
                     (device_id,))
        conn.execute("UPDATE pairings SET generation = (SELECT generation FROM devices WHERE"
                     " device_id = %s) WHERE pairing_id = %s", (device_id, pairing))
    return pairing


def _old_turns(conn, device_id: str, when: list[datetime]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO turns (device_id, seq, conversation_id, role, text, created_at,"
            " action, categories, batch_id, received_at) VALUES"
            " (%s, %s, 'c1', 'child', %s, %s, 'allow', '{}', 'b1', %s)",
            [(device_id, seq, f"turn {seq}", at, at + timedelta(seconds=1))
             for seq, at in enumerate(when, start=1)])


def _where(conn) -> dict[tuple[str, int], str]:
    rows = conn.execute("SELECT device_id, seq, tableoid::regclass::text FROM turns").fetchall()
    return {(r[0], r[1]): r[2] for r in rows}


def test_migration_0010_converts_a_populated_turns_table_keeping_every_row():
    db = Database()
    try:
        _schema_before_0010(db)
        with db.connect() as conn:
            pairing = _paired_device(conn, "bear-old")
            times = [NOW - timedelta(days=800), NOW - timedelta(days=40),
                     NOW - timedelta(days=1), NOW]
            _old_turns(conn, "bear-old", times)  # stamped with the pairing by 0007's trigger
            conn.execute("INSERT INTO devices (device_id) VALUES ('bear-nofamily')")
            _old_turns(conn, "bear-nofamily", [NOW - timedelta(hours=2)])
            _paired_device(conn, "bear-nofamily-now")  # a family AFTER its turn was kept:
            conn.execute("UPDATE turns SET device_id = 'bear-nofamily-now'"
                         " WHERE device_id = 'bear-nofamily'")  # that turn stays unstamped
            before = conn.execute(SNAPSHOT).fetchall()
            assert len(before) == 5
            assert before[0][0] == "bear-nofamily-now" and before[0][10] is None
            applied = migrate(conn)  # 0010, then every later migration over these rows
            assert applied[0] == "0010_turns_partitioned"
            assert applied == [v for v, _sql in migration_files() if v >= "0010"]
            after = conn.execute(SNAPSHOT).fetchall()
            custody = conn.execute(  # 0011 (custody): the existing pairing is generation 1
                "SELECT p.generation, d.generation FROM pairings p JOIN devices d USING"
                " (device_id) WHERE d.device_id = 'bear-old'").fetchone()
            assert custody == (1, 1)
            assert after == before  # every row, every column (received_at, pairing_id)
            assert {r[10] for r in after if r[0] == "bear-old"} == {uuid.UUID(pairing)}
            where = _where(conn)
            assert where[("bear-old", 1)] == "turns_default"  # older than 13 months
            assert where[("bear-old", 2)] == f"turns_p{times[1]:%Y%m}"
            assert where[("bear-old", 4)] == f"turns_p{NOW:%Y%m}"
            names = {p.name for p in partitions.partitions(conn)}
            assert {f"turns_p{m:%Y%m}" for m in partitions.months_from(NOW, 3)} <= names
            key = conn.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE"
                               " conrelid = 'turns'::regclass AND contype = 'p'").fetchone()[0]
            assert key == "PRIMARY KEY (device_id, seq, created_at)"
            # from 0013 on, ingest stamps turns itself, set-wise: no per-row trigger is left
            assert "0013_ingest_custody" in applied
            assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'turns'::regclass"
                                " AND NOT tgisinternal").fetchone()[0] == 0
            assert migrate(conn) == []
    finally:
        db.drop()


def _batch(device_id: str, batch_id: str, seqs: list[int], at: datetime):
    payload = TurnsBatch.model_validate({"device_id": device_id, "batch_id": batch_id, "turns": [
        {"seq": s, "conversation_id": "c", "role": "child", "text": f"hello {s}",
         "created_at": at.timestamp() + s / 1000, "action": "allow"} for s in seqs]}).to_payload()
    parsed = parse(Received(f"teddy/v1/{device_id}/up/turns", payload, mid=1, qos=1))
    assert parsed.kind == "turns", parsed.reason
    return parsed


def test_resends_are_never_duplicated_in_any_partition_and_a_rewritten_time_is_kept():
    with migrated_database() as db, db.connect() as conn:
        writer.prepare_connection(conn)
        month_ago = NOW - timedelta(days=35)
        batches = [_batch("bear-r", "now", [1, 2, 3], NOW),
                   _batch("bear-r", "old", [4, 5], month_ago),
                   _batch("bear-r", "ancient", [6], NOW - timedelta(days=700))]
        first = writer.write(conn, batches)
        assert (first.inserted, first.duplicates) == (6, 0)
        again = writer.write(conn, batches + batches)  # resent, twice, in one transaction
        assert (again.inserted, again.duplicates) == (0, 12)
        assert len({a.batch_id for _t, a in again.acks if hasattr(a, "batch_id")}) == 3
        rows = conn.execute("SELECT count(*), count(DISTINCT (device_id, seq)) FROM turns"
                            " WHERE device_id = 'bear-r'").fetchone()
        assert rows == (6, 6)
        assert _where(conn)[("bear-r", 6)] == "turns_default"
        # A bear that re-sends a seq with ANOTHER time rewrote its own history: both rows are
        # kept (nothing of that bear is lost; no other bear or family is touched).
        rewritten = writer.write(conn, [_batch("bear-r", "now", [2], NOW + timedelta(hours=1))])
        assert (rewritten.inserted, rewritten.duplicates) == (1, 0)
        assert conn.execute("SELECT count(*) FROM turns WHERE device_id = 'bear-r' AND seq = 2"
                            ).fetchone()[0] == 2


def test_a_month_made_later_takes_its_rows_out_of_the_default_partition():
    with migrated_database() as db, db.connect() as conn:
        writer.prepare_connection(conn)
        long_ago = datetime(NOW.year - 1, NOW.month, 15, tzinfo=UTC)
        writer.write(conn, [_batch("bear-d", "x", [1, 2], long_ago)])
        assert set(_where(conn).values()) == {"turns_default"}
        assert partitions.make_ahead(conn, now=long_ago, months=0) == [f"turns_p{long_ago:%Y%m}"]
        assert set(_where(conn).values()) == {f"turns_p{long_ago:%Y%m}"}
        assert partitions.make_ahead(conn, now=long_ago, months=0) == []  # idempotent
        again = writer.write(conn, [_batch("bear-d", "x", [1, 2], long_ago)])
        assert (again.inserted, again.duplicates) == (0, 2)


def test_retention_drops_whole_months_past_every_retention_and_sweeps_rows_of_the_rest(
        tmp_path):
    with migrated_database() as db, db.connect() as conn:
        writer.prepare_connection(conn)
        months = {"m4": NOW - timedelta(days=120), "m2": NOW - timedelta(days=62),
                  "d10": NOW - timedelta(days=10), "now": NOW}
        for seq, (name, at) in enumerate(months.items(), start=1):
            partitions.make_ahead(conn, now=at, months=0)
            writer.write(conn, [_batch("bear-k", name, [seq], at)])
        family = conn.execute("INSERT INTO families (retention_days) VALUES (7)"
                              " RETURNING family_id").fetchone()[0]
        pairing = _paired_device(conn, "bear-f")
        conn.execute("INSERT INTO family_pairings (pairing_id, family_id) VALUES (%s, %s)",
                      (pairing, family))
        writer.write(conn, [_batch("bear-f", "f", [1], NOW - timedelta(days=10)),
                            _batch("bear-f", "g", [2], NOW - timedelta(days=1))])
        cutoff = partitions.retention_cutoff(conn, default_days=30)
        assert abs((datetime.now(UTC) - cutoff) - timedelta(days=30)) < timedelta(minutes=5)
        expected = {p.name for p in partitions.partitions(conn) if p.end <= cutoff}
        assert f"turns_p{months['m4']:%Y%m}" in expected
        assert f"turns_p{NOW:%Y%m}" not in expected
        env = {"TEDDY_CLOUD__PG_DSN": db.dsn, "TEDDY_STORE__DATA_DIR": str(tmp_path),
               "PATH": "/usr/bin:/bin"}
        out = run_cli("teddy-cloud", "portal", "retention", env=env).stdout
        dropped = set(re.search(r"dropped partitions .*\[(.*)\]", out).group(1).split(", "))
        assert dropped == expected
        left = {p.name for p in partitions.partitions(conn)}
        assert not left & expected
        assert {f"turns_p{m:%Y%m}" for m in partitions.months_from(NOW, 3)} <= left
        kept = {r[0] for r in conn.execute("SELECT batch_id FROM turns").fetchall()}
        # bear-k has no family: 30 days; bear-f's family keeps 7 days (the row sweep)
        assert kept == {"d10", "now", "g"}
        swept = 1 + (f"turns_p{months['m2']:%Y%m}" not in expected)  # f, and m2 if kept
        assert f"deleted {swept} transcript turns" in out
        assert partitions.drop_expired(conn, cutoff) == []
        assert retention_sweep(conn, 30) == 0


@pytest.mark.parametrize("month,count", [(NOW, 3), (datetime(2026, 11, 30, tzinfo=UTC), 3)])
def test_months_from_crosses_the_year(month, count):
    found = partitions.months_from(month, count)
    assert len(found) == count and found[0].day == 1
    assert all(b > a for a, b in zip(found, found[1:], strict=False))
