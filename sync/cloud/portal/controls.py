"""Controls a parent knows (issue 22): quiet hours per weekday (with school-night and
weekend presets), pause and resume, bonus time for today, a child profile per bear, the
family's time zone, and removing a bear the family no longer holds from the dashboard.

Every control is desired config the fleet service signs for the bear
(:meth:`FamilyService.configure`, checked first with the bear's own models); the values are
range-checked here in plain words before that, and a refused form comes back with what the
parent typed. A bear whose software does not know a new key refuses it as "not a setting";
the cloud then withholds that key from it (:func:`sync.cloud.fleet.withheld_keys`) and the
page says which controls need newer software.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request

from config.play import HHMM, MAX_BONUS_MIN, TIME_ERROR, WEEKDAYS
from config.settings import Settings
from sync.cloud import family_keys
from sync.cloud.fleet import withheld_keys
from sync.cloud.portal import feedback, words
from sync.cloud.portal.routes import Fam, Form, posted
from sync.cloud.portal.service import (
    FamilyService,
    NotFoundError,
    PortalInputError,
    _uuid,
    delete_pairing_rows,
)

logger = logging.getLogger(__name__)

DAY_NAMES = tuple(d.capitalize() for d in WEEKDAYS)
"""Monday first, as :attr:`config.play.PlaySettings.weekly`."""
SCHOOL_NIGHTS = (6, 0, 1, 2, 3)
"""Evenings before a school day: Sunday to Thursday."""
WEEKEND_NIGHTS = (4, 5)
"""Friday and Saturday evenings."""
BONUS_CHOICES = (15, 30, 60)
"""Bonus minutes offered as one press."""
AGE_BANDS = ("3-5", "6-8", "9-12")
"""The bear's age bands (``dialogue.age_band``)."""
NEWER_KEYS = {"play.weekly": "quiet hours per weekday", "play.paused": "pause",
              "play.bonus_min": "bonus time", "play.bonus_at": "bonus time",
              "dialogue.child_name": "the child's name"}
"""Keys an older bear may not know, and what the parent calls them."""


# --- reading the forms -------------------------------------------------------------------

def window_from(start: Any, end: Any, what: str) -> str:
    """``"19:30-07:00"`` from two typed times, ``""`` when both are empty;
    :class:`PortalInputError` in plain words otherwise."""
    a, b = str(start or "").strip(), str(end or "").strip()
    if not a and not b:
        return ""
    if not a or not b:
        raise PortalInputError(f"Give both a start and an end for {what}, or leave both "
                               "empty for no quiet hours.")
    for typed in (a, b):
        if not HHMM.match(typed):
            raise PortalInputError(f"{TIME_ERROR} for {what} (not “{typed[:10]}”).")
    return f"{a}-{b}"


def weekly_from(form: dict[str, Any]) -> list[str]:
    """The seven windows of the per-day form (``monday_from``, ``monday_until``, ...)."""
    return [window_from(form.get(f"{day}_from"), form.get(f"{day}_until"), name)
            for day, name in zip(WEEKDAYS, DAY_NAMES, strict=True)]


def weekly_from_presets(form: dict[str, Any]) -> list[str]:
    """The week from a school-night window (Sunday to Thursday) and a weekend one."""
    school = window_from(form.get("school_from"), form.get("school_until"), "school nights")
    weekend = window_from(form.get("weekend_from"), form.get("weekend_until"),
                          "weekend nights")
    return [school if day in SCHOOL_NIGHTS else weekend for day in range(7)]


def week_of(cfg: dict[str, Any]) -> list[tuple[str, str]]:
    """The bear's quiet hours as seven ``(from, until)`` pairs (the every-day window on
    each day when no weekly schedule is set)."""
    weekly = cfg.get("play.weekly")
    if not isinstance(weekly, list) or len(weekly) != 7:
        every = (cfg.get("play.quiet_from") or "", cfg.get("play.quiet_until") or "")
        return [every if all(every) else ("", "")] * 7
    return [tuple(w.split("-")) if w else ("", "") for w in weekly]


