"""Deleting a conversation or a day with a short undo window (``portal.undo_s``).

A parent confirms; the deletion is *scheduled*: a ``portal_deletions`` row with ``due_at``
and the conversation ids, and nothing deleted yet. Until ``due_at`` the parent can undo it
(the row goes; nothing was touched). At ``due_at`` :func:`run_due` does it in ONE
transaction per deletion, the row locked: the cloud's turns are deleted, the signed
``delete-data`` command is recorded and sent to the bear, ``done_at`` is set. Undo and
:func:`run_due` lock the same row, so a deletion is either undone or done, never both.
Due deletions run on the next request of any family, and in ``teddy-cloud portal``'s
background loop (:func:`run_forever`).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

from config.settings import Settings
from sync.cloud import fleet_requests

logger = logging.getLogger(__name__)

POLL_S = 2.0
"""Seconds between looks for due deletions in :func:`run_forever`."""


def describe_conversation(conversation: dict[str, Any]) -> str:
    """"the conversation of Monday 7 December at 16:10 (6 turns)"."""
    started: datetime = conversation["started_at"]
    return (f"the conversation of {started:%A} {started.day} {started:%B %Y} at "
            f"{started:%H:%M} ({conversation['turns']} turns)")


def describe_day(day: str, conversations: list[dict[str, Any]]) -> str:
    """"every conversation of Monday 7 December 2026 (3 conversations, 14 turns)"."""
    from datetime import date

    when = date.fromisoformat(day)
    turns = sum(c["turns"] for c in conversations)
    count = len(conversations)
    return (f"every conversation of {when:%A} {when.day} {when:%B %Y} ({count} "
            f"conversation{'s' if count != 1 else ''}, {turns} turns)")


def schedule(fam: Any, pairing_id: str, what: str, conversation_ids: list[str]) -> str:
    """Schedule deleting ``conversation_ids`` of one of ``fam``'s bears in
    ``portal.undo_s`` seconds; returns the deletion id."""
    bear = fam.pairing(pairing_id)
    row = fam.conn.execute(
        "INSERT INTO portal_deletions (family_id, pairing_id, scope, conversation_ids, due_at)"
        " VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s))"
        " RETURNING deletion_id::text",
        (fam.parent.family_id, bear["pairing_id"], what, sorted(set(conversation_ids)),
         fam.settings.portal.undo_s)).fetchone()
    logger.info("family deletion %s scheduled in %.0f s", row[0], fam.settings.portal.undo_s)
    if fam.settings.portal.undo_s == 0:
        run_due(fam.settings, fam.conn)
    return str(row[0])


def undo(fam: Any, deletion_id: str) -> bool:
    """Undo a scheduled deletion of ``fam``'s; False if it is done already (or not theirs).
    Scoped like every family query (:meth:`FamilyService._rows`)."""
    from sync.cloud.portal.service import _uuid

    with fam.conn.transaction():
        rows = fam._rows(
            "DELETE FROM portal_deletions x WHERE x.deletion_id = %(id)s"
            " AND x.pairing_id IN {scope} AND x.due_at IS NOT NULL AND x.done_at IS NULL"
            " RETURNING x.deletion_id", {"id": _uuid(deletion_id)})
    if rows:
        logger.info("family deletion %s undone", deletion_id)
    return bool(rows)


def pending(fam: Any, deletion_id: str) -> dict[str, Any] | None:
    """A scheduled, not yet done deletion of ``fam``'s: its description and seconds left."""
    from sync.cloud.portal.service import _uuid

    rows = fam._rows(
        "SELECT x.scope, x.pairing_id::text, greatest(0, extract(epoch FROM x.due_at - now()))"
        " FROM portal_deletions x WHERE x.deletion_id = %(id)s AND x.pairing_id IN {scope}"
        " AND x.due_at IS NOT NULL AND x.done_at IS NULL", {"id": _uuid(deletion_id)})
    if not rows:
        return None
    scope, pairing_id, left = rows[0]
    return {"deletion_id": deletion_id, "scope": scope, "pairing_id": pairing_id,
            "seconds_left": int(float(left) + 0.999)}


def run_due(settings: Settings, conn: Any, limit: int = 20) -> int:
    """Do every deletion whose undo window has passed; returns how many were done. One that
    fails (no broker, no key) stays scheduled, untouched, and is tried again later; the
    others are still done."""
    due = [r[0] for r in conn.execute(
        "SELECT deletion_id FROM portal_deletions WHERE due_at <= now() AND done_at IS NULL"
        " ORDER BY due_at LIMIT %s", (limit,)).fetchall()]
    done = 0
    for deletion_id in due:
        try:
            done += _do_one(settings, conn, deletion_id)
        except Exception as exc:  # rolled back: nothing deleted, still scheduled
            logger.warning("deletion %s not done yet, trying again later: %s",
                           deletion_id, exc)
    return done


def _do_one(settings: Settings, conn: Any, deletion_id: Any) -> bool:
    from sync.cloud.portal.service import delete_pairing_rows

    with conn.transaction():
        row = conn.execute(
            "SELECT x.pairing_id, x.conversation_ids, x.family_id FROM portal_deletions x"
            " WHERE x.deletion_id = %s AND x.due_at <= now() AND x.done_at IS NULL"
            " FOR UPDATE OF x SKIP LOCKED", (deletion_id,)).fetchone()
        if row is None:  # undone, or done by another instance meanwhile
            return False
        pairing_id, ids, family_id = row
        deleted = delete_pairing_rows(conn, str(pairing_id), list(ids or []))
        command_id = None
        if ids:  # the fleet service tells the bear, only while this family holds it
            try:
                command_id = fleet_requests.ask(
                    conn, str(family_id), str(pairing_id), "delete-data",
                    {"conversation_ids": list(ids)}, ttl_s=7 * 24 * 3600)
            except fleet_requests.NotHeldError:
                logger.info("deletion %s: the bear is not the family's now; the cloud rows"
                            " only", deletion_id)
        conn.execute("UPDATE portal_deletions SET done_at = now(), cloud_turns = %s,"
                     " command_id = %s WHERE deletion_id = %s",
                     (deleted, command_id, deletion_id))
    logger.info("family deletion %s done: %d cloud turns", deletion_id, deleted)
    return True


def run_forever(settings: Settings, stop: threading.Event) -> None:
    """Do due deletions every :data:`POLL_S` seconds until ``stop`` (the portal's loop);
    a failure is logged and tried again."""
    from sync.cloud import db

    while not stop.is_set():
        try:
            with db.connect(settings.cloud) as conn:
                while not stop.wait(POLL_S):
                    run_due(settings, conn)
        except Exception:
            logger.exception("due deletions failed; trying again")
            stop.wait(POLL_S)
