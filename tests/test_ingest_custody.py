"""Issue 21, finding 5: turns of a bear no family holds are never stored readable.

Reproduced first against the old ingest (turns of a revoked or never-paired bear were stored
unsealed, with no family; dead letters kept a child's words). Now, with a cloud key, ingest
refuses them with a version-2 receipt that says ``drop`` and the bear shreds them; dead
letters keep metadata only; a development set-up with no key keeps the old behaviour and
says so. Real Mosquitto, PostgreSQL and SQLite stores.
"""

from __future__ import annotations

import json
import logging
import secrets
import time

import pytest
from support.syncing import bear_settings, filled_store, start_ingestor, stop_ingestor

from config.errors import ProtocolError
from config.settings import Settings
from fleetsim.simulation import append_turns
from sync.cloud import family_keys, writer
from sync.cloud.dead_letters import DeadLetters
from sync.cloud.messages import Received, TimeWindow, parse
from sync.cloud.sealing import current_custody
from sync.device import DeviceSync
from sync.protocol import Receipt


def _keyring(tmp_path, create: bool = True) -> family_keys.Keyring:
    settings = Settings(portal={"cloud_key_file": tmp_path / "cloud" / "portal-cloud.key"})
    return family_keys.Keyring(family_keys.wrapper_from_settings(settings, create))


def _pair(conn, device_id: str) -> str:
    """Pair ``device_id`` the way an approved claim does (its current pairing)."""
    conn.execute("INSERT INTO devices (device_id) VALUES (%s) ON CONFLICT DO NOTHING",
                 (device_id,))
    pairing = conn.execute(
        "INSERT INTO pairings (claim_id, device_id, code_digest, public_key, requested_at,"
        " expires_at, status, parent_email, approved_at) VALUES (%s, %s, 'x', 'x', now(),"
        " now(), 'approved', 'p@example.org', now()) RETURNING pairing_id::text",
        (f"claim-{secrets.token_hex(8)}", device_id)).fetchone()[0]
    conn.execute("UPDATE devices SET pairing_id = %s, generation = generation + 1 WHERE"
                 " device_id = %s", (pairing, device_id))
    conn.execute("UPDATE pairings SET generation = (SELECT generation FROM devices WHERE"
                 " device_id = %s) WHERE pairing_id = %s", (device_id, pairing))  # held at g+1
    return pairing


def _revoke(conn, device_id: str) -> None:
    """What ``teddy-cloud fleet unpair`` and a parent's revocation do: custody's release."""
    from sync.cloud import custody

    assert custody.release(conn, device_id, actor="test") is not None


def _rows(database, device_id: str) -> list[tuple]:
    with database.connect() as conn:
        return conn.execute("SELECT seq, text, pairing_id::text FROM turns WHERE device_id = %s"
                            " ORDER BY seq", (device_id,)).fetchall()


def _sync(broker, store, device_id: str):
    with DeviceSync(bear_settings(broker.port), store, device_id, "t") as link:
        link.connect()
        return link.sync_once(30)


def test_a_never_paired_bears_turns_are_refused_and_the_bear_shreds_them(
        broker, database, tmp_path):
    device = f"bear-unheld-{secrets.token_hex(4)}"
    ring = _keyring(tmp_path)
    ingestor, worker = start_ingestor(broker, database, "ingest-unheld", keyring=ring)
    store = filled_store(tmp_path / "bear", 6)
    try:
        report = _sync(broker, store, device)
        assert (report.turns_acked, report.turns_dropped) == (0, 6)
        assert store.outbox_depth() == 0 and store.turns() == []
        assert _rows(database, device) == []  # nothing stored, sealed or not
        assert ingestor.counters.unheld >= 1
    finally:
        store.close()
        stop_ingestor(ingestor, worker)


def test_after_revocation_turns_are_refused_and_earlier_ones_stay_sealed_in_their_family(
        broker, database, tmp_path):
    device = f"bear-revoked-{secrets.token_hex(4)}"
    ring = _keyring(tmp_path)
    with database.connect() as conn:
        pairing = _pair(conn, device)
    ingestor, worker = start_ingestor(broker, database, "ingest-revoked", keyring=ring)
    store = filled_store(tmp_path / "bear", 4)
    try:
        assert _sync(broker, store, device).turns_acked == 4
        sent = {t.seq: t.text for t in store.turns()}
        with database.connect() as conn:
            _revoke(conn, device)
        append_turns(store, store.start_conversation(), 3)
        report = _sync(broker, store, device)
        assert (report.turns_acked, report.turns_dropped) == (0, 3)
        assert store.outbox_depth() == 0 and len(store.turns()) == 4
    finally:
        store.close()
        stop_ingestor(ingestor, worker)
    rows = _rows(database, device)
    assert [r[0] for r in rows] == sorted(sent)
    assert all(r[2] == pairing and r[1].startswith(family_keys.PREFIX) for r in rows)
    with database.connect() as conn:
        assert {r[0]: ring.open(conn, r[1]) for r in rows} == sent