def bonus_today(cfg: dict[str, Any], zone: str, now: float | None = None) -> int:
    """Bonus minutes already given for today (the family's day)."""
    given, minutes = cfg.get("play.bonus_at"), cfg.get("play.bonus_min") or 0
    if not isinstance(given, int | float) or not minutes:
        return 0
    tz = ZoneInfo(zone)
    today = datetime.fromtimestamp(now or time.time(), tz).date()
    return int(minutes) if datetime.fromtimestamp(given, tz).date() == today else 0


def bonus_values(cfg: dict[str, Any], typed: Any, zone: str) -> dict[str, Any]:
    """Desired config adding ``typed`` minutes to today's bonus."""
    try:
        minutes = int(str(typed).strip())
    except ValueError:
        raise PortalInputError("Choose how many minutes of bonus time (1 to "
                               f"{MAX_BONUS_MIN}).") from None
    if not cfg.get("play.daily_limit_min"):
        raise PortalInputError("Bonus time adds to the daily time limit, and none is set: "
                               "set one on the bear's page first.")
    total = bonus_today(cfg, zone) + minutes
    if not 1 <= minutes <= MAX_BONUS_MIN or total > MAX_BONUS_MIN:
        raise PortalInputError(f"Choose between 1 and {MAX_BONUS_MIN} minutes of bonus time "
                               f"a day (today has {total - minutes} already).")
    return {"play.bonus_min": total, "play.bonus_at": round(time.time(), 3)}


