"""Every query for a family's data, scoped to the signed-in parent's family in ONE place.

:class:`FamilyService` is built for one parent; each family-data statement goes through
:meth:`FamilyService._rows`, which refuses SQL that does not name the family scope
(``{scope}``: the pairing ids of this family) and always binds this parent's family id. A
pairing, conversation, day or deletion of another family is not found — the app answers
404, exactly as for an id that does not exist. A pairing of an earlier generation (the bear
was since released and paired again) stays its family's to read, export and delete, but the
bear's live state and settings are shown, and commands sent, only while the family holds it
now (:data:`sync.cloud.custody.CURRENT`, in the same query; :func:`custody.held_device`).
The fleet CLI uses the same functions for what it shares with the app
(:func:`export_pairing`, :func:`delete_pairing_rows`).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from config.errors import TeddyError
from config.settings import Settings
from sync.cloud import custody, emails, family_keys, fleet_requests, wellbeing
from sync.cloud.db import one_row

if TYPE_CHECKING:
    from psycopg import Connection

logger = logging.getLogger(__name__)

SCOPE = "(SELECT fp.pairing_id FROM family_pairings fp WHERE fp.family_id = %(family)s)"
"""The family scope: the pairing ids of the signed-in parent's family."""
SCOPES = ("keep", "sync", "name")


class NotFoundError(TeddyError, LookupError):
    """No such thing in this family (it may exist in another: that is not said)."""


class PortalInputError(TeddyError, ValueError):
    """A parent's input was refused; the message says why and what to do."""


@dataclass(frozen=True)
class Parent:
    """The signed-in parent."""

    parent_id: str
    """Random id."""
    email: str
    """Their e-mail address (how they sign in)."""
    family_id: str
    """Their family."""
    role: str
    """``owner`` or ``member`` (an invited second parent)."""
    zone: str | None = None
    """The family's time zone (read with the session); None: ``portal.timezone``."""


