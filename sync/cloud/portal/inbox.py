"""The wellbeing inbox: alerts a parent can act on.

Each wellbeing alert shows its category in plain words and its severity, the exact line
the child said that raised it (carried by the bear with the alert, sealed with the family's
key; older bears send none), a link to that moment in the transcript, and "mark as seen".
Marking seen is per family and checks, in the same statement, that the family holds the
alert's bear now (:data:`sync.cloud.custody.CURRENT`) and that the parent is still in the
family. The family chooses how it hears of alerts (:class:`AlertPrefs`); ``teddy-cloud
notify run`` honours the choice (:mod:`sync.cloud.wellbeing`).
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route functions'
# annotations (``Fam``, ``Form``, imported where the routes are added) as live objects.
import logging
from typing import TYPE_CHECKING, Any

from fastapi import Request

from sync.cloud import custody
from sync.cloud.portal.service import FamilyService, NotFoundError, PortalInputError, open_text
from sync.cloud.wellbeing import (
    IMMEDIATE_CHOICES,
    URGENT,
    AlertPrefs,
    category_words,
    first_category,
    prefs,
    severity_words,
)

if TYPE_CHECKING:
    from psycopg import Connection

logger = logging.getLogger(__name__)


def alert_link(alert: dict[str, Any]) -> str:
    """Where "see it in the conversation" goes: the turn itself (its anchor) when the bear
    said where and the words are here (sent to the app, not deleted since), else the bear's
    conversations."""
    base = f"/bears/{alert['pairing_id']}/conversations"
    if alert.get("quote") and alert.get("conversation_id") and alert.get("turn_seq"):
        return f"{base}/{alert['conversation_id']}#turn-{alert['turn_seq']}"
    return base


def inbox(fam: FamilyService) -> list[dict[str, Any]]:
    """The family's wellbeing alerts, newest first, each with its quote opened, words,
    link, whether it was seen and whether it can be marked (its bear is held now)."""
    live = custody.CURRENT.format(pairing="a.pairing_id")
    rows = fam._rows(  # the family's one scoped door
        "SELECT a.id, a.pairing_id::text, a.kind, a.severity, a.message, a.raised_at,"
        " a.device_id, fp.child_name, a.category, a.details, a.quote, a.conversation_id,"
        f" a.turn_seq, s.seen_at, {live}"
        " FROM alerts a JOIN family_pairings fp ON fp.pairing_id = a.pairing_id"
        " LEFT JOIN alert_seen s ON s.alert_id = a.id AND s.family_id = %(family)s"
        " WHERE a.pairing_id IN {scope} AND a.kind LIKE 'wellbeing.%%'"
        " ORDER BY a.raised_at DESC, a.id DESC LIMIT 200")
    names = ("id", "pairing_id", "kind", "severity", "message", "raised_at", "device_id",
             "child_name", "category", "details", "quote", "conversation_id", "turn_seq",
             "seen_at", "current")
    alerts = []
    for row in rows:
        alert = dict(zip(names, row, strict=True))
        alert["category"] = first_category(alert["category"], alert.pop("details"))
        alert["quote"] = open_text(fam.conn, alert["quote"]) if alert["quote"] else None
        alert["category_words"] = category_words(alert["category"])
        alert["severity_words"] = severity_words(alert["severity"])
        alert["urgent"] = alert["severity"] in URGENT
        alert["link"] = alert_link(alert)
        alerts.append(alert)
    return alerts


def mark_seen(fam: FamilyService, alert_id: str) -> bool:
    """Mark one of the family's alerts seen, in ONE statement that checks the alert is the
    family's, its bear is held by the family now, and the parent is still a member; True if
    it is (now or already) seen. :class:`NotFoundError` for an alert not the family's,
    :class:`PortalInputError` for one of a bear the family no longer holds."""
    try:
        number = int(alert_id)
    except ValueError:
        raise NotFoundError("no such alert") from None
    if not 0 < number < 2**63:
        raise NotFoundError("no such alert")
    live = custody.CURRENT.format(pairing="a.pairing_id")
    params = {"alert": number, "parent": fam.parent.parent_id}
    marked = fam._rows(
        "INSERT INTO alert_seen (alert_id, family_id, parent_id)"
        " SELECT a.id, %(family)s, %(parent)s FROM alerts a WHERE a.id = %(alert)s"
        " AND a.kind LIKE 'wellbeing.%%' AND a.pairing_id IN {scope} AND " + live +
        " AND EXISTS (SELECT 1 FROM parents m WHERE m.parent_id = %(parent)s"
        "  AND m.family_id = %(family)s)"
        " ON CONFLICT (alert_id, family_id) DO UPDATE SET seen_at = alert_seen.seen_at"
        " RETURNING alert_id", params)
    if marked:
        return True
    found = fam._rows(
        "SELECT 1 FROM alerts a WHERE a.id = %(alert)s AND a.kind LIKE 'wellbeing.%%'"
        " AND a.pairing_id IN {scope}", params)
    if not found:
        raise NotFoundError("no such alert")
    raise PortalInputError("This bear is no longer paired to your family, so its alerts "
                           "cannot be changed; they stay here for you to read.")


def save_prefs(conn: "Connection", family_id: str, immediate: str, digest: bool) -> AlertPrefs:
    """Record the family's choice; :class:`PortalInputError` for one not offered."""
    if immediate not in IMMEDIATE_CHOICES:
        raise PortalInputError("Choose which alerts to e-mail at once from the list.")
    conn.execute(
        "INSERT INTO family_alert_prefs (family_id, immediate, digest) VALUES (%s, %s, %s)"
        " ON CONFLICT (family_id) DO UPDATE SET immediate = EXCLUDED.immediate,"
        " digest = EXCLUDED.digest, updated_at = now()", (family_id, immediate, digest))
    logger.info("family %s alert e-mails: immediate=%s digest=%s", family_id, immediate, digest)
    return AlertPrefs(immediate, digest)


