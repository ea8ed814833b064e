"""Custody: exactly one family holds a bear, at one generation, through every change of hands.

A bear is *manufactured* (``teddy-cloud provision``) → *claimed* (one pending claim at a time:
:mod:`sync.cloud.pairing` voids older ones) → *held* by family F at generation g → *released*
→ held by F' at g+1. A parent is *invited* (an e-mailed token) → *accepts* on a page that
says what the family will see → is *removed* or *leaves*. Each transition below is ONE
transaction that writes one ``custody_events`` row; nothing else in the cloud changes
``devices.pairing_id``, ``devices.generation``, ``family_pairings`` or ``parents.family_id``.

Whoever reads or acts on a bear checks the holder in the same SQL statement: :data:`CURRENT`
(a pairing is the bear's current one, at the bear's generation, held by ``%(family)s``) and
:func:`held_device` (the same, locking the bear's row for the action's transaction). A
pairing of an earlier generation stays its family's data (they may read, export and delete
what their child said), but its bear's live state, settings and commands are refused.

Release proves presence, not possession of a file: a claim carrying a release token (left
by ``teddy factory-reset``, which a copied SD card also holds) releases the current holder
only when the claimant IS the holder (same family, or for an operator-approved pairing the
same parent address). From anyone else it opens a :func:`request_release`: the holding
family is told at once by e-mail, and the bear moves only when a member approves in the app
(:func:`decide_release`); an objection, or no answer within ``fleet.release_window_s``,
keeps the bear where it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from config.errors import TeddyError
from sync.cloud import emails
from sync.cloud.db import one_row

if TYPE_CHECKING:
    from psycopg import Connection

logger = logging.getLogger(__name__)

CURRENT = ("EXISTS (SELECT 1 FROM devices cd JOIN pairings cp ON cp.pairing_id = cd.pairing_id"
           " JOIN family_pairings cf ON cf.pairing_id = cd.pairing_id"
           " WHERE cd.pairing_id = {pairing} AND cp.status = 'approved'"
           " AND cp.generation = cd.generation AND cf.family_id = %(family)s)")
"""SQL true when ``{pairing}`` (a column or parameter) is its bear's current pairing, at
the bear's current generation, held by the family bound as ``%(family)s``."""

Mail = Callable[[str, str, str], None]
"""Sends one e-mail: ``(to, subject, body)``."""


class CustodyError(TeddyError, PermissionError):
    """A custody transition was refused; the message says why and what to do."""


class StaleCustodyError(CustodyError):
    """The pairing is not the bear's current one (another family, or an older generation)."""


class NotInFamilyError(CustodyError, LookupError):
    """No such parent, invitation or request in this family (another's is not said)."""


class ReleasePendingError(CustodyError):
    """The bear is held by another family, who were asked to release it."""


@dataclass(frozen=True)
class Held:
    """A bear's current custody."""

    device_id: str
    """The bear."""
    pairing_id: str
    """Its current pairing."""
    generation: int
    """Its custody generation."""
    family_id: str | None
    """The holding family (None: paired by an operator, not yet in a family)."""