def _uuid(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise NotFoundError("not found") from None


def open_text(conn: Connection, value: str) -> str | None:
    """A turn's text opened with its family key (None when the key was destroyed)."""
    ring = family_keys.keyring()
    if ring is None:
        return value if not value.startswith(family_keys.PREFIX) else None
    try:
        return ring.open(conn, value)
    except family_keys.SealedTextError:
        return None


def _show_times_in(conn: Connection, zone: str) -> None:
    """Read every timestamp on ``conn`` in the families' time zone (``portal.timezone``), so
    a conversation at 21:00 in New York is on that evening's day, not the next one's."""
    if conn.info.parameter_status("TimeZone") != zone:
        conn.execute("SELECT set_config('TimeZone', %s, false)", (zone,))


class FamilyService:
    """One parent's family: bears, conversations, alerts, settings, export and deletion."""

    def __init__(self, settings: Settings, conn: Connection, parent: Parent,
                 reads: Connection | None = None
                 ) -> None:
        self.settings = settings
        """Cloud settings (fleet signing, MQTT)."""
        self.conn = conn
        """An autocommit psycopg connection (the primary)."""
        self.parent = parent
        """Whose family this is."""
        self.reads = conn if reads is None else reads
        """Where the transcript pages read (what was said, alerts, export): a read replica
        (``portal.read_dsn``, which may lag the primary by its replay delay) or ``conn``."""
        self.zone = parent.zone or settings.portal.timezone
        """The family's time zone (its setting, else ``portal.timezone``): dates are shown,
        and days cut, in it."""
        for connection in {id(c): c for c in (self.conn, self.reads)}.values():
            _show_times_in(connection, self.zone)

    def _primary(self) -> FamilyService:
        """This family with every read on the primary (what a change decides on)."""
        return FamilyService(self.settings, self.conn, self.parent)

    # --- the one place family data is read -------------------------------------------

    def _rows(self, sql: str, params: dict[str, Any] | None = None, replica: bool = False
              ) -> list[tuple]:
        if "{scope}" not in sql:
            raise RuntimeError("a family query must be scoped with {scope}")
        bound = {**(params or {}), "family": self.parent.family_id}
        conn = self.reads if replica else self.conn
        return conn.execute(sql.replace("{scope}", SCOPE), bound).fetchall()

    def pairing(self, pairing_id: str) -> dict[str, Any]:
        """One of this family's bears by pairing id; :class:`NotFoundError` otherwise."""
        live = custody.CURRENT.format(pairing="p.pairing_id")
        rows = self._rows(
            "SELECT p.pairing_id::text, p.device_id, p.status, fp.child_name,"
            f" {live}, d.online, d.last_seen, d.firmware, u.state, u.target_version,"
            " c.desired, c.reported"
            " FROM pairings p JOIN family_pairings fp USING (pairing_id)"
            f" LEFT JOIN devices d ON d.device_id = p.device_id AND {live}"
            f" LEFT JOIN device_updates u ON u.device_id = p.device_id AND {live}"
            f" LEFT JOIN device_config c ON c.device_id = p.device_id AND {live}"
            " WHERE p.pairing_id = %(pairing)s AND p.pairing_id IN {scope}"
            " AND fp.removed_at IS NULL", {"pairing": _uuid(pairing_id)})
        if not rows:
            raise NotFoundError("no such bear in your family")
        names = ("pairing_id", "device_id", "status", "child_name", "current", "online",
                 "last_seen", "firmware", "update_state", "target_version", "desired",
                 "reported")
        bear = dict(zip(names, rows[0], strict=True))
        if not bear["current"] and bear["status"] == "approved":
            bear["status"] = "released"
        bear["health"] = self._health(bear)
        bear["consent"] = self._consent(bear["pairing_id"])
        return bear

    def bears(self) -> list[dict[str, Any]]:
        """Every bear of the family, newest pairing first."""
        rows = self._rows("SELECT p.pairing_id::text FROM pairings p WHERE p.pairing_id IN"
                          " {scope} AND NOT EXISTS (SELECT 1 FROM family_pairings r WHERE"
                          " r.pairing_id = p.pairing_id AND r.removed_at IS NOT NULL)"
                          " ORDER BY p.approved_at DESC NULLS LAST")
        return [self.pairing(r[0]) for r in rows]

    def _health(self, bear: dict[str, Any]) -> dict[str, Any]:
        rows = self._rows(
            "SELECT h.sample, h.sampled_at::date = now()::date FROM health_samples h"
            " JOIN pairings p ON p.device_id = h.device_id"
            " WHERE p.pairing_id = %(pairing)s AND p.pairing_id IN {scope}"
            f" AND {custody.CURRENT.format(pairing='p.pairing_id')}"
            " ORDER BY h.sampled_at DESC LIMIT 1", {"pairing": bear["pairing_id"]})
        metrics = (rows[0][0] or {}).get("metrics", {}) if rows else {}
        played = metrics.get("play_today_min") if rows and rows[0][1] else None
        battery = metrics.get("battery_percent", metrics.get("battery"))
        open_alerts = self._rows(
            "SELECT count(*) FROM alerts a WHERE a.pairing_id IN {scope}"
            " AND a.pairing_id = %(pairing)s AND a.cleared_at IS NULL"
            " AND a.kind NOT LIKE 'wellbeing.%%'", {"pairing": bear["pairing_id"]})[0][0]
        words = "All is well." if not open_alerts else (
            f"The bear reports {open_alerts} problem{'s' if open_alerts > 1 else ''}; "
            "try turning it off and on again.")
        return {"battery": battery, "problems": open_alerts, "words": words,
                "played_min": played if isinstance(played, int | float) else None}

    def _consent(self, pairing_id: str) -> dict[str, Any] | None:
        rows = self._rows(
            "SELECT scopes, notice_version, granted_at, parent_email, verified_by"
            " FROM consent_records WHERE pairing_id = %(pairing)s AND pairing_id IN {scope}"
            " AND revoked_at IS NULL ORDER BY granted_at DESC LIMIT 1", {"pairing": pairing_id})
        if not rows:  # paired by an operator (fleet pair approve): its consents row
            rows = self._rows(
                "SELECT c.scopes, 'not shown in the app', c.granted_at, c.parent_email,"
                " 'operator approval' FROM consents c JOIN pairings p USING (claim_id)"
                " WHERE p.pairing_id = %(pairing)s AND p.pairing_id IN {scope}"
                " AND c.revoked_at IS NULL ORDER BY c.granted_at DESC LIMIT 1",
                {"pairing": pairing_id})
        names = ("scopes", "notice_version", "granted_at", "parent_email", "verified_by")
        if not rows:
            return None
        consent = dict(zip(names, rows[0], strict=True))
        consent["parent_email"] = emails.show(self.conn, consent["parent_email"])
        return consent

    def conversations(self, pairing_id: str) -> list[dict[str, Any]]:
        """Conversations of one bear, newest first, with their day and whether any turn was
        flagged by the safety filter."""
        self.pairing(pairing_id)
        rows = self._rows(
            "SELECT t.conversation_id, min(t.created_at), count(*),"
            " bool_or(t.action <> 'allow') FROM turns t"
            " WHERE t.pairing_id = %(pairing)s AND t.pairing_id IN {scope}"
            " GROUP BY t.conversation_id ORDER BY 2 DESC", {"pairing": _uuid(pairing_id)},
            replica=True)
        return [{"conversation_id": r[0], "started_at": r[1], "day": r[1].date().isoformat(),
                 "turns": r[2], "flagged": r[3]} for r in rows]

    def transcript(self, pairing_id: str, conversation_id: str) -> list[dict[str, Any]]:
        """The turns of one conversation, opened with the family key."""
        rows = self._rows(
            "SELECT t.seq, t.role, t.text, t.created_at, t.action, t.categories FROM turns t"
            " WHERE t.pairing_id = %(pairing)s AND t.pairing_id IN {scope}"
            " AND t.conversation_id = %(conversation)s ORDER BY t.seq",
            {"pairing": _uuid(pairing_id), "conversation": conversation_id}, replica=True)
        if not rows:
            raise NotFoundError("no such conversation")
        return [{"seq": r[0], "role": r[1], "text": open_text(self.reads, r[2]),
                 "created_at": r[3], "action": r[4], "categories": list(r[5])} for r in rows]

    def alerts(self, quotes: bool = False, limit: int = 200) -> list[dict[str, Any]]:
        """The newest ``limit`` wellbeing alerts of the family's bears; with ``quotes`` each with
        the child's line that raised it (``turn``: carried by the bear with the alert, opened
        with the family key; None from older bears, and without ``quotes``: the dashboard
        does not show it, the inbox (:mod:`~sync.cloud.portal.inbox`) and export do)."""
        rows = self._rows(
            "SELECT a.pairing_id::text, a.kind, a.severity, a.message, a.raised_at,"
            " a.cleared_at, a.device_id, fp.child_name,"
            " COALESCE(a.category, a.details->'categories'->>0), a.quote"
            " FROM alerts a JOIN family_pairings fp ON fp.pairing_id = a.pairing_id"
            " WHERE a.pairing_id IN {scope} AND a.kind LIKE 'wellbeing.%%'"
            " ORDER BY a.raised_at DESC LIMIT %(limit)s", {"limit": limit}, replica=True)
        names = ("pairing_id", "kind", "severity", "message", "raised_at", "cleared_at",
                 "device_id", "child_name", "category")
        return [{**dict(zip(names, r[:9], strict=True)),
                 "category_words": wellbeing.category_words(r[8]),
                 "severity_words": wellbeing.severity_words(r[2]),
                 "turn": open_text(self.reads, r[9]) if r[9] and quotes else None}
                for r in rows]

    def deletions(self, pairing_id: str | None = None) -> list[dict[str, Any]]:
        """Deletions asked for, with whether the bear confirmed them."""
        where = "AND x.pairing_id = %(pairing)s" if pairing_id else ""
        rows = self._rows(
            "SELECT x.deletion_id::text, x.pairing_id::text, x.scope, x.requested_at,"
            " x.cloud_turns, coalesce(c.status, q.status), coalesce(c.reason, q.reason),"
            " c.result, x.due_at IS NOT NULL AND x.done_at IS NULL FROM portal_deletions x"
            " LEFT JOIN commands c ON c.id = x.command_id"
            " LEFT JOIN fleet_requests q ON q.command_id = x.command_id"
            f" WHERE x.pairing_id IN {{scope}} {where} ORDER BY x.requested_at DESC LIMIT 50",
            {"pairing": _uuid(pairing_id) if pairing_id else None})
        names = ("deletion_id", "pairing_id", "scope", "requested_at", "cloud_turns",
                 "bear_status", "bear_reason", "bear_result", "scheduled")
        return [_deletion_state(dict(zip(names, r, strict=True))) for r in rows]

    def deletion(self, deletion_id: str) -> dict[str, Any]:
        """One deletion of this family."""
        found = [d for d in self.deletions_by_id(_uuid(deletion_id))]
        if not found:
            raise NotFoundError("no such deletion")
        return found[0]

    def deletions_by_id(self, deletion_id: str) -> list[dict[str, Any]]:
        """The deletion with this id, if it is this family's (empty list otherwise)."""
        rows = self._rows("SELECT x.pairing_id::text FROM portal_deletions x WHERE"
                          " x.deletion_id = %(id)s AND x.pairing_id IN {scope}",
                          {"id": deletion_id})
        if not rows:
            return []
        return [d for d in self.deletions(rows[0][0]) if d["deletion_id"] == deletion_id]

    def members(self) -> list[dict[str, Any]]:
        """The family's parents and open invitations."""
        rows = self.conn.execute(
            "SELECT parent_id::text, email, role, created_at FROM parents WHERE family_id = %s"
            " ORDER BY created_at", (self.parent.family_id,)).fetchall()
        invites = self.conn.execute(
            "SELECT invite_id::text, email, created_at FROM family_invites WHERE family_id = %s"
            " AND accepted_at IS NULL AND cancelled_at IS NULL AND declined_at IS NULL AND"
            " expires_at > now() ORDER BY created_at", (self.parent.family_id,)).fetchall()
        return ([{"id": r[0], "email": emails.show(self.conn, r[1]), "role": r[2],
                  "since": r[3], "me": r[0] == self.parent.parent_id} for r in rows]
                + [{"id": r[0], "email": emails.show(self.conn, r[1]), "role": "invited",
                    "since": r[2], "me": False} for r in invites])

    def releases(self) -> list[dict[str, Any]]:
        """Open requests to release one of the family's bears (after a factory reset)."""
        return custody.open_releases(self.conn, self.parent.family_id)

    def retention_days(self) -> int:
        """Days the cloud keeps this family's transcripts."""
        return one_row(self.conn.execute(
            "SELECT retention_days FROM families WHERE family_id = %s",
            (self.parent.family_id,)))[0]

    # --- changes ----------------------------------------------------------------------

    def set_retention(self, days: int) -> None:
        """Keep transcripts ``days`` (1-30) in the cloud."""
        if not 1 <= days <= 30:
            raise PortalInputError("choose between 1 and 30 days")
        self.conn.execute("UPDATE families SET retention_days = %s WHERE family_id = %s",
                          (days, self.parent.family_id))

    def invite(self, email: str) -> str:
        """Invite a parent: a link mailed to them that they must open and accept (signing
        in never joins a family). The same answer whether or not the address has an
        account; :class:`PortalInputError` past the family's daily limit. Returns the
        invitation's token (for the mail)."""
        email = check_email(email)
        portal = self.settings.portal
        try:
            _invite_id, token = custody.invite(self.conn, self.parent.family_id,
                                               self.parent.parent_id, email,
                                               portal.invite_ttl_s,
                                               portal.invites_per_family_per_day)
        except custody.CustodyError as exc:
            raise PortalInputError(str(exc)) from None
        return token

    def cancel_invite(self, invite_id: str) -> None:
        """Cancel an open invitation of this family."""
        if not custody.cancel(self.conn, self.parent.family_id, _uuid(invite_id),
                              self.parent.parent_id):
            raise NotFoundError("no such open invitation")

    def remove_member(self, parent_id: str) -> None:
        """The owner removes another parent from the family."""
        try:
            custody.remove(self.conn, self.parent.family_id, self.parent.parent_id,
                           _uuid(parent_id))
        except custody.NotInFamilyError as exc:
            raise NotFoundError(str(exc)) from None
        except custody.CustodyError as exc:
            raise PortalInputError(str(exc)) from None

    def leave(self) -> None:
        """This parent leaves the family (they get a family of their own)."""
        try:
            custody.leave(self.conn, self.parent.parent_id)
        except custody.CustodyError as exc:
            raise PortalInputError(str(exc)) from None

    def decide_release(self, release_id: str, approve: bool) -> bool:
        """Answer a request to release one of the family's bears."""
        try:
            return custody.decide_release(self.conn, self.parent.family_id, _uuid(release_id),
                                          approve, self.parent.parent_id)
        except custody.NotInFamilyError as exc:
            raise NotFoundError(str(exc)) from None
        except custody.CustodyError as exc:
            raise PortalInputError(str(exc)) from None

    def configure(self, pairing_id: str, values: dict[str, Any]) -> None:
        """Ask the fleet service to push volume, age band, quiet hours and the daily limit
        to the bear (signed there), checked here first as the bear would check them."""
        from sync.cloud.fleet import FleetError, check_config_locally

        try:
            check_config_locally(self.settings, values)
            fleet_requests.ask(self.conn, self.parent.family_id, _uuid(pairing_id),
                               "config", values)
        except (FleetError, fleet_requests.NotHeldError) as exc:
            raise PortalInputError(str(exc)) from None

    def adopt_pairing(self, device_id: str, child_name: str, scopes: tuple[str, ...],
                      notice: tuple[str, str], client: str) -> str:
        """After ``pairing.approve(family_id=...)`` for this parent (which made this family
        the bear's holder): name the child and record the consent; returns the pairing id."""
        with self.conn.transaction():
            row = self.conn.execute(
                "SELECT d.pairing_id::text FROM devices d JOIN family_pairings fp ON"
                " fp.pairing_id = d.pairing_id WHERE d.device_id = %(device)s AND"
                f" fp.family_id = %(family)s AND {custody.CURRENT.format(pairing='d.pairing_id')}"
                " FOR UPDATE OF fp", {"device": device_id, "family": self.parent.family_id}
            ).fetchone()
            if row is None:
                raise NotFoundError("the pairing was not recorded")
            pairing_id = row[0]
            self.conn.execute("UPDATE family_pairings SET child_name = %s WHERE pairing_id = %s",
                              (child_name[:60], pairing_id))
            self.conn.execute(
                "INSERT INTO consent_records (family_id, pairing_id, parent_id, parent_email,"
                " notice_version, notice_sha256, scopes, verified_by, client) VALUES"
                " (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (self.parent.family_id, pairing_id, self.parent.parent_id,
                 emails.seal(self.conn, self.parent.email),
                 notice[0], notice[1], list(scopes),
                 "e-mail one-time link session + typed bear code", client))
        return pairing_id

    def delete(self, pairing_id: str, scope: str, conversation_ids: list[str] | None = None
               ) -> str:
        """Delete a conversation, a day or everything of one bear: the cloud rows now, and
        on the bear by the signed ``delete-data`` command; returns the deletion id (its
        bear-side state shows once the bear's result arrives)."""
        bear = self.pairing(pairing_id)
        ids = None if conversation_ids is None else sorted(set(conversation_ids))
        deleted = delete_pairing_rows(self.conn, bear["pairing_id"], ids)
        if ids is None:
            family_keys.destroy(self.conn, bear["pairing_id"])
        args: dict[str, Any] = {} if ids is None else {"conversation_ids": ids}
        command_id = None
        if bear["current"]:  # the bear is told only while this family holds it
            command_id = self._ask_bear(bear, "delete-data", args, ttl_s=7 * 24 * 3600)
        row = one_row(self.conn.execute(
            "INSERT INTO portal_deletions (family_id, pairing_id, scope, command_id,"
            " cloud_turns) VALUES (%s, %s, %s, %s, %s) RETURNING deletion_id::text",
            (self.parent.family_id, bear["pairing_id"], scope, command_id, deleted)))
        logger.info("family deletion %s (%s) of %s: %d cloud turns", row[0], scope,
                    bear["device_id"], deleted)
        return row[0]

    def delete_conversation(self, pairing_id: str, conversation_id: str) -> str:
        """Delete one conversation (cloud and bear)."""
        self._primary().transcript(pairing_id, conversation_id)  # must be this family's
        return self.delete(pairing_id, "conversation", [conversation_id])

    def delete_day(self, pairing_id: str, day: str) -> str:
        """Delete every conversation that started on ``day`` (YYYY-MM-DD)."""
        try:
            wanted = date.fromisoformat(day).isoformat()
        except ValueError:
            raise NotFoundError("no such day") from None
        ids = [c["conversation_id"] for c in self._primary().conversations(pairing_id)
               if c["day"] == wanted]
        if not ids:
            raise NotFoundError("no conversations that day")
        return self.delete(pairing_id, f"day {wanted}", ids)

    def revoke(self, pairing_id: str) -> str:
        """Revoke consent: delete everything (cloud, bear, family key) and unpair the bear."""
        bear = self.pairing(pairing_id)
        deletion = self.delete(pairing_id, "everything (consent revoked)")
        if self._ask_bear(bear, "unpair", {"delete": True}) is not None:
            custody.release(self.conn, bear["device_id"], actor=self.parent.parent_id,
                            family_id=self.parent.family_id, pairing_id=bear["pairing_id"])
        return deletion

    def _ask_bear(self, bear: dict[str, Any], name: str, args: dict[str, Any],
                  ttl_s: float | None = None) -> str | None:
        """Ask the fleet service for ``name`` on this family's bear; its command id, or None
        when the family does not hold the bear now (nothing to tell it)."""
        if not bear["current"]:
            return None
        try:
            return fleet_requests.ask(self.conn, self.parent.family_id, bear["pairing_id"],
                                      name, args, ttl_s)
        except fleet_requests.NotHeldError:
            return None

    def export(self) -> dict[str, Any]:
        """Everything the cloud keeps for this family, readable."""
        bears = self.bears()
        return {
            "family": {"members": self.members(), "retention_days": self.retention_days()},
            "bears": [{**{k: b[k] for k in ("pairing_id", "device_id", "child_name",
                                              "status", "consent", "desired")},
                       **export_pairing(self.reads, b["pairing_id"])} for b in bears],
            "alerts": self.alerts(quotes=True),
        }