def add_inbox_routes(app: Any, page: Any, RedirectResponse: Any) -> None:  # noqa: N803
    """Register the inbox pages: ``/alerts``, ``/alerts/{id}/seen``, ``/alerts/settings``."""
    from sync.cloud.portal.routes import Fam, Form, posted

    def show(request: Request, fam: FamilyService, status: int = 200, **extra: Any) -> Any:
        alerts = inbox(fam)
        return page(request, "inbox.html", status, title="Wellbeing alerts", alerts=alerts,
                    unseen=sum(1 for a in alerts if a["seen_at"] is None),
                    prefs=prefs(fam.conn, fam.parent.family_id),
                    choices=IMMEDIATE_CHOICES, **extra)

    @app.get("/alerts")
    def alerts_page(request: Request, fam: Fam):
        return show(request, fam, seen=request.query_params.get("seen") == "1")

    @app.post("/alerts/{alert_id}/seen")
    def alert_seen(request: Request, alert_id: str, fam: Fam, raw: Form):
        posted(request, fam, raw)
        try:
            mark_seen(fam, alert_id)
        except PortalInputError as exc:
            return show(request, fam, 409, error=str(exc))
        return RedirectResponse(f"/alerts?seen=1#alert-{int(alert_id)}", status_code=303)

    @app.get("/alerts/settings")
    def alert_settings(request: Request, fam: Fam):
        return page(request, "inbox_settings.html", title="Alert e-mails",
                    prefs=prefs(fam.conn, fam.parent.family_id), choices=IMMEDIATE_CHOICES,
                    saved=request.query_params.get("saved") == "1")

    @app.post("/alerts/settings")
    def alert_settings_save(request: Request, fam: Fam, raw: Form):
        form = posted(request, fam, raw)
        immediate, digest = str(form.get("immediate", "")), form.get("digest") == "yes"
        try:
            save_prefs(fam.conn, fam.parent.family_id, immediate, digest)
        except PortalInputError as exc:
            return page(request, "inbox_settings.html", 400, title="Alert e-mails",
                        prefs=AlertPrefs(immediate, digest), choices=IMMEDIATE_CHOICES,
                        error=str(exc))
        return RedirectResponse("/alerts/settings?saved=1", status_code=303)