def test_without_any_cloud_key_a_development_setup_keeps_them_and_says_so(
        broker, database, tmp_path, caplog):
    device = f"bear-dev-{secrets.token_hex(4)}"
    ring = _keyring(tmp_path, create=False)  # no key file, none made
    caplog.set_level(logging.WARNING)
    ingestor, worker = start_ingestor(broker, database, "ingest-dev", keyring=ring)
    store = filled_store(tmp_path / "bear", 3)
    try:
        assert _sync(broker, store, device).turns_acked == 3
    finally:
        store.close()
        stop_ingestor(ingestor, worker)
    rows = _rows(database, device)
    assert len(rows) == 3 and not rows[0][1].startswith(family_keys.PREFIX)
    assert {r[2] for r in rows} == {None}
    said = [r for r in caplog.records if "no cloud key" in r.getMessage()]
    assert len(said) == 1  # once, not per batch
    assert not (tmp_path / "cloud" / "portal-cloud.key").exists()


def _turns_payload(device: str, text: str, created_at: float) -> bytes:
    return json.dumps({"v": 1, "batch_id": "b1", "device_id": device, "turns": [
        {"seq": 1, "conversation_id": "c1", "role": "child", "text": text,
         "created_at": created_at, "action": "allow", "categories": []}]}).encode()


def test_dead_letters_keep_no_childs_words_once_a_cloud_key_exists(database, tmp_path):
    device = f"bear-fast-{secrets.token_hex(4)}"
    ring = _keyring(tmp_path)
    dead = DeadLetters(Settings().cloud, ring)
    window = TimeWindow.around(time.time(), 3600.0, 30.0)
    payload = _turns_payload(device, "my secret is under the bed", time.time() + 86400)
    item = parse(Received(f"teddy/v1/{device}/up/turns", payload, 1, 1), window)
    assert item.kind == "invalid" and "future" in (item.reason or "")
    with database.connect() as conn:
        _pair(conn, device)
        conn.execute(writer.STAGING_DDL)
        outcome = writer.write(conn, [item], dead, ring)
        kept = conn.execute("SELECT payload, payload_size, reason, received_at FROM dead_letters"
                            " WHERE device_id = %s", (device,)).fetchall()
    assert outcome.dead_letters == 1
    assert len(kept) == 1
    stored, size, reason, received_at = kept[0]
    assert bytes(stored) == b"" and size == len(payload) and "future" in reason
    assert received_at is not None and b"secret" not in bytes(stored) and "secret" not in reason


def test_custody_is_read_for_every_bear_of_a_batch_in_one_query(database):
    held, revoked, never = (f"bear-c{i}-{secrets.token_hex(3)}" for i in range(3))
    with database.connect() as conn:
        pairing = _pair(conn, held)
        _pair(conn, revoked)
        _revoke(conn, revoked)
        conn.execute("INSERT INTO devices (device_id) VALUES (%s)", (never,))
        custody = current_custody(conn, [held, revoked, never, "bear-unknown"])
    assert set(custody) == {held} and custody[held].pairing_id == pairing


def test_a_drop_receipt_is_version_2_refused_and_final():
    ok = Receipt(v=2, kind="turns", ids=["b1"], refused="no family", drop=True)
    assert Receipt.from_payload(ok.to_payload()) == ok
    for bad in ({"v": 1, "drop": True, "refused": "x"}, {"v": 2, "drop": True, "refused": ""},
                {"v": 2, "drop": True, "refused": "x", "retry_after": 5},
                {"v": 2, "refused": "x"}, {"v": 3, "drop": True, "refused": "x"}):
        payload = json.dumps({"kind": "turns", "ids": ["b1"], **bad}).encode()
        with pytest.raises(ProtocolError):
            Receipt.from_payload(payload)
    assert json.loads(Receipt(kind="turns", ids=["b1"]).to_payload())["v"] == 1


def test_a_batch_sealed_at_once_has_a_nonce_per_text_and_opens_as_sealed_one_by_one():
    """``seal_texts`` (ingest seals a bear's batch at once) is ``seal_text`` per text: the
    same format, a fresh nonce each (equal texts seal differently), each opened by the
    same key and bound to its key id."""
    import base64
    import os

    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key, key_id = os.urandom(32), "0c9d2f4e-1111-2222-3333-444455556666"
    texts = ["grandma won't wake up", "grandma won't wake up", "", "ünïcödé 🐻"]
    sealed = family_keys.seal_texts(AESGCM(key), key_id, texts)
    single = family_keys.seal_text(AESGCM(key), key_id, texts[0])
    raws = []
    for value in [*sealed, single]:
        assert value.startswith(f"{family_keys.PREFIX}{key_id}.")
        raws.append(base64.b64decode(value.rsplit(".", 1)[1]))
    nonces = {raw[:family_keys.NONCE_BYTES] for raw in raws}
    assert len(nonces) == len(raws)  # never a nonce twice
    opened = [AESGCM(key).decrypt(raw[:12], raw[12:], key_id.encode()).decode()
              for raw in raws]
    assert opened == [*texts, texts[0]]
    with pytest.raises(InvalidTag):  # bound to its key id
        AESGCM(key).decrypt(raws[0][:12], raws[0][12:], b"another-key-id")
