"""Past one broker: 3 edge Mosquittos hold the bears' connections and bridge (QoS 1,
persistent session) to a core Mosquitto where ``teddy-cloud ingest`` reads. Acks flow back
through the bridges. One edge is SIGKILLed and restarted mid-run: every turn of every bear
arrives exactly once, and every bear's outbox drains.

40 bears per edge here (the issue's 1,000 per edge is a benchmark on a machine of its own:
``scripts/bench-sync``, section f). The test brokers are anonymous (as tests/support.py's
Mosquitto is today); the shipped ``config/examples/mosquitto-edge.conf`` bridges with an edge
account and TLS."""

from __future__ import annotations

import subprocess
import threading
import time

from bridge_support import start_edges
from support import VENV_BIN, until
from sync_helpers import IngestProcess, cloud_count

EDGES = 3
BEARS_PER_EDGE = 40
TURNS = 10


def _simulate(env: dict[str, str], port: int, prefix: str, workdir, out: dict) -> None:
    env = dict(env, TEDDY_MQTT__PORT=str(port), TEDDY_SYNC__BATCH_MAX_AGE="0.2",
               TEDDY_SYNC__ACK_TIMEOUT="3", TEDDY_SYNC__BACKOFF_MAX="2")
    out[prefix] = subprocess.run(
        [str(VENV_BIN / "teddy-cloud"), "simulate", "--devices", str(BEARS_PER_EDGE),
         "--turns", str(TURNS), "--rate", "150", "--prefix", prefix, "--timeout", "150",
         "--workdir", str(workdir / prefix)], env=env, capture_output=True, text=True,
        timeout=240)


def _prefix_count(database, prefix: str) -> int:
    with database.connect() as conn:
        return conn.execute("SELECT count(*) FROM turns WHERE device_id LIKE %s",
                            (f"{prefix}-%",)).fetchone()[0]


def test_three_bridged_edges_one_sigkilled_every_turn_exactly_once(broker, database, env,
                                                                   tmp_path):
    edges = start_edges(tmp_path, broker.port, EDGES)  # broker: the core
    ingest = IngestProcess(env, tmp_path).start()  # on the core
    results: dict = {}
    try:
        threads = [threading.Thread(target=_simulate, args=(
            env, edge.port, f"edge{n}", tmp_path, results)) for n, edge in enumerate(edges)]
        for thread in threads:
            thread.start()
        victim = edges[1]
        assert until(lambda: _prefix_count(database, "edge1") >= BEARS_PER_EDGE * TURNS // 4,
                     timeout=120), "edge1's bears never got going"
        victim.kill()
        at_kill = _prefix_count(database, "edge1")
        time.sleep(1.0)
        victim.start()  # same port and persistence; the bears reconnect and resend
        for thread in threads:
            thread.join(260)
    finally:
        ingest.stop()
        for edge in edges:
            edge.kill()
    assert at_kill < BEARS_PER_EDGE * TURNS  # the edge died mid-run
    for n in range(EDGES):
        result = results[f"edge{n}"]
        assert result.returncode == 0, result.stdout + result.stderr
        total = BEARS_PER_EDGE * TURNS
        assert f"turns: {total} appended, {total} acked, 0 unacked" in result.stdout, \
            result.stdout
        assert f"postgresql: {total} rows, {total} distinct (device_id, seq)" in result.stdout
        assert f"bears: {BEARS_PER_EDGE} started, {BEARS_PER_EDGE} connected" in result.stdout
    for n in range(EDGES):
        for bear in range(BEARS_PER_EDGE):
            device = f"edge{n}-{bear:05d}"
            assert cloud_count(database, device) == TURNS, device
