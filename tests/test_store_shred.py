"""Deletion that is real, retention, and consent: what is deleted cannot be recovered."""

from __future__ import annotations

import base64
import shutil
import sqlite3
import time

import pytest

from agent.alerts import AlertSink
from agent.safety.verdict import Action, Verdict
from agent.store import ConversationStore, Scope, TurnToKeep, crypto, sealing
from agent.store.errors import WrongKeyError
from agent.store.retention import DAY, SWEEP_EVERY
from agent.store.verify import verify
from config.errors import ConsentRequiredError, DecryptionError, StoreError
from config.settings import load_settings

SECRET = "my secret word is pumpernickel"


def _turn(role: str, text: str) -> TurnToKeep:
    return TurnToKeep(role, text, Verdict(Action.ALLOW, (), text))


def _exchange(store, conversation, child="I like dinosaurs", bear="Me too!"):
    return store.append(conversation, [_turn("child", child), _turn("bear", bear)])


class Clock:
    """A clock the test moves: Unix time, seconds."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


def _files(store) -> bytes:
    """Everything SQLite keeps on disk for the store: the database, its WAL, its shm."""
    return b"".join(p.read_bytes() for p in sorted(store.path.parent.glob(store.path.name + "*")))


def _rows(store) -> list[tuple]:
    raw = sqlite3.connect(store.path)
    try:
        return raw.execute("SELECT seq, conversation_id, role, text_sealed, verdict FROM turns"
                           ).fetchall()
    finally:
        raw.close()


def _wrapped_keys(store) -> dict[str, bytes]:
    raw = sqlite3.connect(store.path)
    try:
        return dict(raw.execute("SELECT id, wrapped_key FROM conversations").fetchall())
    finally:
        raw.close()


def _kek(store_settings) -> bytes:
    return base64.b64decode(store_settings.store.key_path.read_bytes().strip())


def test_deleted_conversation_is_unrecoverable(store_settings, store, tmp_path):
    doomed, kept = store.start_conversation(), store.start_conversation()
    for _ in range(30):  # enough rows to span several pages
        _exchange(store, doomed, child=SECRET, bear="I will keep it safe")
        _exchange(store, kept, child="tell me about rockets")
    store._checkpoint()  # some of the doomed rows sit in the database file, some in the WAL
    _exchange(store, doomed, child=SECRET)
    doomed_rows = [r for r in _rows(store) if r[1] == doomed]
    doomed_wrapped = _wrapped_keys(store)[doomed]
    old_kek = _kek(store_settings)
    backup = tmp_path / "sd-card-copy"
    backup.mkdir()
    for path in store.path.parent.glob(store.path.name + "*"):
        shutil.copy(path, backup / path.name)  # an SD-card image taken before the deletion
    assert any(r[3] in _files(store) for r in doomed_rows)  # the search would find them

    report = store.delete_conversation(doomed)

    assert (report.conversations, report.turns, report.key_rotated) == (1, 62, True)
    on_disk = _files(store)
    assert SECRET.encode() not in on_disk
    assert doomed.encode() not in on_disk
    assert doomed_wrapped not in on_disk
    for _, _, _, sealed, _ in doomed_rows:
        assert sealed not in on_disk and sealed[12:28] not in on_disk
    # no remaining key opens a deleted ciphertext, under its own row identity or any other
    new_kek = _kek(store_settings)
    next_key = store_settings.store.key_path.with_name("teddy.key.next")
    assert new_kek != old_kek and not next_key.exists()
    remaining = _wrapped_keys(store)
    data_keys = [crypto.unseal(new_kek, w, crypto.data_key_aad(c), what="key")
                 for c, w in remaining.items()]
    identities = [(r[0], r[1], r[2], r[4]) for r in _rows(store)] + [
        (r[0], r[1], r[2], r[4]) for r in doomed_rows]
    for _, _, _, sealed, _ in doomed_rows:
        for key in [*data_keys, new_kek]:
            for seq, conversation, role, verdict in identities:
                with pytest.raises(DecryptionError):
                    sealing.open_turn(key, conversation, seq, role, sealed, verdict)
    with pytest.raises(DecryptionError):
        crypto.unseal(new_kek, doomed_wrapped, crypto.data_key_aad(doomed), what="key")
    # the old copy of the database cannot be opened with the key the bear now has
    copy_settings = load_settings(store={"data_dir": backup,
                                         "key_file": store_settings.store.key_path})
    with ConversationStore.open(copy_settings.store) as copy, pytest.raises(WrongKeyError):
        copy.turns(doomed)
    # and what was kept is untouched
    assert {t.text for t in store.turns(kept)} == {"tell me about rockets", "Me too!"}
    assert verify(store).ok


def test_delete_everything_of_one_child(store):
    ada = [store.start_conversation(child_id="child-1") for _ in range(2)]
    bob = store.start_conversation(child_id="child-2")
    for conversation in [*ada, bob]:
        _exchange(store, conversation)
    report = store.delete_child("child-1")
    assert report.conversations == 2
    assert [c.id for c in store.conversations()] == [bob]
    assert store.turns(ada[0]) == []
    with pytest.raises(StoreError, match="is not in the store"):
        store.append(ada[0], [_turn("child", "hi")])


def test_delete_all_then_keep_again(store):
    first = store.start_conversation()
    _exchange(store, first, child=SECRET)
    assert store.delete_all().conversations == 1
    assert store.stats()["turns"] == 0 and store.outbox_depth() == 0
    second = store.start_conversation()
    seqs = _exchange(store, second)
    assert seqs[0] > 2  # a deleted seq is never given again (the cloud keys on it)
    assert [t.text for t in store.turns()] == ["I like dinosaurs", "Me too!"]


def test_deleting_an_unknown_conversation_says_so(store):
    with pytest.raises(StoreError, match="no conversation 'nope'"):
        store.delete_conversation("nope")


def test_revoke_with_delete_shreds_everything(store):
    conversation = store.start_conversation()
    _exchange(store, conversation, child=SECRET)
    assert store.revoke_consent(delete=True)
    assert store.stats()["conversations"] == 0
    assert SECRET.encode() not in _files(store)
    with pytest.raises(ConsentRequiredError):
        store.start_conversation()


def test_revoke_without_delete_keeps_but_sends_nothing(store):
    conversation = store.start_conversation()
    _exchange(store, conversation)
    store.revoke_consent()
    assert store.outbox_depth() == 0 and store.outbox_batch(10)[1] == []
    assert len(store.turns(conversation)) == 2


def test_consent_without_sync_stops_queueing(store):
    conversation = store.start_conversation()
    _exchange(store, conversation)
    store.grant_consent("Mum", [Scope.KEEP])
    assert store.outbox_depth() == 0
    _exchange(store, conversation)
    assert store.outbox_depth() == 0 and len(store.turns()) == 4


def test_no_consent_means_nothing_reaches_disk(store_settings):
    with pytest.raises(StoreError, match="teddy consent grant"):
        ConversationStore.open(store_settings.store)
    assert not store_settings.store.data_dir.exists()


# --- retention -------------------------------------------------------------------------


def _aged_store(store_settings, clock, **store_overrides):
    """A store holding one conversation 40 days old and one of today (kept, so far, under a
    60-day retention); returns 30-day settings."""
    data_dir = store_settings.store.data_dir
    store_settings = load_settings(store={"data_dir": data_dir, **store_overrides})
    longer = load_settings(store={"data_dir": data_dir, "retention_days": 60})
    today = clock.now
    clock.now = today - 40 * DAY
    with ConversationStore.open(longer.store, create=True, clock=clock) as store:
        store.grant_consent("Mum", [Scope.KEEP, Scope.SYNC])
        old = store.start_conversation()
        _exchange(store, old, child=SECRET)
        clock.now = today
        new = store.start_conversation()
        _exchange(store, new)
    return store_settings, old, new


def test_retention_shreds_old_conversations_when_the_store_opens(store_settings):
    clock = Clock()
    store_settings, old, new = _aged_store(store_settings, clock)
    alerts = AlertSink()
    with ConversationStore.open(store_settings.store, alerts=alerts, clock=clock) as store:
        assert [c.id for c in store.conversations()] == [new]
        assert SECRET.encode() not in _files(store)
    # the old turns never reached the cloud: a person is told they are gone
    assert [a.kind for a in alerts.recent()] == ["store.retention_shredded_unsynced"]
    assert alerts.recent()[0].details["turns"] == 2


def test_retention_keeps_unsynced_only_when_configured_and_says_so(store_settings):
    clock = Clock()
    store_settings, old, new = _aged_store(store_settings, clock, keep_unsynced_past_retention=True)
    alerts = AlertSink()
    with ConversationStore.open(store_settings.store, alerts=alerts, clock=clock) as store:
        assert {c.id for c in store.conversations()} == {old, new}
        assert [a.kind for a in alerts.recent()] == ["store.retention_kept_unsynced"]
        # once the cloud has them, the next sweep shreds them after all
        store.mark_synced([(t.seq, t.seq) for t in store.turns(old)])
        report = store.enforce_retention()
        assert report.shredded == [old] and report.kept_unsynced == []
        assert [c.id for c in store.conversations()] == [new]


def test_retention_runs_in_a_long_running_bear(store_settings, store):
    clock = Clock()
    with ConversationStore.open(store_settings.store, clock=clock) as running:
        first = running.start_conversation()
        seqs = _exchange(running, first)
        running.mark_synced([(seqs[0], seqs[-1])])
        clock.now += 29 * DAY
        assert running.start_conversation() and len(running.conversations()) == 2
        clock.now += 2 * DAY + SWEEP_EVERY
        running.start_conversation()  # the sweep is due again: the first one is past 30 days
        assert first not in [c.id for c in running.conversations()]
        assert len(running.conversations()) == 2


def test_appending_to_a_conversation_deleted_by_another_process_says_so(store_settings, store):
    conversation = store.start_conversation()
    _exchange(store, conversation)  # the running bear holds this conversation's key
    with ConversationStore.open(store_settings.store) as parent_cli:
        parent_cli.delete_conversation(conversation)
    with pytest.raises(StoreError, match="was deleted.*start a new conversation"):
        _exchange(store, conversation)
    assert store.stats()["turns"] == 0