def export_pairing(conn: Connection, pairing_id: str) -> dict[str, Any]:
    """Every conversation of one pairing, text opened (shared with ``fleet export``)."""
    rows = conn.execute(
        "SELECT conversation_id, seq, role, text, created_at, action, categories FROM turns"
        " WHERE pairing_id = %s ORDER BY created_at, seq", (pairing_id,)).fetchall()
    conversations: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        conversations.setdefault(r[0], []).append(
            {"seq": r[1], "role": r[2], "text": open_text(conn, r[3]), "created_at": r[4],
             "action": r[5], "categories": list(r[6])})
    return {"conversations": [{"conversation_id": k, "turns": v}
                              for k, v in conversations.items()]}


def delete_pairing_rows(conn: Connection, pairing_id: str,
                        conversation_ids: list[str] | None) -> int:
    """Delete a pairing's turns (only the given conversations, and the quotes of the alerts
    they raised; or all with their wellbeing alerts); returns the turns deleted (shared with
    the fleet CLI's delete-data)."""
    with conn.transaction():
        if conversation_ids is None:
            conn.execute("DELETE FROM alerts WHERE pairing_id = %s AND kind LIKE"
                         " 'wellbeing.%%'", (pairing_id,))
            return conn.execute("DELETE FROM turns WHERE pairing_id = %s",
                                (pairing_id,)).rowcount
        conn.execute("UPDATE alerts SET quote = NULL WHERE pairing_id = %s AND"  # the words
                     " conversation_id = ANY(%s)", (pairing_id, conversation_ids))  # go too
        return conn.execute("DELETE FROM turns WHERE pairing_id = %s AND conversation_id ="
                            " ANY(%s)", (pairing_id, conversation_ids)).rowcount