def record(conn: Connection, kind: str, *, device_id: str | None = None,
           pairing_id: str | None = None, generation: int | None = None,
           family_id: str | None = None, actor: str = "", **detail: Any) -> None:
    """The audit row of one transition (call inside the transition's transaction)."""
    conn.execute(
        "INSERT INTO custody_events (kind, device_id, pairing_id, generation, family_id, actor,"
        " detail) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (kind, device_id, pairing_id, generation, family_id, actor, json.dumps(detail)))
    logger.info("custody %s: device %s pairing %s generation %s", kind, device_id,
                pairing_id, generation)


def holder(conn: Connection, device_id: str) -> Held | None:
    """Who holds the bear now (None: nobody)."""
    row = conn.execute(
        "SELECT d.device_id, p.pairing_id::text, d.generation, fp.family_id::text"
        " FROM devices d JOIN pairings p ON p.pairing_id = d.pairing_id"
        " LEFT JOIN family_pairings fp ON fp.pairing_id = p.pairing_id"
        " WHERE d.device_id = %s AND p.status = 'approved' AND p.generation = d.generation",
        (device_id,)).fetchone()
    return None if row is None else Held(*row)


def held_device(conn: Connection, family_id: str, pairing_id: str) -> Held:
    """The bear of ``pairing_id`` if ``family_id`` holds it NOW (one query, the bear's row
    locked until the caller's transaction ends); :class:`StaleCustodyError` otherwise."""
    row = conn.execute(
        "SELECT d.device_id, p.pairing_id::text, d.generation, fp.family_id::text"
        " FROM devices d JOIN pairings p ON p.pairing_id = d.pairing_id"
        " JOIN family_pairings fp ON fp.pairing_id = p.pairing_id"
        " WHERE p.pairing_id = %s AND fp.family_id = %s AND p.status = 'approved'"
        " AND p.generation = d.generation FOR UPDATE OF d", (pairing_id, family_id)).fetchone()
    if row is None:
        raise StaleCustodyError("this bear is no longer paired to your family — nothing was "
                                "sent; its past conversations stay yours to read or delete")
    return Held(*row)


# --- bears -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewClaim:
    """A claim the cloud opened (what :func:`claim` records)."""

    claim_id: str
    """Its id."""
    device_id: str
    """The bear (from the broker-authenticated topic)."""
    code_digest: str
    """HMAC of the spoken code keyed by the claim id."""
    public_key: str = ""
    """The bear's one-time X25519 key (the grant is sealed to it)."""
    nonce: str = ""
    """The bear's nonce (the answer echoes it)."""
    requested_at: float = 0.0
    """When the bear spoke the code (Unix seconds)."""
    firmware: str = ""
    """The bear's software version."""
    releases: str | None = None
    """The pairing whose release token the claim carried (verified), if any."""


def claim(conn: Connection, new: NewClaim, ttl_s: float, refusal: str = "") -> bool:
    """Manufactured/held → claimed: record a claim, voiding the bear's older pending one
    (one pending claim per bear: its code stops working), in ONE transaction; a ``refusal``
    is recorded as ``refused``. False when the claim was seen before, also when another
    connection recorded the same claim at the same moment (two approvals collecting it at
    once: the one-pending index, not the claim id, is what their inserts met first)."""
    from psycopg.errors import UniqueViolation

    try:
        return _claim(conn, new, ttl_s, refusal)
    except UniqueViolation:
        logger.info("claim %s of %s was recorded by another connection at the same moment",
                    new.claim_id, new.device_id)
        return False


def _claim(conn: Connection, new: NewClaim, ttl_s: float, refusal: str) -> bool:
    """:func:`claim`'s one transaction."""
    with conn.transaction():
        if not refusal:
            conn.execute("UPDATE pairings SET status = 'expired' WHERE device_id = %s AND"
                         " status = 'pending' AND claim_id <> %s",
                         (new.device_id, new.claim_id))
        made = conn.execute(
            "INSERT INTO pairings (claim_id, device_id, code_digest, public_key, firmware,"
            " requested_at, expires_at, nonce, releases, status) VALUES (%s, %s, %s, %s, %s,"
            " to_timestamp(%s), now() + make_interval(secs => %s), %s, %s, %s)"
            " ON CONFLICT (claim_id) DO NOTHING RETURNING claim_id",
            (new.claim_id, new.device_id, new.code_digest, new.public_key, new.firmware,
             new.requested_at, ttl_s, new.nonce, new.releases,
             "refused" if refusal else "pending")).fetchone()
        if made is not None:
            record(conn, "refused" if refusal else "claimed", device_id=new.device_id,
                   actor="bear", claim_id=new.claim_id, refusal=refusal)
    return made is not None


def hold(conn: Connection, claim_id: str, *, family_id: str | None,
         parent_email: str | tuple[str, bytes], requester: str, release: str,
         actor: str) -> Held:
    """Claimed → held: flip the pending claim to approved at generation g+1 for ``family_id``,
    ending the holder it proved it may release (only if the claimant IS that holder), in ONE
    transaction. :class:`ReleasePendingError` when another family holds the bear (they are
    asked, see :func:`request_release`); :class:`CustodyError` when the claim is not pending.
    ``parent_email``: the address, or as already stored (:func:`sync.cloud.emails.stored`)."""
    stored = (parent_email if isinstance(parent_email, tuple)
              else emails.stored(conn, parent_email))
    with conn.transaction():
        claim = conn.execute(
            "SELECT device_id, releases::text FROM pairings WHERE claim_id = %s AND status ="
            " 'pending' AND expires_at > now() FOR UPDATE", (claim_id,)).fetchone()
        if claim is None:
            raise CustodyError("that code was used or voided at the same time — nothing was "
                               "changed; hold the bear's paw 5 s for a new code")
        device_id, releases = claim
        current = _lock_bear(conn, device_id)
        if current is not None:
            if releases != current.pairing_id or not _same_holder(conn, current, family_id,
                                                                  stored[1]):
                raise ReleasePendingError(
                    "this bear is still paired to another family — they have been asked to "
                    "release it; once they do, enter a new code")
            _end(conn, current, "released", actor, reason="re-paired by its own family")
        generation = one_row(conn.execute(
            "UPDATE devices SET generation = generation + 1 WHERE device_id = %s"
            " RETURNING generation", (device_id,)))[0]
        pairing_id = one_row(conn.execute(
            "UPDATE pairings SET status = 'approved', approved_at = now(), parent_email = %s,"
            " parent_email_hash = %s, requester = %s, release_digest = %s,"
            " mqtt_username = device_id, generation = %s WHERE claim_id = %s"
            " RETURNING pairing_id::text",
            (*stored, requester, release, generation, claim_id)))[0]
        conn.execute("UPDATE devices SET pairing_id = %s WHERE device_id = %s",
                     (pairing_id, device_id))
        conn.execute("DELETE FROM device_config WHERE device_id = %s", (device_id,))
        if family_id is not None:
            conn.execute("INSERT INTO family_pairings (pairing_id, family_id) VALUES (%s, %s)",
                         (pairing_id, family_id))
        held = Held(device_id, pairing_id, generation, family_id)
        record(conn, "held", device_id=device_id, pairing_id=pairing_id, generation=generation,
               family_id=family_id, actor=actor, claim_id=claim_id)
    return held


def _lock_bear(conn: Connection, device_id: str) -> Held | None:
    conn.execute("SELECT 1 FROM devices WHERE device_id = %s FOR UPDATE", (device_id,))
    return holder(conn, device_id)


def _same_holder(conn: Connection, current: Held, family_id: str | None,
                 found_by: bytes) -> bool:
    if current.family_id is not None:
        return current.family_id == family_id
    row = conn.execute("SELECT 1 FROM pairings WHERE pairing_id = %s AND parent_email_hash = %s",
                       (current.pairing_id, found_by)).fetchone()
    return row is not None


def _end(conn: Connection, current: Held, status: str, actor: str, **detail: Any) -> None:
    conn.execute("UPDATE pairings SET status = %s, unpaired_at = now() WHERE pairing_id = %s",
                 (status, current.pairing_id))
    conn.execute("UPDATE devices SET pairing_id = NULL WHERE device_id = %s",
                 (current.device_id,))
    conn.execute("UPDATE consents SET revoked_at = now() WHERE device_id = %s AND"
                 " revoked_at IS NULL", (current.device_id,))
    conn.execute("UPDATE consent_records SET revoked_at = now() WHERE pairing_id = %s AND"
                 " revoked_at IS NULL", (current.pairing_id,))
    conn.execute("DELETE FROM device_config WHERE device_id = %s", (current.device_id,))
    conn.execute("UPDATE custody_releases SET decided_at = now(), decision = 'superseded'"
                 " WHERE pairing_id = %s AND decided_at IS NULL", (current.pairing_id,))
    record(conn, status, device_id=current.device_id, pairing_id=current.pairing_id,
           generation=current.generation, family_id=current.family_id, actor=actor, **detail)


def release(conn: Connection, device_id: str, *, actor: str, family_id: str | None = None,
            pairing_id: str | None = None, status: str = "unpaired") -> Held | None:
    """Held → released: end the bear's current pairing (only that of ``family_id`` /
    ``pairing_id`` when given) in ONE transaction; the custody ended, or None if the bear was
    not held (by them)."""
    with conn.transaction():
        current = _lock_bear(conn, device_id)
        if current is None or (family_id is not None and current.family_id != family_id) or (
                pairing_id is not None and current.pairing_id != pairing_id):
            return None
        _end(conn, current, status, actor)
    return current


def request_release(conn: Connection, claim_id: str, window_s: float,
                    mail: Mail | None) -> str | None:
    """A claim from another party proved it holds the release token of the bear's current
    pairing: ask the holding family (e-mail to each member now); returns the request id
    (None when one is already open, or the bear is not held)."""
    with conn.transaction():
        row = conn.execute("SELECT device_id, releases::text FROM pairings WHERE claim_id = %s",
                           (claim_id,)).fetchone()
        current = _lock_bear(conn, row[0]) if row else None
        if current is None or row is None or row[1] != current.pairing_id:
            return None  # the claim proved no token of the bear's current pairing
        made = conn.execute(
            "INSERT INTO custody_releases (device_id, pairing_id, generation, claim_id, reason,"
            " expires_at) VALUES (%s, %s, %s, %s, 'factory reset then a claim from another"
            " account', now() + make_interval(secs => %s)) ON CONFLICT DO NOTHING"
            " RETURNING release_id::text",
            (current.device_id, current.pairing_id, current.generation, claim_id, window_s)
        ).fetchone()
        if made is None:
            return None
        record(conn, "release-requested", device_id=current.device_id,
               pairing_id=current.pairing_id, generation=current.generation,
               family_id=current.family_id, actor="claim " + claim_id, release_id=made[0])
    if mail is None or not _tell_holders(conn, current, mail, made[0]):
        logger.info("release request %s: the holding family is told by the notifier", made[0])
    return made[0]


def tell_pending(conn: Connection, mail: Mail) -> int:
    """Tell the holding families of open release requests nobody told yet (the notifier's
    round: the fleet service that opened them holds no cloud key to open addresses);
    returns how many requests were told."""
    rows = conn.execute(
        "SELECT r.release_id::text, d.device_id, r.pairing_id::text, r.generation,"
        " fp.family_id::text FROM custody_releases r JOIN devices d USING (device_id)"
        " LEFT JOIN family_pairings fp ON fp.pairing_id = r.pairing_id"
        " WHERE r.told_at IS NULL AND r.decided_at IS NULL AND r.expires_at > now()"
        " ORDER BY r.requested_at LIMIT 100").fetchall()
    return sum(_tell_holders(conn, Held(device_id, pairing_id, generation, family_id), mail,
                             release_id)
               for release_id, device_id, pairing_id, generation, family_id in rows)


def _tell_holders(conn: Connection, current: Held, mail: Mail, release_id: str) -> bool:
    """Mail every parent of the holder; False (nobody told, nothing marked) when this
    process cannot open their addresses (no cloud key: the notifier tells them)."""
    rows = (conn.execute("SELECT email FROM parents WHERE family_id = %s", (current.family_id,))
            .fetchall() if current.family_id else
            conn.execute("SELECT parent_email FROM pairings WHERE pairing_id = %s",
                         (current.pairing_id,)).fetchall())
    addresses = [emails.show(conn, stored) for (stored,) in rows]
    if "(sealed)" in addresses:
        return False
    conn.execute("UPDATE custody_releases SET told_at = now() WHERE release_id = %s",
                 (release_id,))
    for to in addresses:
        try:
            mail(to, "Someone is trying to pair your Teddy bear",
                 "Hello,\n\nYour bear was factory-reset and another account is trying to pair "
                 "it. It stays paired to your family unless you agree in the parent app (your "
                 "bear's page). If you did not reset it, do nothing, or object there: its card "
                 "may have been copied.\n")
        except TeddyError as exc:
            logger.error("could not tell a parent about a release request: %s", exc)
    return True


def decide_release(conn: Connection, family_id: str, release_id: str, approve: bool,
                   actor: str) -> bool:
    """The holding family answers a release request; True when the bear was released."""
    with conn.transaction():
        row = conn.execute(
            "SELECT r.device_id, r.pairing_id::text FROM custody_releases r JOIN family_pairings"
            " fp ON fp.pairing_id = r.pairing_id WHERE r.release_id = %s AND fp.family_id = %s"
            " AND r.decided_at IS NULL AND r.expires_at > now() FOR UPDATE OF r",
            (release_id, family_id)).fetchone()
        if row is None:
            raise NotInFamilyError("that request was already answered or has expired")
        conn.execute("UPDATE custody_releases SET decided_at = now(), decision = %s,"
                     " decided_by = %s WHERE release_id = %s",
                     ("approved" if approve else "objected", actor, release_id))
        current = _lock_bear(conn, row[0])
        if current is None or current.pairing_id != row[1]:
            return False
        if not approve:
            record(conn, "release-objected", device_id=current.device_id,
                   pairing_id=current.pairing_id, generation=current.generation,
                   family_id=family_id, actor=actor, release_id=release_id)
            return False
        _end(conn, current, "released", actor, release_id=release_id)
    return True


def open_releases(conn: Connection, family_id: str) -> list[dict[str, Any]]:
    """Open release requests on the family's bears."""
    rows = conn.execute(
        "SELECT r.release_id::text, r.pairing_id::text, r.device_id, r.requested_at,"
        " r.expires_at FROM custody_releases r JOIN family_pairings fp USING (pairing_id)"
        " WHERE fp.family_id = %(family)s AND r.decided_at IS NULL AND r.expires_at > now()"
        f" AND {CURRENT.format(pairing='r.pairing_id')} ORDER BY r.requested_at",
        {"family": family_id}).fetchall()
    names = ("release_id", "pairing_id", "device_id", "requested_at", "expires_at")
    return [dict(zip(names, r, strict=True)) for r in rows]


# --- families --------------------------------------------------------------------------------


def token_hash(token: str) -> bytes:
    """What is kept of an invitation token: its SHA-256."""
    return hashlib.sha256(token.encode()).digest()


def new_family(conn: Connection, email: str, actor: str) -> tuple[str, str]:
    """A parent signing in for the first time: a family of their own (never another's);
    returns ``(parent_id, family_id)``."""
    with conn.transaction():
        family = one_row(conn.execute("INSERT INTO families DEFAULT VALUES"
                                      " RETURNING family_id::text"))[0]
        parent = one_row(conn.execute(
            "INSERT INTO parents (email, email_hash, family_id, role) VALUES (%s, %s, %s,"
            " 'owner') RETURNING parent_id::text",
            (emails.seal(conn, email), emails.lookup(conn, email), family)))[0]
        record(conn, "family-made", family_id=family, actor=actor, parent_id=parent)
    return parent, family


def invite(conn: Connection, family_id: str, inviter_id: str, email: str, ttl_s: float,
           per_day: int) -> tuple[str, str]:
    """Invited: a new invitation (its token hash kept); returns ``(invite_id, token)``.
    :class:`CustodyError` past ``per_day`` invitations of this family in a day."""
    token = secrets.token_urlsafe(32)
    with conn.transaction():
        conn.execute("SELECT 1 FROM families WHERE family_id = %s FOR UPDATE", (family_id,))
        sent = one_row(conn.execute(
            "SELECT count(*) FROM family_invites WHERE family_id = %s AND created_at >"
            " now() - interval '1 day'", (family_id,)))[0]
        if sent >= per_day:
            raise CustodyError(f"your family sent {sent} invitations today — wait a day, or "
                               "cancel one that was not needed")
        invite_id = one_row(conn.execute(
            "INSERT INTO family_invites (family_id, email, email_hash, invited_by, token_hash,"
            " expires_at) VALUES (%s, %s, %s, %s, %s, now() + make_interval(secs => %s))"
            " RETURNING invite_id::text",
            (family_id, emails.seal(conn, email), emails.lookup(conn, email), inviter_id,
             token_hash(token), ttl_s)))[0]
        record(conn, "invited", family_id=family_id, actor=inviter_id, invite_id=invite_id)
    return invite_id, token


def pending_invite(conn: Connection, token: str) -> dict[str, Any] | None:
    """The open invitation of ``token`` with who sent it (None: unknown, used or expired)."""
    row = conn.execute(
        "SELECT i.invite_id::text, i.family_id::text, i.email, p.email, i.expires_at"
        " FROM family_invites i JOIN parents p ON p.parent_id = i.invited_by"
        " WHERE i.token_hash = %s AND i.accepted_at IS NULL AND i.cancelled_at IS NULL"
        " AND i.declined_at IS NULL AND i.expires_at > now()", (token_hash(token),)).fetchone()
    if row is None:
        return None
    return {"invite_id": row[0], "family_id": row[1], "email": emails.show(conn, row[2]),
            "inviter": emails.show(conn, row[3]), "expires_at": row[4]}


def accept(conn: Connection, token: str, parent_id: str, email: str) -> str:
    """Invited → accepted: the signed-in parent (whose address the invitation names) joins
    the inviting family as a member, in ONE transaction; returns the family id."""
    with conn.transaction():
        found = conn.execute(
            "SELECT invite_id::text, family_id::text FROM family_invites WHERE token_hash = %s"
            " AND email_hash = %s AND accepted_at IS NULL AND cancelled_at IS NULL"
            " AND declined_at IS NULL AND expires_at > now() FOR UPDATE",
            (token_hash(token), emails.lookup(conn, email))).fetchone()
        if found is None:
            raise CustodyError("this invitation does not work for you: it was for another "
                               "address, or was used, cancelled or expired — ask for a new one")
        invite_id, family = found
        old = one_row(conn.execute("SELECT family_id::text FROM parents WHERE parent_id = %s"
                                   " FOR UPDATE", (parent_id,)))[0]
        if old == family:
            raise CustodyError("you are already a parent of this family")
        _check_can_go(conn, parent_id, old)
        conn.execute("UPDATE parents SET family_id = %s, role = 'member' WHERE parent_id = %s",
                     (family, parent_id))
        _ensure_owner(conn, old)
        conn.execute("UPDATE family_invites SET accepted_at = now(), accepted_by = %s WHERE"
                     " invite_id = %s", (parent_id, invite_id))
        record(conn, "accepted", family_id=family, actor=parent_id, invite_id=invite_id,
               left_family=old)
    return family


def decline(conn: Connection, token: str, email: str) -> bool:
    """The invited parent says no; True when an open invitation was declined."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE family_invites SET declined_at = now() WHERE token_hash = %s AND"
            " email_hash = %s AND accepted_at IS NULL AND cancelled_at IS NULL AND"
            " declined_at IS NULL RETURNING invite_id::text, family_id::text",
            (token_hash(token), emails.lookup(conn, email))).fetchone()
        if row is not None:
            record(conn, "declined", family_id=row[1], actor="the invited address",
                   invite_id=row[0])
    return row is not None


def cancel(conn: Connection, family_id: str, invite_id: str, actor: str) -> bool:
    """A member of the inviting family cancels an open invitation."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE family_invites SET cancelled_at = now() WHERE invite_id = %s AND"
            " family_id = %s AND accepted_at IS NULL AND cancelled_at IS NULL"
            " RETURNING invite_id", (invite_id, family_id)).fetchone()
        if row is not None:
            record(conn, "invite-cancelled", family_id=family_id, actor=actor,
                   invite_id=invite_id)
    return row is not None


