"""Tampering and keys: every kind of meddling fails authentication, never yields wrong text."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

from agent.safety.verdict import Action, Verdict
from agent.store import ConversationStore, Scope, TurnToKeep, crypto
from agent.store.errors import KeyRotationError, WrongKeyError
from agent.store.schema import MIGRATIONS, SCHEMA_VERSION
from agent.store.verify import verify
from config.errors import ConfigError, DecryptionError, KeyFileError, StoreError
from config.settings import load_settings


def _turn(role: str, text: str, action: Action = Action.ALLOW) -> TurnToKeep:
    categories = ("distress",) if action is Action.ESCALATE else ()
    return TurnToKeep(role, text, Verdict(action, categories, text))


def _raw(store: ConversationStore) -> sqlite3.Connection:
    return sqlite3.connect(store.path, isolation_level=None)


def _two_conversations(store):
    first, second = store.start_conversation(), store.start_conversation()
    store.append(first, [_turn("child", "I have a red kite"), _turn("bear", "Kites are fun!")])
    store.append(second, [_turn("child", "I am scared of the dark", Action.ESCALATE),
                          _turn("bear", "Tell a grown-up you trust")])
    return first, second


def test_ciphertext_moved_to_another_conversation_fails(store):
    first, second = _two_conversations(store)
    raw = _raw(store)
    first_seq = "SELECT min(seq) FROM turns WHERE conversation_id = ?"
    seq_a = raw.execute(first_seq, (first,)).fetchone()[0]
    seq_b = raw.execute(first_seq, (second,)).fetchone()[0]
    sealed_a = raw.execute("SELECT text_sealed FROM turns WHERE seq = ?", (seq_a,)).fetchone()[0]
    raw.execute("UPDATE turns SET text_sealed = ? WHERE seq = ?", (sealed_a, seq_b))
    with pytest.raises(DecryptionError, match=f"turn {seq_b} failed authentication"):
        store.turns(second)
    assert [t.text for t in store.turns(first)][0] == "I have a red kite"


def test_row_moved_to_another_conversation_fails(store):
    first, second = _two_conversations(store)
    _raw(store).execute("UPDATE turns SET conversation_id = ? WHERE conversation_id = ?",
                        (second, first))
    with pytest.raises(DecryptionError, match="failed authentication"):
        store.turns(second)


@pytest.mark.parametrize("offset", [0, 12, -1])  # in the nonce, the ciphertext, the tag
def test_flipped_byte_in_a_turn_fails(store, offset):
    first, _ = _two_conversations(store)
    raw = _raw(store)
    seq, sealed = raw.execute("SELECT seq, text_sealed FROM turns ORDER BY seq LIMIT 1").fetchone()
    flipped = bytearray(sealed)
    flipped[offset] ^= 0x01
    raw.execute("UPDATE turns SET text_sealed = ? WHERE seq = ?", (bytes(flipped), seq))
    with pytest.raises(DecryptionError, match=f"turn {seq} failed authentication"):
        store.turns(first)


def test_truncated_ciphertext_fails_clearly(store):
    first, _ = _two_conversations(store)
    _raw(store).execute("UPDATE turns SET text_sealed = x'00010203'")
    with pytest.raises(DecryptionError, match="truncated"):
        store.turns(first)


def test_verdict_is_sealed_and_cannot_be_relabelled(store):
    _, second = _two_conversations(store)
    raw = _raw(store)
    # the worrying category never sits in the clear
    assert b"distress" not in store.path.read_bytes() + _wal_bytes(store)
    assert store.turns(second)[0].verdict["categories"] == ["distress"]
    # pretending the row is of the older, clear-verdict format fails authentication
    fake = json.dumps({"action": "allow", "categories": [], "matches": []})
    raw.execute("UPDATE turns SET verdict = ? WHERE conversation_id = ?", (fake, second))
    with pytest.raises(DecryptionError, match="failed authentication"):
        store.turns(second)


def test_swapped_data_keys_fail(store):
    first, second = _two_conversations(store)
    store.close()
    raw = sqlite3.connect(store.path, isolation_level=None)
    key_a, key_b = (raw.execute("SELECT wrapped_key FROM conversations WHERE id = ?",
                                (c,)).fetchone()[0] for c in (first, second))
    raw.execute("UPDATE conversations SET wrapped_key = ? WHERE id = ?", (key_b, first))
    raw.execute("UPDATE conversations SET wrapped_key = ? WHERE id = ?", (key_a, second))
    raw.close()
    settings = load_settings(store={"data_dir": store.path.parent})
    with ConversationStore.open(settings.store) as reopened:
        with pytest.raises(DecryptionError, match=f"data key of conversation {first}"):
            reopened.turns(first)
        report = verify(reopened)
    assert not report.ok and len(report.problems) == 2


def test_wrong_key_is_named_at_open_and_read(store_settings, store):
    conversation, _ = _two_conversations(store)
    store.close()
    os.unlink(store_settings.store.key_path)
    other = crypto.new_key()
    _write_key(store_settings.store.key_path, other)
    from agent.alerts import AlertSink

    alerts = AlertSink()
    with ConversationStore.open(store_settings.store, alerts=alerts) as reopened:
        assert [a.kind for a in alerts.recent()] == ["store.wrong_key"]
        with pytest.raises(WrongKeyError, match="not the one this store was written with"):
            reopened.turns(conversation)
        with pytest.raises(WrongKeyError):
            reopened.start_conversation()


def test_key_file_owned_by_another_user_is_refused(store_settings, store):
    store.close()
    if os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    os.chown(store_settings.store.key_path, 4242, -1)
    with pytest.raises(KeyFileError, match="owned by uid 4242"):
        ConversationStore.open(store_settings.store)


def test_damaged_key_file_is_refused(store_settings, store):
    store.close()
    store_settings.store.key_path.write_text("not a key\n")
    with pytest.raises(KeyFileError, match="does not hold a base64 32-byte key"):
        ConversationStore.open(store_settings.store)


class MemoryKeyProvider:
    """A one-time-programmable key: fixed for the device's life, cannot rotate."""

    KEY = bytes(range(32))

    def __init__(self, settings) -> None:
        self.settings = settings

    def exists(self) -> bool:
        return True

    def load(self, create: bool = False) -> bytes:
        return self.KEY


