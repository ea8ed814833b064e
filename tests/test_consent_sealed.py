"""Consent records on the bear are sealed like transcripts: the parent's name and e-mail
never sit in ``teddy.db`` (or its WAL) in the clear, and a store written before that is
sealed when it is opened."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess

import pytest
from support.processes import run_cli

from agent.safety.verdict import Action, Verdict
from agent.store import ConversationStore, Scope, TurnToKeep
from agent.store.schema import MIGRATIONS, SCHEMA_VERSION
from agent.store.verify import verify
from config.errors import DecryptionError
from config.settings import load_settings

PARENT = "Sam Parent <sam.parent@example.org>"


def _dump(db_path) -> str:
    """What ``sqlite3 teddy.db .dump`` shows (the real sqlite3 shell)."""
    return subprocess.run(["sqlite3", str(db_path), ".dump"], capture_output=True, text=True,
                          check=True, timeout=30).stdout


def _files(db_path) -> bytes:
    return b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))


def test_consent_granted_with_the_cli_shows_no_parent_in_the_dump(env, data_dir):
    run_cli("teddy", "consent", "grant", "--parent", PARENT, env=env)
    db = data_dir / "teddy.db"
    dump = _dump(db)
    assert "INSERT INTO consents" in dump  # the row is there ...
    for secret in ("Sam Parent", "sam.parent", "example.org"):
        assert secret not in dump  # ... but not who granted it
        assert secret.encode() not in _files(db)
    shown = json.loads(run_cli("teddy", "consent", "show", env=env).stdout)
    assert shown["parent"] == PARENT and shown["scopes"] == ["keep", "sync"]


def test_a_schema_3_store_with_clear_consents_is_sealed_when_opened(tmp_path):
    settings = load_settings(store={"data_dir": tmp_path})
    kek = os.urandom(32)
    fd = os.open(settings.store.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(base64.b64encode(kek) + b"\n")
    raw = sqlite3.connect(settings.store.db_path, isolation_level=None)
    raw.executescript(";".join(MIGRATIONS[:3]) + "; PRAGMA user_version = 3;")
    raw.execute("INSERT INTO consents (parent, scopes, granted_at, revoked_at, source) "
                "VALUES ('Old Parent <old@example.org>', '[\"keep\"]', 1, 2, 'local')")
    raw.execute("INSERT INTO consents (parent, scopes, granted_at, source) "
                f"VALUES ('{PARENT}', '[\"keep\",\"sync\"]', 3, 'cloud')")
    raw.close()
    assert PARENT.encode() in _files(settings.store.db_path)  # reproduces: clear today

    with ConversationStore.open(settings.store) as store:
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        consent = store.consent()
        assert (consent.parent, consent.scopes, consent.source) == (
            PARENT, (Scope.KEEP, Scope.SYNC), "cloud")
        raw_files = _files(settings.store.db_path)
    dump = _dump(settings.store.db_path)
    for secret in ("Sam Parent", "sam.parent", "Old Parent", "old@example.org"):
        assert secret not in dump
        assert secret.encode() not in raw_files
        assert secret.encode() not in _files(settings.store.db_path)


def test_a_sealed_parent_moved_to_another_consent_row_fails_authentication(empty_store):
    empty_store.grant_consent("First Parent", [Scope.KEEP])
    empty_store.grant_consent("Second Parent", [Scope.KEEP, Scope.SYNC])
    conn = sqlite3.connect(empty_store.path, isolation_level=None)
    first, second = conn.execute("SELECT parent_sealed FROM consents ORDER BY id").fetchall()
    conn.execute("UPDATE consents SET parent_sealed = ? WHERE id = 2", (first[0],))
    conn.close()
    with pytest.raises(DecryptionError, match="failed authentication"):
        empty_store.consent()
    assert any("consent 2 failed authentication" in p for p in verify(empty_store).problems)


def test_consent_stays_readable_after_the_key_rotates(empty_store):
    empty_store.grant_consent(PARENT, [Scope.KEEP])
    conversation = empty_store.start_conversation()
    empty_store.append(conversation, [TurnToKeep("child", "hi", Verdict(Action.ALLOW, (), "hi"))])
    before = empty_store._conn.execute("SELECT parent_sealed FROM consents").fetchone()[0]
    report = empty_store.delete_conversation(conversation)  # deletion rotates the KEK
    assert report.key_rotated
    after = empty_store._conn.execute("SELECT parent_sealed FROM consents").fetchone()[0]
    assert after != before  # re-sealed under the new key, not left under the old one
    assert empty_store.consent().parent == PARENT
