"""The parent app asks, the fleet service signs and sends: commands on a family's bear
without the fleet key or a broker password in the app.

The app (:func:`ask`) inserts one row into ``fleet_requests`` (migration 0014) for one of
:data:`ALLOWED` — desired config, ``delete-data``, ``unpair`` — and only if the signed-in
family holds the bear now: the holder is checked in the same ``INSERT ... SELECT``. A
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
import uuid
from typing import Any

from config.errors import TeddyError

logger = logging.getLogger(__name__)

ALLOWED = ("config", "delete-data", "unpair")
"""What the parent app may ask for (``config``: merge into the bear's desired config)."""
CHANNEL = "fleet_requests"
"""The NOTIFY channel the insert trigger speaks on."""

_HOLDS_NOW = ("EXISTS (SELECT 1 FROM family_pairings fp JOIN pairings p USING (pairing_id)"
              " JOIN devices d ON d.device_id = p.device_id AND d.pairing_id = p.pairing_id"
              " WHERE fp.family_id = {family} AND p.pairing_id = {pairing}"
              " AND p.status = 'approved')")
"""The family holds the bear through this pairing right now."""
STILL_ITS = ("(" + _HOLDS_NOW.format(family="r.family_id", pairing="r.pairing_id") +
              " OR (r.name IN ('delete-data', 'unpair') AND EXISTS (SELECT 1 FROM pairings p"
              " JOIN devices d USING (device_id) WHERE p.pairing_id = r.pairing_id AND"
              " p.status = 'unpaired' AND d.pairing_id IS NULL)))")
"""At send time: still held, or (for the shredding commands of a revocation) let go by this
very pairing and held by nobody since."""


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
        raise NotHeldError("this bear is not your family's now — nothing was sent to it")
    return row[0]


def outcome(conn: Any, command_id: str) -> tuple[str, str | None] | None:
    """``(status, reason)`` of the request that carries ``command_id`` (None: no such)."""
    row = conn.execute("SELECT status, reason FROM fleet_requests WHERE command_id = %s",
                       (command_id,)).fetchone()
    return None if row is None else (row[0], row[1])
