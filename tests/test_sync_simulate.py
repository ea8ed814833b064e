"""``teddy-cloud simulate``: real sync clients with their own stores, and what arrived."""

from __future__ import annotations

from support.processes import run_cli
from support.syncing import IngestProcess


def test_simulate_reports_every_turn_arrived_once(broker, database, env, tmp_path):
    ingest = IngestProcess(env, tmp_path).start()
    env = dict(env, TEDDY_SYNC__BATCH_MAX_AGE="0.1")
    try:
        result = run_cli("teddy-cloud", "simulate", "--devices", "6", "--turns", "15",
                         "--rate", "300", "--prefix", "simtest", "--workdir",
                         str(tmp_path / "fleet"), env=env, timeout=120)
    finally:
        ingest.stop()
    out = result.stdout
    assert "bears: 6 started, 6 connected at once" in out
    assert "turns: 90 appended, 90 acked, 0 unacked" in out
    assert "postgresql: 90 rows, 90 distinct (device_id, seq)" in out
    assert "p99" in out and "n/a" not in out
    with database.connect() as conn:
        devices = conn.execute("SELECT count(*) FROM devices WHERE device_id LIKE 'simtest-%'"
                               " AND firmware = 'simulated'").fetchone()[0]
    assert devices == 6
