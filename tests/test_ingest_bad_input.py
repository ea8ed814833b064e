"""Bad input published with ``mosquitto_pub`` is dead-lettered with its reason, one message
at a time, and never stops ingest: the good batch right behind it is committed and acked."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from support.poison import batch_json, dead_letters_of, turn_json
from support.syncing import IngestProcess, assert_exactly_once, bear_settings, filled_store
from support.waiting import wait_until

from sync.device import DeviceSync

pytestmark = pytest.mark.skipif(shutil.which("mosquitto_pub") is None,
                                reason="mosquitto-clients is not installed (scripts/setup --test)")


WRITTEN_AT = 1_700_000_000.0
"""When the turns of the bad batches say they were spoken."""


def _batch(device_id: str, seq: int = 1, **fields: object) -> bytes:
    return batch_json(device_id, turn_json(seq, WRITTEN_AT), **fields)


BAD = [  # (device in the topic, topic kind, payload, a fragment of the reason)
    ("bear-bad-json", "turns", b"{not json", "not JSON"),
    ("bear-bad-version", "turns", _batch("bear-bad-version", v=2), "field v"),
    ("bear-bad-array", "turns", b"[1, 2]", "must be a JSON object"),
    ("bear-bad-size", "turns", b'{"v": 1, "pad": "' + b"x" * 300_000 + b'"}', "over the"),
    ("bear-victim", "turns", _batch("bear-impostor"), "names device 'bear-impostor'"),
    ("bear-bad-seq", "turns", _batch("bear-bad-seq", seq=0), "turns.0.seq"),
    ("bear-bad-status", "status", b'{"v": 1, "state": "sleepy"}', "field state"),
    ("bear-bad-health", "health", json.dumps({"v": 1, "device_id": "bear-other",
                                              "sampled_at": 1.0, "metrics": {}}).encode(),
     "names device 'bear-other'"),
    ("bear-bad-alert", "alerts", b'{"v": 1, "state": "raised"}', "field"),
]


def _publish(port: int, topic: str, payload: bytes) -> None:
    subprocess.run(["mosquitto_pub", "-p", str(port), "-V", "mqttv5", "-q", "1", "-t", topic,
                    "-s"], input=payload, check=True, timeout=20)


def test_bad_input_is_dead_lettered_and_ingest_goes_on(broker, database, env, tmp_path):
    ingest = IngestProcess(env, tmp_path).start()
    try:
        for device, kind, payload, _ in BAD:
            _publish(broker.port, f"teddy/v1/{device}/up/{kind}", payload)
        topics = [f"teddy/v1/{device}/up/{kind}" for device, kind, _, _ in BAD]
        letters = wait_until(
            lambda: len(found := dead_letters_of(database, topics)) == len(BAD) and found, 20,
            lambda: f"every bad message dead-lettered; missing "
                    f"{sorted(set(topics) - set(dead_letters_of(database, topics)))}",
            interval=0.1)
        for device, kind, payload, fragment in BAD:
            reason, size, _kept = letters[f"teddy/v1/{device}/up/{kind}"]
            assert fragment in reason and "\n" not in reason
            assert size == len(payload)
        with database.connect() as conn:
            forged = conn.execute("SELECT count(*) FROM turns WHERE device_id IN"
                                  " ('bear-victim', 'bear-impostor')").fetchone()[0]
        assert forged == 0
        assert ingest.process.poll() is None, "ingest stopped on bad input"

        store = filled_store(tmp_path / "bear", 300)
        try:
            with DeviceSync(bear_settings(broker.port), store, "bear-good", "t") as link:
                link.connect()
                assert link.sync_once(30).turns_acked == 300
        finally:
            store.close()
    finally:
        assert ingest.stop() == 0
    assert_exactly_once(database, "bear-good", tmp_path / "bear", 300)
