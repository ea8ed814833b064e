"""The parent app asks, the fleet service signs and sends: commands on a family's bear
without the fleet key or a broker password in the app.

The app (:func:`ask`) inserts one row into ``fleet_requests`` (migration 0014) for one of
:data:`ALLOWED` — desired config, ``delete-data``, ``unpair`` — and only if the signed-in
family holds the bear now: the holder is checked in the same ``INSERT ... SELECT``; or
(:func:`pair`) asks for a spoken code to be approved for a member of the family, and waits
for the answer. A
trigger sends ``NOTIFY fleet_requests``. The fleet service
(:class:`sync.cloud.fleet_service.RequestService`, run by ``teddy-cloud fleet serve``)
LISTENs, claims each pending row, checks the holder again, signs with the fleet key,
publishes over its one long-lived MQTT link, and records ``sent``/``refused``/``failed``
on the row; the bear's answer lands on the ``commands`` row of the same id (ingest records
it), which the app reads.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from config.errors import TeddyError
from sync.cloud import custody, emails
from sync.cloud.pairing import PairingError

logger = logging.getLogger(__name__)

ALLOWED = ("config", "delete-data", "unpair")
"""What the parent app may ask for (``config``: merge into the bear's desired config)."""
CHANNEL = "fleet_requests"
"""The NOTIFY channel the insert trigger speaks on."""

_HOLDS_NOW = custody.CURRENT.replace("%(family)s", "{family}")
"""The family holds the bear through this pairing right now, at the bear's generation."""
_MEMBER = ("EXISTS (SELECT 1 FROM parents pa WHERE pa.family_id = {family} AND"
           " pa.parent_id::text = {parent})")
"""The parent (by account id) is a member of the family."""
STILL_ITS = ("(CASE WHEN r.name = 'pair' THEN " +
             _MEMBER.format(family="r.family_id", parent="r.args->>'parent_id'") +
             " ELSE (" + _HOLDS_NOW.format(family="r.family_id", pairing="r.pairing_id") +
             " OR (r.name IN ('delete-data', 'unpair') AND EXISTS (SELECT 1 FROM pairings p"
             " JOIN devices d USING (device_id) WHERE p.pairing_id = r.pairing_id AND"
             " p.status = 'unpaired' AND d.pairing_id IS NULL))) END)")
"""At send time: still held, or (for the shredding commands of a revocation) let go by this
very pairing and held by nobody since; a pairing approval: the parent is still a member."""
POLL_S = 0.05
"""Seconds between the app's looks at a pairing request it waits for."""


class NotHeldError(TeddyError, PermissionError):
    """The family does not hold that bear now; nothing was asked."""


def ask(conn: Any, family_id: str, pairing_id: str, name: str,
        args: dict[str, Any] | None = None, ttl_s: float | None = None) -> str:
    """Ask the fleet service for command ``name`` on the bear of ``pairing_id``, if
    ``family_id`` holds it now; returns the command id the bear's answer will carry."""
    if name not in ALLOWED:
        raise ValueError(f"the parent app may not ask for {name!r} — only {', '.join(ALLOWED)}")
    command_id = uuid.uuid4().hex
    row = conn.execute(
        "INSERT INTO fleet_requests (family_id, pairing_id, device_id, name, args, ttl_s,"
        " command_id) SELECT %(family)s, p.pairing_id, p.device_id, %(name)s, %(args)s,"
        " %(ttl)s, %(id)s FROM pairings p WHERE p.pairing_id = %(pairing)s AND "
        + _HOLDS_NOW.format(family="%(family)s", pairing="%(pairing)s") +
        " RETURNING command_id",
        {"family": family_id, "pairing": pairing_id, "name": name, "ttl": ttl_s,
         "args": json.dumps(args or {}), "id": command_id}).fetchone()
    if row is None:
        raise NotHeldError("this bear is no longer paired to your family — nothing was sent; "
                          "its past conversations stay yours to read or delete")
    return row[0]


def resend_config(conn: Any, device_id: str) -> str | None:
    """Ask the fleet service to sign and send the bear's desired config again (as it now
    withholds keys the bear does not know), for the family holding it now; the command id,
    or None when no family holds it."""
    row = conn.execute(
        "INSERT INTO fleet_requests (family_id, pairing_id, device_id, name, args,"
        " command_id) SELECT fp.family_id, d.pairing_id, d.device_id, 'config', '{}',"
        " %(id)s FROM devices d JOIN pairings p ON p.pairing_id = d.pairing_id"
        " JOIN family_pairings fp ON fp.pairing_id = d.pairing_id WHERE d.device_id ="
        " %(device)s AND p.status = 'approved' AND p.generation = d.generation"
        " RETURNING command_id", {"device": device_id, "id": uuid.uuid4().hex}).fetchone()
    return None if row is None else row[0]


def outcome(conn: Any, command_id: str) -> tuple[str, str | None] | None:
    """``(status, reason)`` of the request that carries ``command_id`` (None: no such)."""
    row = conn.execute("SELECT status, reason FROM fleet_requests WHERE command_id = %s",
                       (command_id,)).fetchone()
    return None if row is None else (row[0], row[1])


def pair(conn: Any, family_id: str, parent_id: str, parent_email: str, code: str,
         scopes: tuple[str, ...], wait_s: float, address: str | None = None) -> dict[str, str]:
    """Ask the fleet service to approve the bear that spoke ``code`` for the parent
    ``parent_id`` (``parent_email``, a member of ``family_id``, asking from ``address``)
    and wait up to ``wait_s`` for it; returns the bear's ``device_id`` and ``pairing_id``.
    :class:`PairingError` with the reason otherwise."""
    command_id = uuid.uuid4().hex
    sealed, found_by = emails.stored(conn, parent_email)  # the app holds the cloud key
    row = conn.execute(
        "INSERT INTO fleet_requests (family_id, name, args, command_id) SELECT %(family)s,"
        " 'pair', %(args)s, %(id)s WHERE " +
        _MEMBER.format(family="%(family)s", parent="%(parent)s") + " RETURNING command_id",
        {"family": family_id, "parent": str(parent_id), "id": command_id, "args": json.dumps(
            {"code": code, "parent_id": str(parent_id), "parent_email": parent_email,
             "parent_email_sealed": sealed, "parent_email_hash": found_by.hex(),
             "address": address, "scopes": list(scopes)})}).fetchone()
    if row is None:
        raise PairingError("you are not a member of this family any more — sign in again")
    status, reason, result = _await(conn, command_id, wait_s)
    if status == "sent" and result:
        return result
    if status == "refused":
        raise PairingError(reason or "the bear could not be paired")
    raise PairingError("we could not reach the bears just now — try again in a minute")


def _await(conn: Any, command_id: str, wait_s: float) -> tuple[str, str | None, Any]:
    """The final ``(status, reason, result)`` of a request; a request still pending after
    ``wait_s`` is withdrawn (``failed``), one being sent is waited for a while longer."""
    query = "SELECT status, reason, result FROM fleet_requests WHERE command_id = %s"
    deadline = time.monotonic() + wait_s
    while True:
        status, reason, result = conn.execute(query, (command_id,)).fetchone()
        if status not in ("pending", "sending"):
            return status, reason, result
        if time.monotonic() > deadline:
            withdrawn = conn.execute(
                "UPDATE fleet_requests SET status = 'failed', done_at = now(), args = '{}',"
                " reason = 'not answered in time' WHERE command_id = %s AND status ="
                " 'pending' RETURNING status, reason, result", (command_id,)).fetchone()
            if withdrawn is not None:
                logger.warning("the fleet service did not take pairing request %s in %.0f s",
                               command_id, wait_s)
                return withdrawn
            deadline = time.monotonic() + wait_s  # being sent: its answer comes
        time.sleep(POLL_S)