def check_email(email: str) -> str:
    """A plausible e-mail address, trimmed; :class:`PortalInputError` otherwise."""
    email = email.strip()
    local, at, domain = email.partition("@")
    if not at or not local or "." not in domain or len(email) > 254 or " " in email:
        raise PortalInputError(f"{email!r} is not an e-mail address — type it like "
                               "sam@example.org")
    return email


def _deletion_state(d: dict[str, Any]) -> dict[str, Any]:
    result = d.pop("bear_result") or {}
    if d.pop("scheduled", False):
        d["bear"] = "scheduled: you can still undo it"
        d["on_bear"] = False
    elif d["bear_status"] is None:
        d["bear"] = "not paired: nothing to delete on the bear"
        d["on_bear"] = True
    elif d["bear_status"] == "done" and result.get("conversations_left") == 0:
        d["bear"] = "deleted on the bear"
        d["on_bear"] = True
    elif d["bear_status"] in ("sent", "pending", "sending"):
        d["bear"] = "waiting for the bear (it deletes when it is next online)"
        d["on_bear"] = False
    else:
        d["bear"] = f"the bear could not delete: {d['bear_reason'] or d['bear_status']}"
        d["on_bear"] = False
    return d


def retention_sweep(conn: Connection, default_days: int, now: datetime | None = None) -> int:
    """Delete transcripts older than each family's retention (turns of no family: older
    than ``default_days``); returns the turns deleted."""
    at = now or datetime.now().astimezone()
    with conn.transaction():
        family = conn.execute(
            "DELETE FROM turns t USING family_pairings fp JOIN families f USING (family_id)"
            " WHERE t.pairing_id = fp.pairing_id"
            " AND t.created_at < %s - make_interval(days => f.retention_days)", (at,)).rowcount
        other = conn.execute(
            "DELETE FROM turns t WHERE NOT EXISTS (SELECT 1 FROM family_pairings fp WHERE"
            " fp.pairing_id = t.pairing_id) AND t.created_at < %s - make_interval(days => %s)",
            (at, default_days)).rowcount
        conn.execute(  # an alert's quote is the child's words: kept no longer than they are
            "UPDATE alerts a SET quote = NULL FROM family_pairings fp JOIN families f USING"
            " (family_id) WHERE a.pairing_id = fp.pairing_id AND a.quote IS NOT NULL"
            " AND a.raised_at < %s - make_interval(days => f.retention_days)", (at,))
    return family + other
