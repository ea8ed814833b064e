"""``teddy store ...``, ``teddy keys rotate`` and ``teddy consent revoke --delete``, run as a
parent would run them."""

from __future__ import annotations

import json

import pytest
from support.processes import run_cli

from agent.safety.verdict import Action, Verdict
from agent.store import ConversationStore, Scope, TurnToKeep
from config.settings import load_settings


def _turn(role: str, text: str, action: Action = Action.ALLOW, categories=()) -> TurnToKeep:
    return TurnToKeep(role, text, Verdict(action, tuple(categories), text))


@pytest.fixture
def kept(data_dir):
    """A store with two conversations of two children; returns their ids."""
    settings = load_settings(store={"data_dir": data_dir})
    with ConversationStore.open(settings.store, create=True) as store:
        store.grant_consent("Mum", [Scope.KEEP, Scope.SYNC])
        first = store.start_conversation(child_id="child-1")
        store.append(first, [_turn("child", "I like dinosaurs"), _turn("bear", "Me too!")])
        second = store.start_conversation(child_id="child-2")
        store.append(second, [_turn("child", "nobody plays with me", Action.ESCALATE,
                                      ["distress"]), _turn("bear", "That sounds hard.")])
    return first, second


def test_export_text_and_json_show_turns_with_verdicts(env, kept):
    first, second = kept
    text = run_cli("teddy", "store", "export", "--format", "text", env=env).stdout
    assert f"Conversation {first}" in text and "child  I like dinosaurs" in text
    assert "nobody plays with me   [safety: escalate: distress]" in text
    data = json.loads(run_cli("teddy", "store", "export", "--conversation", second,
                              env=env).stdout)
    [conversation] = data["conversations"]
    assert conversation["child_id"] == "child-2"
    assert [(t["role"], t["text"], t["safety"]["action"]) for t in conversation["turns"]] == [
        ("child", "nobody plays with me", "escalate"), ("bear", "That sounds hard.", "allow")]


def test_stats_verify_rotate_delete(env, kept, data_dir):
    first, second = kept
    stats = json.loads(run_cli("teddy", "store", "stats", env=env).stdout)
    assert (stats["conversations"], stats["turns"], stats["unsynced"]) == (2, 4, 4)
    assert stats["oldest_turn_at"] > 0 and stats["bytes"] > 0
    assert json.loads(run_cli("teddy", "store", "verify", env=env).stdout)["ok"] is True
    key_before = (data_dir / "teddy.key").read_bytes()
    assert "2 data keys re-wrapped" in run_cli("teddy", "keys", "rotate", env=env).stdout
    assert (data_dir / "teddy.key").read_bytes() != key_before
    out = run_cli("teddy", "store", "delete", "--conversation", first, env=env).stdout
    assert out.startswith("deleted 1 conversations (2 turns, 2 never synced)")
    refused = run_cli("teddy", "store", "delete", "--all", env=env, check=False)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    remaining = json.loads(run_cli("teddy", "store", "export", env=env).stdout)
    assert [c["id"] for c in remaining["conversations"]] == [second]


def test_verify_fails_on_a_damaged_store(env, kept, data_dir):
    with (data_dir / "teddy.db").open("r+b") as handle:
        handle.write(b"no database here")
    result = run_cli("teddy", "store", "verify", env=env, check=False)
    assert result.returncode == 1
    assert "is damaged" in json.loads(result.stdout)["problems"][0]


def test_consent_revoke_delete_shreds_everything(env, kept):
    out = run_cli("teddy", "consent", "revoke", "--delete", env=env).stdout
    assert "everything kept was deleted" in out
    stats = json.loads(run_cli("teddy", "store", "stats", env=env).stdout)
    assert stats["conversations"] == 0 and stats["turns"] == 0
