"""A parent's readable copy of what the bear kept: JSON or plain text, with safety verdicts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from agent.store.store import ConversationInfo, ConversationStore, StoredTurn

EXPORT_VERSION = 1
"""Version of the JSON export layout."""


def export_data(store: ConversationStore, conversation_id: str | None = None) -> dict[str, Any]:
    """Every conversation (or one) with its decrypted turns and verdicts, as plain data."""
    infos = store.conversations()
    if conversation_id is not None:
        infos = [c for c in infos if c.id == conversation_id]
        if not infos:
            from config.errors import StoreError

            raise StoreError(f"no conversation {conversation_id!r} in the store — run "
                             "teddy store export without --conversation to list them")
    return {
        "version": EXPORT_VERSION,
        "exported_at": _iso(datetime.now(UTC).timestamp()),
        "conversations": [_conversation(info, store.turns(info.id)) for info in infos],
    }


def _conversation(info: ConversationInfo, turns: list[StoredTurn]) -> dict[str, Any]:
    return {
        "id": info.id,
        "child_id": info.child_id,
        "started_at": _iso(info.started_at),
        "turns": [_turn(t) for t in turns],
    }


def _turn(turn: StoredTurn) -> dict[str, Any]:
    return {
        "seq": turn.seq,
        "at": _iso(turn.created_at),
        "role": turn.role,
        "text": turn.text,
        "safety": {"action": turn.verdict.get("action"),
                   "categories": turn.verdict.get("categories", [])},
        "synced": turn.synced_at is not None,
    }


def render_json(data: dict[str, Any]) -> str:
    """The export as indented JSON."""
    return json.dumps(data, indent=2, ensure_ascii=False)


def render_text(data: dict[str, Any]) -> str:
    """The export as a transcript a parent can read."""
    lines = []
    for conversation in data["conversations"]:
        child = f", child {conversation['child_id']}" if conversation["child_id"] else ""
        lines.append(f"Conversation {conversation['id']} — started {conversation['started_at']}"
                     f"{child}")
        for turn in conversation["turns"]:
            lines.append(f"  {turn['at'][11:19]}  {turn['role']:<5}  {turn['text']}"
                         f"{_verdict_note(turn['safety'])}")
        lines.append("")
    if not lines:
        lines.append("Nothing is kept.")
    return "\n".join(lines).rstrip() + "\n"


def _verdict_note(safety: dict[str, Any]) -> str:
    if safety["action"] in (None, "allow"):
        return ""
    categories = ", ".join(safety["categories"])
    return f"   [safety: {safety['action']}{': ' + categories if categories else ''}]"


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
