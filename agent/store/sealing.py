"""How one turn is sealed: its text AND its safety verdict, bound to the turn's row.

The verdict is sealed with the text (format 2) because its categories ("self-harm",
"abuse") say as much about a child as the words do. Rows written by format 1 kept the
verdict as clear JSON and sealed only the text; they still open. The format is part of
the associated data, so relabelling a row's format fails authentication too.
"""

from __future__ import annotations

import json
from typing import Any

from agent.store import crypto

SEALED_VERDICT = "sealed"
"""Value of the ``verdict`` column when the verdict is inside the sealed payload."""


def seal_turn(data_key: bytes, conversation_id: str, seq: int, role: str, text: str,
              verdict: dict[str, Any]) -> bytes:
    """The sealed payload of a turn (format 2)."""
    payload = json.dumps({"text": text, "verdict": verdict}, separators=(",", ":"),
                         ensure_ascii=False).encode()
    return crypto.seal(data_key, payload, turn_aad(conversation_id, seq, role, 2))


def open_turn(data_key: bytes, conversation_id: str, seq: int, role: str, sealed: bytes,
              verdict_column: str) -> tuple[str, dict[str, Any]]:
    """``(text, verdict)`` of a sealed turn; raises DecryptionError if it does not open."""
    version = 2 if verdict_column == SEALED_VERDICT else 1
    plain = crypto.unseal(data_key, sealed, turn_aad(conversation_id, seq, role, version),
                          what=f"turn {seq}")
    if version == 1:
        return plain.decode(), json.loads(verdict_column)
    payload = json.loads(plain)
    return payload["text"], payload["verdict"]


def turn_aad(conversation_id: str, seq: int, role: str, version: int) -> bytes:
    """Associated data binding a turn's payload to its row and format."""
    if version == 1:
        return crypto.turn_aad(conversation_id, seq, role)
    return f"teddy/turn/v{version}/{conversation_id}/{seq}/{role}".encode()
