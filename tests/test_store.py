"""The encrypted store: sealing, row binding, the outbox, and the WAL."""

from __future__ import annotations

import os
import sqlite3
import time

import pytest

from agent.safety.verdict import Action, Verdict
from agent.store import ConversationStore, Scope, TurnToKeep
from config.errors import ConsentRequiredError, DecryptionError, KeyFileError
from config.settings import load_settings


def _verdict(text: str) -> Verdict:
    return Verdict(Action.ALLOW, (), text)


def _exchange(store, conversation_id, child="I like dinosaurs", bear="Me too!"):
    return store.append(conversation_id, [TurnToKeep("child", child, _verdict(child)),
                                          TurnToKeep("bear", bear, _verdict(bear))])


def test_turns_round_trip_and_plaintext_never_reaches_the_file(store):
    conversation = store.start_conversation()
    _exchange(store, conversation, child="my secret word is pumpernickel")
    # the WAL is live (the connection is open): search both files
    raw = b"".join(p.read_bytes() for p in store.path.parent.glob("teddy.db*"))
    assert b"pumpernickel" not in raw
    assert [t.text for t in store.turns(conversation)] == ["my secret word is pumpernickel",
                                                            "Me too!"]


def test_ciphertext_swapped_between_rows_fails_to_decrypt(store):
    conversation = store.start_conversation()
    first, second = _exchange(store, conversation)
    conn = sqlite3.connect(store.path)
    a, b = (conn.execute("SELECT text_sealed FROM turns WHERE seq = ?", (s,)).fetchone()[0]
            for s in (first, second))
    conn.execute("UPDATE turns SET text_sealed = ? WHERE seq = ?", (b, first))
    conn.execute("UPDATE turns SET text_sealed = ? WHERE seq = ?", (a, second))
    conn.commit()
    with pytest.raises(DecryptionError, match="failed authentication"):
        store.turns(conversation)


def test_turn_and_outbox_rows_are_written_together(store):
    conversation = store.start_conversation()
    seqs = _exchange(store, conversation)
    assert store.outbox_depth() == 2
    batch_id, turns = store.outbox_batch(10)
    assert [t.seq for t in turns] == seqs
    assert store.outbox_batch(10, batch_id)[1] == turns  # a resend re-reads the same batch
    assert store.mark_synced([(seqs[0], seqs[-1])]) == 2
    assert store.outbox_depth() == 0


def test_keep_only_without_sync_scope_writes_no_outbox(store):
    store.grant_consent("Mum", [Scope.KEEP])
    _exchange(store, store.start_conversation())
    assert store.outbox_depth() == 0


def test_revoked_consent_refuses_to_keep(store):
    conversation = store.start_conversation()
    store.revoke_consent()
    with pytest.raises(ConsentRequiredError, match="teddy consent grant"):
        _exchange(store, conversation)


def test_key_file_readable_by_others_is_refused(tmp_path):
    settings = load_settings(store={"data_dir": tmp_path})
    ConversationStore.open(settings.store, create=True).close()
    os.chmod(settings.store.key_path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        ConversationStore.open(settings.store)


def test_wrong_key_fails_clearly(tmp_path):
    settings = load_settings(store={"data_dir": tmp_path})
    with ConversationStore.open(settings.store, create=True) as store:
        store.grant_consent("Mum", [Scope.KEEP])
        conversation = store.start_conversation()
        _exchange(store, conversation)
    settings.store.key_path.unlink()
    other = load_settings(store={"data_dir": tmp_path / "other"})
    ConversationStore.open(other.store, create=True).close()
    os.replace(other.store.key_path, settings.store.key_path)
    with ConversationStore.open(settings.store) as store, pytest.raises(DecryptionError):
        store.turns(conversation)


def test_a_new_store_after_a_factory_reset_numbers_turns_above_the_old_ones(tmp_path):
    """The cloud keys turns on (device_id, seq) and a reset keeps the device id: a new store
    must never reuse a seq, or its turns would be dropped as duplicates."""
    settings = load_settings(store={"data_dir": tmp_path})
    with ConversationStore.open(settings.store, create=True) as store:
        store.grant_consent("Mum", [Scope.KEEP, Scope.SYNC])
        before = _exchange(store, store.start_conversation())
    for leftover in tmp_path.iterdir():  # what a factory reset leaves: nothing of the store
        leftover.unlink()
    time.sleep(0.01)  # a reset and a new pairing take far longer than this
    with ConversationStore.open(settings.store, create=True) as store:
        store.grant_consent("Mum", [Scope.KEEP, Scope.SYNC])
        after = _exchange(store, store.start_conversation())
    assert min(after) > max(before)
    assert after[1] == after[0] + 1