def test_key_provider_hook_for_a_fixed_hardware_key(tmp_path):
    settings = load_settings(store={"data_dir": tmp_path,
                                    "key_provider": f"{__name__}:MemoryKeyProvider"})
    with ConversationStore.open(settings.store, create=True) as store:
        store.grant_consent("Mum", [Scope.KEEP])
        conversation = store.start_conversation()
        store.append(conversation, [_turn("child", "hello bear")])
        wrapped = _raw(store).execute("SELECT wrapped_key FROM conversations").fetchone()[0]
        assert crypto.unseal(MemoryKeyProvider.KEY, wrapped, crypto.data_key_aad(conversation),
                             what="data key")
        with pytest.raises(KeyRotationError, match="cannot rotate"):
            store.rotate_key()
        report = store.delete_conversation(conversation)
    assert report.conversations == 1 and not report.key_rotated
    assert not (tmp_path / "teddy.key").exists()


def test_bad_key_provider_hook_names_the_setting(tmp_path):
    settings = load_settings(store={"data_dir": tmp_path, "key_provider": "no.such:thing"})
    with pytest.raises(ConfigError, match="store.key_provider 'no.such:thing'"):
        ConversationStore.open(settings.store, create=True)


def test_schema_1_store_is_migrated_and_still_reads(store_settings):
    """A store written by the first release (clear verdicts, v1 AAD) opens and reads."""
    store_settings.store.data_dir.mkdir(parents=True)
    kek = crypto.new_key()
    _write_key(store_settings.store.key_path, kek)
    raw = sqlite3.connect(store_settings.store.db_path, isolation_level=None)
    raw.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    data_key = crypto.new_key()
    raw.execute("INSERT INTO consents (parent, scopes, granted_at, source) "
                "VALUES ('Mum', '[\"keep\"]', 1, 'local')")
    raw.execute("INSERT INTO conversations VALUES ('c1', 1.0, ?)",
                (crypto.seal(kek, data_key, crypto.data_key_aad("c1")),))
    raw.execute("INSERT INTO turns (seq, conversation_id, role, created_at, text_sealed, verdict) "
                "VALUES (1, 'c1', 'child', 1.0, ?, ?)",
                (crypto.seal(data_key, b"old words", crypto.turn_aad("c1", 1, "child")),
                 json.dumps({"action": "allow", "categories": [], "matches": []})))
    raw.close()
    with ConversationStore.open(store_settings.store, clock=lambda: 2.0) as store:
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
        assert store.turns("c1")[0].text == "old words"
        assert store.consent().parent == "Mum"  # sealed by the migration, still readable
        assert _raw(store).execute("SELECT parent FROM consents").fetchone()[0] == ""
        store.append("c1", [_turn("bear", "new words")])
        assert [t.text for t in store.turns("c1")] == ["old words", "new words"]
        assert verify(store).ok


def test_newer_schema_is_refused(store_settings, store):
    _raw(store).execute("PRAGMA user_version = 99")
    store.close()
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        ConversationStore.open(store_settings.store)


def _write_key(path, key: bytes) -> None:
    import base64

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(base64.b64encode(key) + b"\n")


def _wal_bytes(store) -> bytes:
    wal = store.path.with_name(store.path.name + "-wal")
    return wal.read_bytes() if wal.exists() else b""


def test_a_running_bear_follows_a_rotation_made_by_another_process(store_settings, store):
    conversation, _ = _two_conversations(store)
    # another connection, its own key ring
    with ConversationStore.open(store_settings.store) as cli:
        cli.rotate_key()
        cli_conversation = cli.start_conversation()
        cli.append(cli_conversation, [_turn("child", "written after the rotation")])
    # the first store still holds the old key in memory: it must pick up the new one
    fresh = store.start_conversation()
    store.append(fresh, [_turn("child", "new conversation, new key")])
    assert store.turns(cli_conversation)[0].text == "written after the rotation"
    with ConversationStore.open(store_settings.store) as reopened:
        assert reopened.turns(fresh)[0].text == "new conversation, new key"
        assert reopened.turns(conversation)[0].text == "I have a red kite"
        assert verify(reopened).ok
