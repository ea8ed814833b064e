"""What makes a day of conversations quick to scan: each conversation's first words and
what the safety filter did in it, in separate plain labels."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from config.settings import Settings
from sync.cloud.portal.service import _uuid, open_text

PREVIEW_CHARS = 80
"""Longest first line shown in the list."""

LABELS = {
    "redact": ("hidden", "Personal detail hidden"),
    "escalate": ("wellbeing", "Wellbeing: worth a look"),
    "block": ("hidden", "Safety filter stepped in"),
}
"""A safety verdict in a conversation: (CSS class, label a parent reads)."""


def summaries(fam: Any, pairing_id: str) -> dict[str, dict[str, Any]]:
    """``{conversation_id: {"preview": first child line, "labels": [(class, words)]}}``
    for one of the family's bears (read through the family's scoped queries)."""
    rows = fam._rows(
        "SELECT t.conversation_id, (array_agg(t.text ORDER BY t.seq)"
        " FILTER (WHERE t.role = 'child'))[1], array_agg(DISTINCT t.action)"
        " FROM turns t WHERE t.pairing_id = %(pairing)s AND t.pairing_id IN {scope}"
        " GROUP BY t.conversation_id", {"pairing": _uuid(pairing_id)}, replica=True)
    found: dict[str, dict[str, Any]] = {}
    for conversation_id, first, actions in rows:
        text = open_text(fam.reads, first) if first else None
        found[conversation_id] = {
            "preview": _shorten(text) if text else "",
            "labels": [LABELS[a] for a in ("escalate", "redact", "block") if a in actions],
        }
    return found


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS - 1].rstrip() + "…"


def today(settings: Settings, zone: str | None = None) -> date:
    """Today's date in the family's time zone ``zone`` (else ``portal.timezone``)."""
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo(zone or settings.portal.timezone)).date()
