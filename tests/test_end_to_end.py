"""The whole way once: `teddy chat` -> encrypted store -> MQTT -> PostgreSQL -> ack."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import paho.mqtt.client as mqtt
from support.processes import run_cli
from support.waiting import wait_until

LINES = ["hello teddy", "tell me a joke please", "what can you do"]


def _chat(env: dict[str, str], lines: list[str]) -> list[str]:
    result = run_cli("teddy", "chat", env=env, stdin="\n".join(lines) + "\n")
    replies = result.stdout.splitlines()
    assert len(replies) == len(lines), result.stdout
    assert all(reply.strip() for reply in replies)
    return replies


def _cloud_turns(database, device_id: str) -> list[tuple]:
    with database.connect() as conn:
        return conn.execute(
            "SELECT seq, role, text FROM turns WHERE device_id = %s ORDER BY seq", (device_id,)
        ).fetchall()


def _local_rows(data_dir: Path) -> tuple[list[tuple], int]:
    with sqlite3.connect(data_dir / "teddy.db") as conn:
        turns = conn.execute("SELECT seq, role, synced_at FROM turns ORDER BY seq").fetchall()
        outbox = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    return turns, outbox


def test_chat_sync_ingest_ack_end_to_end(env, data_dir, database, ingest):
    env["TEDDY_DEVICE__ID"] = "bear-e2e-one"
    run_cli("teddy", "consent", "grant", "--parent", "Mum", env=env)
    _chat(env, LINES)

    synced = run_cli("teddy", "sync", "--once", env=env)
    assert "synced 6 turns" in synced.stdout

    rows = _cloud_turns(database, "bear-e2e-one")
    assert [role for _, role, _ in rows] == ["child", "bear"] * 3
    assert [text for _, role, text in rows if role == "child"] == LINES
    local, outbox = _local_rows(data_dir)
    assert len(local) == 6 and all(synced_at is not None for _, _, synced_at in local)
    assert outbox == 0

    again = run_cli("teddy", "sync", "--once", env=env)
    assert "nothing to sync" in again.stdout
    assert len(_cloud_turns(database, "bear-e2e-one")) == 6


def test_resent_batch_is_not_duplicated(env, data_dir, database, ingest):
    """A batch whose ack was lost is sent again with the same id and stored once."""
    env["TEDDY_DEVICE__ID"] = "bear-e2e-resend"
    run_cli("teddy", "consent", "grant", "--parent", "Dad", env=env)
    _chat(env, LINES[:2])
    run_cli("teddy", "sync", "--once", env=env)
    # Pretend the ack never arrived: put the rows back in the outbox under their old batch.
    with sqlite3.connect(data_dir / "teddy.db") as conn:
        conn.execute("INSERT INTO outbox (seq, batch_id) SELECT seq, 'lost-ack' FROM turns")
    result = run_cli("teddy", "sync", "--once", env=env)
    assert "synced 4 turns" in result.stdout and "1 resent" in result.stdout
    assert len(_cloud_turns(database, "bear-e2e-resend")) == 4


def test_without_consent_nothing_is_kept(env, data_dir, broker):
    replies = _chat(env, LINES)
    assert len(replies) == 3
    assert not data_dir.exists() or not any(data_dir.iterdir())
    result = run_cli("teddy", "sync", "--once", env=env)
    assert "nothing to sync" in result.stdout


def test_revoked_consent_stops_keeping(env, data_dir):
    run_cli("teddy", "consent", "grant", "--parent", "Mum", env=env)
    _chat(env, LINES[:1])
    run_cli("teddy", "consent", "revoke", env=env)
    _chat(env, LINES)
    stats = json.loads(run_cli("teddy", "store", "stats", env=env).stdout)
    assert stats["turns"] == 2


def test_malformed_payload_is_dead_lettered_and_ingest_goes_on(env, database, broker, ingest):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    bad = client.publish("teddy/v1/bear-bad/up/turns", b"{not json", qos=1)
    bad.wait_for_publish(5)
    client.loop_stop()
    client.disconnect()

    def reasons_of_bad() -> list[str]:
        with database.connect() as conn:
            return [r[0] for r in conn.execute(
                "SELECT reason FROM dead_letters WHERE topic = 'teddy/v1/bear-bad/up/turns'")]

    reasons = wait_until(reasons_of_bad, 15, "the bad batch dead-lettered", interval=0.1)
    assert reasons and "not JSON" in reasons[0]
    assert ingest.poll() is None, "the ingestor stopped"

    env["TEDDY_DEVICE__ID"] = "bear-after-bad"
    run_cli("teddy", "consent", "grant", "--parent", "Mum", env=env)
    _chat(env, LINES[:1])
    assert "synced 2 turns" in run_cli("teddy", "sync", "--once", env=env).stdout
    assert len(_cloud_turns(database, "bear-after-bad")) == 2


def test_store_file_holds_no_plaintext(env, data_dir):
    run_cli("teddy", "consent", "grant", "--parent", "Mum", env=env)
    replies = _chat(env, LINES)
    raw = b"".join(p.read_bytes() for p in data_dir.glob("teddy.db*"))
    for text in LINES + replies:
        assert text.encode() not in raw
    dump = "\n".join(sqlite3.connect(data_dir / "teddy.db").iterdump())
    for text in LINES + replies:
        assert text not in dump
    assert (data_dir / "teddy.key").stat().st_mode & 0o777 == 0o600