def _check_can_go(conn: Connection, parent_id: str, family_id: str) -> None:
    """A parent may leave a family unless they are its last parent while it holds bears."""
    others = one_row(conn.execute("SELECT count(*) FROM parents WHERE family_id = %s AND"
                                  " parent_id <> %s", (family_id, parent_id)))[0]
    bears = one_row(conn.execute(
        f"SELECT count(*) FROM family_pairings fp WHERE fp.family_id = %(family)s AND"
        f" {CURRENT.format(pairing='fp.pairing_id')}", {"family": family_id}))[0]
    if others == 0 and bears:
        raise CustodyError(f"you are the only parent of a family that holds {bears} bear"
                           f"{'s' if bears > 1 else ''} — unpair them first (each bear's page)")


def leave(conn: Connection, parent_id: str) -> str:
    """Member → left: the parent gets a family of their own again; returns it."""
    return _part(conn, parent_id, None, "left")


def remove(conn: Connection, family_id: str, actor_id: str, member_id: str) -> str:
    """Member → removed by the family's owner; the removed parent gets a family of their
    own. :class:`CustodyError` when the actor is no owner or the member not in the family."""
    return _part(conn, member_id, (family_id, actor_id), "removed")


def _part(conn: Connection, parent_id: str, by: tuple[str, str] | None, kind: str) -> str:
    with conn.transaction():
        row = conn.execute("SELECT family_id::text FROM parents WHERE parent_id = %s FOR UPDATE",
                           (parent_id,)).fetchone()
        if row is None or (by is not None and row[0] != by[0]):
            raise NotInFamilyError("no such parent in your family")
        if by is not None:
            owner = conn.execute("SELECT 1 FROM parents WHERE parent_id = %s AND family_id = %s"
                                 " AND role = 'owner'", (by[1], by[0])).fetchone()
            if owner is None or by[1] == parent_id:
                raise CustodyError("only the family's owner can remove another parent")
        others = one_row(conn.execute("SELECT count(*) FROM parents WHERE family_id = %s AND"
                                      " parent_id <> %s", (row[0], parent_id)))[0]
        if others == 0:
            raise CustodyError("you are this family's only parent — there is nobody to leave")
        fresh = one_row(conn.execute("INSERT INTO families DEFAULT VALUES"
                                     " RETURNING family_id::text"))[0]
        conn.execute("UPDATE parents SET family_id = %s, role = 'owner' WHERE parent_id = %s",
                     (fresh, parent_id))
        _ensure_owner(conn, row[0])
        record(conn, kind, family_id=row[0], actor=by[1] if by else parent_id,
               parent_id=parent_id, new_family=fresh)
    return fresh


def _ensure_owner(conn: Connection, family_id: str) -> None:
    """A family whose owner went keeps one: its longest-standing parent."""
    conn.execute("UPDATE parents SET role = 'owner' WHERE parent_id = (SELECT parent_id"
                 " FROM parents WHERE family_id = %s ORDER BY created_at LIMIT 1) AND NOT"
                 " EXISTS (SELECT 1 FROM parents WHERE family_id = %s AND role = 'owner')",
                 (family_id, family_id))