def profile_values(form: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(child name, desired config)`` from the profile form."""
    from config.settings import DialogueSettings

    name = " ".join(str(form.get("child_name", "")).split())
    band = str(form.get("age_band", ""))
    if band not in AGE_BANDS:
        raise PortalInputError("Choose your child's age from the list.")
    try:
        checked = DialogueSettings(age_band=band, child_name=name or None)  # type: ignore[arg-type]
    except ValueError:
        raise PortalInputError(words.CONFIG_WORDS["dialogue.child_name"]) from None
    return name, {"dialogue.child_name": checked.child_name, "dialogue.age_band": band}


# --- what the pages show ------------------------------------------------------------------

def today_of(bear: dict[str, Any], zone: str) -> dict[str, Any]:
    """Today at a glance for the dashboard: minutes played against the limit (with today's
    bonus), tonight's quiet hours, whether the bear is paused."""
    cfg = bear.get("desired") or {}
    limit = int(cfg.get("play.daily_limit_min") or 0)
    bonus = bonus_today(cfg, zone)
    tonight = week_of(cfg)[datetime.now(ZoneInfo(zone)).weekday()]
    return {"played": bear["health"].get("played_min"), "limit": limit + bonus if limit else 0,
            "bonus": bonus if limit else 0, "paused": bool(cfg.get("play.paused")),
            "quiet": f"{tonight[0]}–{tonight[1]}" if tonight[0] else ""}


def asked_config(fam: FamilyService, bear: dict[str, Any]) -> dict[str, Any]:
    """The bear's desired config with what the parent asked for and the fleet service has
    not merged yet (so the page right after Pause says "Paused")."""
    return {**(bear.get("desired") or {}), **_unsent(fam, bear)}


def _unsent(fam: FamilyService, bear: dict[str, Any]) -> dict[str, Any]:
    """Config asked for that the fleet service has not signed yet, merged in order."""
    unsent: dict[str, Any] = {}
    for (args,) in fam._rows(
            "SELECT r.args FROM fleet_requests r WHERE r.pairing_id = %(pairing)s AND"
            " r.pairing_id IN {scope} AND r.name = 'config' AND r.status IN ('pending',"
            " 'sending') ORDER BY r.request_id", {"pairing": bear["pairing_id"]}):
        unsent.update(args or {})
    return unsent


def config_state(fam: FamilyService, bear: dict[str, Any]) -> dict[str, Any]:
    """Whether the bear has what was saved: "waiting" while a change is still unsigned
    (never "The bear has it" for the settings before it), else :func:`feedback.config_state`."""
    if _unsent(fam, bear):
        return {"state": "waiting", "words": "Sending to the bear. It gets the settings "
                "when it is next online; reload this page to check."}
    return feedback.config_state(fam.conn, bear["device_id"])


def needs_update(conn: Any, bear: dict[str, Any]) -> list[str]:
    """The controls this bear's software does not know (withheld from it), in words."""
    withheld = withheld_keys(conn, bear["device_id"]) & set(bear.get("desired") or {})
    return sorted({NEWER_KEYS.get(k, k) for k in withheld})


@cache
def zones() -> tuple[str, ...]:
    """Every IANA time zone name, sorted."""
    from zoneinfo import available_timezones

    return tuple(sorted(z for z in available_timezones() if "/" in z or z == "UTC"))


# --- changes -------------------------------------------------------------------------------

def set_profile(fam: FamilyService, pairing_id: str, name: str,
                values: dict[str, Any]) -> None:
    """Name the child (the app's bear name) and push the profile to the bear."""
    bear = fam.pairing(pairing_id)
    if bear["current"]:
        fam.configure(pairing_id, values)
    fam._rows("UPDATE family_pairings SET child_name = %(name)s WHERE pairing_id ="
              " %(pairing)s AND pairing_id IN {scope} RETURNING pairing_id",
              {"name": name[:60], "pairing": bear["pairing_id"]})


def remove_bear(fam: FamilyService, pairing_id: str) -> None:
    """Take a bear the family no longer holds off the dashboard: its transcripts and family
    key go, its child name is cleared (consent and deletion records stay, unreadable of
    any child's words)."""
    bear = fam.pairing(pairing_id)
    if bear["current"]:
        raise PortalInputError("This bear is still paired to your family. To remove it, "
                               "revoke consent first (that deletes everything and unpairs "
                               "it).")
    with fam.conn.transaction():
        removed = fam._rows(
            "UPDATE family_pairings SET removed_at = now(), child_name = '' WHERE"
            " pairing_id = %(pairing)s AND pairing_id IN {scope} AND removed_at IS NULL"
            " RETURNING pairing_id", {"pairing": bear["pairing_id"]})
        if not removed:
            raise NotFoundError("no such bear in your family")
        delete_pairing_rows(fam.conn, bear["pairing_id"], None)
        family_keys.destroy(fam.conn, bear["pairing_id"])
    logger.info("family removed pairing %s of %s from its dashboard", bear["pairing_id"],
                bear["device_id"])


def set_timezone(fam: FamilyService, zone: str) -> None:
    """The family's time zone (one of :func:`zones`)."""
    if zone not in zones():
        raise PortalInputError("Choose your time zone from the list, e.g. Europe/London.")
    fam.conn.execute("UPDATE families SET timezone = %s WHERE family_id = %s",
                     (zone, fam.parent.family_id))


def back(url: str) -> Any:
    """See ``url`` next (after a POST)."""
    from fastapi.responses import RedirectResponse

    return RedirectResponse(url, status_code=303)


def install(env: Any) -> None:
    """The templates' helpers for these pages."""
    env.globals.update(DAY_NAMES=DAY_NAMES, BONUS_CHOICES=BONUS_CHOICES, AGE_BANDS=AGE_BANDS)
    env.filters.update(week_of=week_of, today_of=today_of)


# --- the routes ----------------------------------------------------------------------------

def add_routes(app: Any, settings: Settings, page: Any) -> None:
    """Register the control pages on ``app``."""

    def controls_page(request: Request, fam: FamilyService, pairing_id: str,
                      status: int = 200, **context: Any) -> Any:
        bear = fam.pairing(pairing_id)
        cfg = asked_config(fam, bear)
        return page(request, "controls.html", status, title="Bedtime and play", bear=bear,
                    week=week_of(cfg), weekly_set=isinstance(cfg.get("play.weekly"), list),
                    paused=bool(cfg.get("play.paused")), bonus=bonus_today(cfg, fam.zone),
                    limit=int(cfg.get("play.daily_limit_min") or 0),
                    config=config_state(fam, bear),
                    too_old=needs_update(fam.conn, bear), **context)

    def change(request: Request, fam: FamilyService, pairing_id: str, raw: dict[str, Any],
               values_of: Any, done: str) -> Any:
        form = posted(request, fam, raw)
        bear = fam.pairing(pairing_id)
        try:
            if not bear["current"]:
                raise PortalInputError("This bear is not paired to your family now, so "
                                       "nothing can be sent to it.")
            fam.configure(pairing_id, values_of(asked_config(fam, bear), form))
        except PortalInputError as exc:
            return controls_page(request, fam, pairing_id, 400, typed=form,
                                 error=words.config_error(str(exc)))
        return back(f"/bears/{bear['pairing_id']}/controls?saved={done}")

    @app.get("/bears/{pairing_id}/controls")
    def controls(request: Request, pairing_id: str, fam: Fam):
        return controls_page(request, fam, pairing_id)

    @app.post("/bears/{pairing_id}/controls/week")
    def set_week(request: Request, pairing_id: str, fam: Fam, raw: Form):
        return change(request, fam, pairing_id, raw,
                      lambda cfg, form: {"play.weekly": weekly_from(form)}, "week")

    @app.post("/bears/{pairing_id}/controls/presets")
    def set_presets(request: Request, pairing_id: str, fam: Fam, raw: Form):
        return change(request, fam, pairing_id, raw,
                      lambda cfg, form: {"play.weekly": weekly_from_presets(form)}, "week")

    @app.post("/bears/{pairing_id}/pause")
    def pause(request: Request, pairing_id: str, fam: Fam, raw: Form):
        return change(request, fam, pairing_id, raw, lambda cfg, form: {"play.paused": True},
                      "paused")

    @app.post("/bears/{pairing_id}/resume")
    def resume(request: Request, pairing_id: str, fam: Fam, raw: Form):
        return change(request, fam, pairing_id, raw,
                      lambda cfg, form: {"play.paused": False}, "resumed")

    @app.post("/bears/{pairing_id}/bonus")
    def bonus(request: Request, pairing_id: str, fam: Fam, raw: Form):
        return change(request, fam, pairing_id, raw,
                      lambda cfg, form: bonus_values(cfg, form.get("minutes"), fam.zone),
                      "bonus")

    @app.get("/bears/{pairing_id}/profile")
    def profile(request: Request, pairing_id: str, fam: Fam):
        bear = fam.pairing(pairing_id)
        return page(request, "profile.html", title="Child profile", bear=bear,
                    cfg=asked_config(fam, bear),
                    config=config_state(fam, bear))

    @app.post("/bears/{pairing_id}/profile")
    def save_profile(request: Request, pairing_id: str, fam: Fam, raw: Form):
        form = posted(request, fam, raw)
        bear = fam.pairing(pairing_id)
        try:
            name, values = profile_values(form)
            set_profile(fam, pairing_id, name, values)
        except PortalInputError as exc:
            return page(request, "profile.html", 400, title="Child profile", bear=bear,
                        cfg=asked_config(fam, bear), config=None, typed=form,
                        error=words.config_error(str(exc)))
        return back(f"/bears/{bear['pairing_id']}/profile?saved=1")

    @app.post("/bears/{pairing_id}/remove")
    def remove(request: Request, pairing_id: str, fam: Fam, raw: Form):
        form = posted(request, fam, raw)
        if form.get("confirm") != "yes":
            return back(f"/bears/{_uuid(pairing_id)}")
        try:
            remove_bear(fam, pairing_id)
        except PortalInputError as exc:
            return page(request, "message.html", 400, title="Not removed", message=str(exc),
                        link=(f"/bears/{_uuid(pairing_id)}", "Back to the bear"))
        return back("/bears?removed=1")

    @app.get("/family/timezone")
    def timezone(request: Request, fam: Fam):
        return page(request, "timezone.html", title="Time zone", zone=fam.zone, zones=zones())

    @app.post("/family/timezone")
    def save_timezone(request: Request, fam: Fam, raw: Form):
        form = posted(request, fam, raw)
        try:
            set_timezone(fam, str(form.get("zone", "")))
        except PortalInputError as exc:
            return page(request, "timezone.html", 400, title="Time zone", zone=fam.zone,
                        zones=zones(), error=str(exc), typed=form)
        return back("/family/timezone?saved=1")
