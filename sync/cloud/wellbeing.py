"""Wellbeing alerts as a family hears of them: plain words, the family's e-mail choice, and
the daily summary.

A family chooses (``family_alert_prefs``; no row: the default) which wellbeing alerts are
e-mailed at once — ``high`` (urgent ones: high and critical), ``all`` or ``none`` — and
whether the rest come in a daily summary. :func:`immediate_sql` is that choice as SQL, used
by the notifier's fan-out and by the summary alike, so an alert is e-mailed at once or in a
summary, never both. :func:`send_digests` sends each family at most one summary a day: the
``wellbeing_digests`` row of (family, day) is inserted in the transaction that marks the
alerts and sends the mail, so a crash before the commit leaves nothing sent-and-forgotten
(it goes next round) and a restart never sends the day's summary again. No e-mail carries
what the child said: the parent reads it in the app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from psycopg import Connection

logger = logging.getLogger(__name__)

CATEGORY_WORDS = {
    "self_harm": "Talked about hurting themselves",
    "abuse": "Said someone is hurting them",
    "secrets": "Was asked to keep a secret from you",
    "lures": "Someone may be trying to meet or contact them",
    "medical_emergency": "May be hurt, unwell or have swallowed something",
    "bullying": "Other children were unkind to them",
    "distress": "Sad, scared or upset",
}
"""Each escalating category of the bear's ``agent/safety/categories.json`` (the one list of
categories; a test checks this covers exactly its escalating ones) in plain words."""
OTHER_CATEGORY = "Something a grown-up should know about"
"""What an alert without a known category says (older bears, a category added later)."""
URGENT = ("high", "critical")
"""Severities shown, and by default e-mailed at once, as urgent."""
IMMEDIATE_CHOICES = {
    "high": "Only urgent alerts (recommended)",
    "all": "Every alert",
    "none": "None: I look in the app or read the daily summary",
}
"""What a family may have e-mailed at once, in plain words."""
DIGEST_LOOKBACK = timedelta(days=2)
"""A summary lists alerts of at most this long ago (a notifier started late, or a family
that just turned summaries on, does not get last month's)."""


@dataclass(frozen=True)
class AlertPrefs:
    """How a family hears of wellbeing alerts."""

    immediate: str = "high"
    """E-mailed at once: ``high`` (urgent ones), ``all`` or ``none``."""
    digest: bool = True
    """A daily summary of the alerts not e-mailed at once and not yet seen."""


def category_words(category: str | None) -> str:
    """A category as a parent reads it."""
    return CATEGORY_WORDS.get(category or "", OTHER_CATEGORY)


def severity_words(severity: str) -> str:
    """``Urgent`` or ``Not urgent``."""
    return "Urgent" if severity in URGENT else "Not urgent"


def first_category(category: str | None, details: dict[str, Any] | None) -> str | None:
    """The alert's category: its own (v2 bears) or the first of its details' (v1)."""
    if category:
        return category
    categories = (details or {}).get("categories")
    if isinstance(categories, list) and categories and isinstance(categories[0], str):
        return categories[0]
    return None


def immediate_sql(alias: str = "a") -> str:
    """SQL true when alert ``alias`` goes to its family by e-mail at once, by the choice of
    the family holding its pairing (the default for a family that never chose; a pairing of
    no family — an operator's — always at once, as before)."""
    return (
        f"COALESCE((SELECT CASE p.immediate WHEN 'all' THEN true WHEN 'none' THEN false"
        f" ELSE {alias}.severity IN ('high', 'critical') END"
        f" FROM family_pairings wf LEFT JOIN family_alert_prefs p USING (family_id)"
        f" WHERE wf.pairing_id = {alias}.pairing_id), true)")


def prefs(conn: Connection, family_id: str) -> AlertPrefs:
    """The family's choice (the default when it never chose)."""
    row = conn.execute("SELECT immediate, digest FROM family_alert_prefs WHERE family_id = %s",
                       (family_id,)).fetchone()
    return AlertPrefs() if row is None else AlertPrefs(row[0], bool(row[1]))


def family_addresses(conn: Connection, alert_ids: list[int]) -> dict[int, tuple[str, ...]]:
    """Alert id -> the e-mail addresses of the parents of the family holding its pairing
    (opened from their sealed form; never logged)."""
    from sync.cloud import emails

    if not alert_ids:
        return {}
    rows = conn.execute(
        "SELECT a.id, array_agg(m.email ORDER BY m.created_at) FROM alerts a"
        " JOIN family_pairings fp ON fp.pairing_id = a.pairing_id"
        " JOIN parents m ON m.family_id = fp.family_id WHERE a.id = ANY(%s) GROUP BY a.id",
        (alert_ids,)).fetchall()
    found = {}
    for alert_id, stored in rows:
        shown = [emails.show(conn, s) for s in stored]
        found[alert_id] = tuple(a for a in shown if a != "(sealed)")
    return found


def due_day(now: datetime, hour: int, zone: str) -> tuple[date, datetime]:
    """The day whose summary may go out at ``now`` and its cut-off (``hour`` o'clock that
    day in ``zone``): today from ``hour`` on, else yesterday (a summary the notifier missed
    goes out late, not never). A summary lists alerts raised up to its cut-off only: what
    came after waits for the next day's."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    day = local.date() if local.hour >= hour else local.date() - timedelta(days=1)
    return day, datetime.combine(day, dt_time(hour), tzinfo=tz)


CANDIDATES = """
SELECT a.id, a.severity, a.category, a.details, a.raised_at, fp.child_name
FROM alerts a JOIN family_pairings fp ON fp.pairing_id = a.pairing_id
WHERE fp.family_id = %(family)s AND a.kind LIKE 'wellbeing.%%' AND a.digest_day IS NULL
  AND a.raised_at > %(since)s AND a.raised_at <= %(cutoff)s
  AND NOT EXISTS (SELECT 1 FROM alert_seen s WHERE s.alert_id = a.id
                  AND s.family_id = fp.family_id)
  AND NOT {immediate}
ORDER BY a.raised_at FOR UPDATE OF a SKIP LOCKED
"""
FAMILIES = """
SELECT DISTINCT fp.family_id::text FROM alerts a
JOIN family_pairings fp ON fp.pairing_id = a.pairing_id
LEFT JOIN family_alert_prefs p ON p.family_id = fp.family_id
WHERE a.kind LIKE 'wellbeing.%%' AND a.digest_day IS NULL AND a.raised_at > %(since)s
  AND a.raised_at <= %(cutoff)s AND COALESCE(p.digest, true)
  AND NOT EXISTS (SELECT 1 FROM wellbeing_digests d WHERE d.family_id = fp.family_id
                  AND d.day = %(day)s)
"""

Send = Callable[[tuple[str, ...], str, str], None]
"""Sends one e-mail: ``(to, subject, body)``; raises on failure (the summary is retried)."""


def send_digests(conn: Connection, send: Send, now: datetime, hour: int, zone: str,
                 app_url: str | None = None) -> int:
    """Send each family whose summary of :func:`due_day` is not sent yet, and that has
    alerts for it, its summary; returns how many went out. One transaction per family: its day's
    row, its alerts marked, the mail sent, then the commit (a failed send rolls all back)."""
    day, cutoff = due_day(now, hour, zone)
    since = cutoff - DIGEST_LOOKBACK
    families = [r[0] for r in conn.execute(FAMILIES, {"since": since, "cutoff": cutoff,
                                                      "day": day}).fetchall()]
    sent = 0
    for family_id in families:
        try:
            sent += _send_one(conn, send, family_id, day, since, cutoff, app_url, zone)
        except Exception as exc:  # one family's failure never stops the others
            logger.warning("daily summary for family %s of %s not sent (%s); trying again "
                           "next round", family_id, day, exc)
    return sent


def _send_one(conn: Connection, send: Send, family_id: str, day: date, since: datetime,
              cutoff: datetime, app_url: str | None, zone: str) -> int:
    with conn.transaction():
        alerts = conn.execute(CANDIDATES.format(immediate=immediate_sql("a")),
                              {"family": family_id, "since": since, "cutoff": cutoff}
                              ).fetchall()
        if not alerts:
            return 0
        claimed = conn.execute(
            "INSERT INTO wellbeing_digests (family_id, day, alerts) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING RETURNING day", (family_id, day, len(alerts))).fetchone()
        if claimed is None:
            return 0  # another notifier sent it
        conn.execute("UPDATE alerts SET digest_day = %s WHERE id = ANY(%s)",
                     (day, [a[0] for a in alerts]))
        to = family_addresses(conn, [alerts[0][0]]).get(alerts[0][0], ())
        if not to:
            logger.warning("family %s has no readable address: its summary of %s is not "
                           "sent (is the cloud key given to notify?)", family_id, day)
            raise RuntimeError("no readable parent address")
        subject, body = digest_text(alerts, day, app_url, zone)
        send(to, subject, body)
    logger.info("daily summary of %s sent to family %s: %d alerts", day, family_id,
                len(alerts))
    return 1


def digest_text(alerts: list[tuple], day: date, app_url: str | None, zone: str = "UTC"
                ) -> tuple[str, str]:
    """Subject and body of a summary: when, what (in plain words), which bear — never the
    child's words."""
    count = len(alerts)
    subject = f"Teddy: {count} wellbeing alert{'s' if count != 1 else ''} to look at"
    lines = [f"Your Teddy summary for {day:%A %d %B %Y}.", "",
             f"{count} moment{'s' if count != 1 else ''} your child's bear thought a grown-up "
             "should know about (not urgent):", ""]
    for _id, severity, category, details, raised_at, child_name in alerts:
        bear = f"{child_name}'s bear" if child_name else "your bear"
        lines.append(f"- {raised_at.astimezone(ZoneInfo(zone)):%H:%M}, {bear}: "
                     f"{category_words(first_category(category, details))} "
                     f"({severity_words(severity).lower()})")
    lines += ["", "What your child said is only in the app, not in this e-mail."]
    if app_url:
        lines.append(f"Read them and mark them seen: {app_url.rstrip('/')}/alerts")
    lines.append("You can change which alerts are e-mailed in the app's alert settings.")
    return subject, "\n".join(lines) + "\n"
