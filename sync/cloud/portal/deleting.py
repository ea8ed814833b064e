"""What a parent is about to delete, in words, with the conversation ids it covers (for
the confirmation page and :mod:`sync.cloud.portal.undo`), decided on the primary, never
a read replica."""

from __future__ import annotations

from datetime import date
from typing import Any

from sync.cloud.portal.service import NotFoundError
from sync.cloud.portal.undo import describe_conversation, describe_day


def conversation(fam: Any, pairing_id: str, conversation_id: str) -> tuple[str, list[str]]:
    """``(words, [conversation_id])`` of one of the family's conversations (else 404)."""
    found = [c for c in fam._primary().conversations(pairing_id)  # a change: the primary
             if c["conversation_id"] == conversation_id]
    if not found:
        raise NotFoundError("no such conversation")
    return describe_conversation(found[0]), [conversation_id]


def day(fam: Any, pairing_id: str, day_text: str) -> tuple[str, list[str]]:
    """``(words, conversation ids)`` of every conversation that started on ``day_text``."""
    try:
        wanted = date.fromisoformat(day_text).isoformat()
    except ValueError:
        raise NotFoundError("no such day") from None
    found = [c for c in fam._primary().conversations(pairing_id) if c["day"] == wanted]
    if not found:
        raise NotFoundError("no conversations that day")
    return describe_day(wanted, found), [c["conversation_id"] for c in found]
