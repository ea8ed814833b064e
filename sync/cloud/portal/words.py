"""Plain words for what the parent app shows: consent scopes, bear names, config errors,
export file names, safe return paths after sign-in. Registered as Jinja filters by
:func:`install`."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit

SCOPE_WORDS = {
    "keep": ("Keep conversations on the bear",
             "The bear keeps what was said, encrypted, so you can read it. Without this, "
             "nothing is kept and there is nothing to read."),
    "sync": ("Send them to this app",
             "Kept conversations are sent to this app, encrypted for your family, so you can "
             "read them here. Needs “Keep conversations”."),
    "name": ("Remember your child's first name",
             "The bear may use your child's first name when it talks. Without this it never "
             "learns or says a name."),
}
"""Each consent scope: a short label and what it means, in plain words."""

FRIENDLY_BEAR = "Your bear"
"""What an unnamed bear is called."""


def scope_label(scope: str) -> str:
    """A consent scope as a parent reads it."""
    return SCOPE_WORDS.get(scope, (scope,))[0]


def scopes_in_words(scopes: list[str] | tuple[str, ...] | None) -> str:
    """What the parent allowed, in words ("nothing" for none)."""
    if not scopes:
        return "Nothing (no conversations are kept)"
    return "; ".join(scope_label(s) for s in scopes)


def bear_name(child_name: str | None, inline: bool = False) -> str:
    """A bear's name as the parent sees it: "Mia's bear", or "Your bear" when unnamed
    ("your bear" ``inline``, inside a sentence)."""
    name = (child_name or "").strip()
    if name:
        return f"{name}'s bear"
    return FRIENDLY_BEAR.lower() if inline else FRIENDLY_BEAR


def export_filename(child_name: str | None, day: date, extension: str) -> str:
    """``teddy-mia-2026-12-07.json``: named after the bear and the day."""
    slug = re.sub(r"[^a-z0-9]+", "-", (child_name or "").lower()).strip("-")[:30]
    return f"teddy-{slug + '-' if slug else ''}{day.isoformat()}.{extension}"


def safe_next(path: str | None) -> str | None:
    """``path`` when it is a same-site relative path to return to after sign-in (``/bears/…``);
    None for anything else (other hosts, ``//host``, schemes, backslashes, control
    characters, the sign-in pages themselves)."""
    if not path or len(path) > 500 or not path.startswith("/") or path.startswith("//"):
        return None
    if "\\" in path or any(ord(c) < 32 or ord(c) == 127 for c in path):
        return None
    parts = urlsplit(path)
    if parts.scheme or parts.netloc or parts.path.startswith(("/signin", "/signout")):
        return None
    return path


CONFIG_WORDS = {
    "voice.tts_volume": "Volume must be between 0 and 100%.",
    "play.daily_limit_min": "The daily time limit must be between 0 and 1440 minutes "
                            "(0 means no limit).",
    "dialogue.age_band": "Choose an age from the list.",
    "play.quiet_from": "Quiet hours need a time like 19:30.",
    "play.quiet_until": "Quiet hours need a time like 07:00.",
    "play.weekly": "Choose a time between 00:00 and 23:59 for each day's quiet hours.",
    "play.bonus_min": "Bonus time must be between 1 and 240 minutes a day.",
    "play.bonus_at": "Bonus time counts for today only: give it again.",
    "play.paused": "Pause is on or off: press Pause or Resume.",
    "dialogue.child_name": "Type your child's first name in letters only (up to 30), "
                           "e.g. Mia.",
}
"""Errors a parent understands, by the setting the fleet refused."""


def config_error(message: str) -> str:
    """The fleet's refusal of a setting (``voice.tts_volume=1.5 is invalid ...``) in words a
    parent understands; any other message with a capital first letter."""
    for key, words in CONFIG_WORDS.items():
        if key in message:
            return words
    return capitalised(message)


def capitalised(message: str) -> str:
    """``message`` starting with a capital letter and ending with a full stop."""
    message = str(message).strip()
    if not message:
        return message
    if "@" not in message.split(" ", 1)[0]:  # never capitalise an e-mail address
        message = message[0].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else message + "."


def friendly_day(value: datetime | date | str, today: date | None = None) -> str:
    """"Today", "Yesterday" or "Monday 7 December"."""
    day = date.fromisoformat(value) if isinstance(value, str) else (
        value.date() if isinstance(value, datetime) else value)
    today = today or date.today()
    if day == today:
        return "Today"
    if (today - day).days == 1:
        return "Yesterday"
    text = f"{day:%A} {day.day} {day:%B}"
    return text if day.year == today.year else f"{text} {day.year}"


def install(env: Any) -> None:
    """Make these the templates' filters."""
    env.filters.update(scope_label=scope_label, scopes_in_words=scopes_in_words,
                       bear_name=bear_name, friendly_day=friendly_day, capitalised=capitalised)
    env.globals.update(SCOPE_WORDS=SCOPE_WORDS)


NEXT_COOKIE = "teddy_next"
"""Where to return after sign-in (a same-site path), kept while the mailed link is opened."""


def signin_url(path: str, query: str = "") -> str:
    """The sign-in page that returns to ``path`` (with its query) afterwards."""
    from urllib.parse import quote

    target = safe_next(f"{path}?{query}" if query else path)
    return f"/signin?next={quote(target, safe='')}" if target and target != "/" else "/signin"


def remember_next(response: Any, wanted: Any, settings: Any) -> Any:
    """``response`` with the return path in a short-lived cookie when it is a safe one."""
    target = safe_next(wanted if isinstance(wanted, str) else None)
    if target:
        response.set_cookie(NEXT_COOKIE, target, max_age=int(settings.portal.link_ttl_s) + 60,
                            httponly=True, samesite="lax",
                            secure=settings.portal.secure_cookies, path="/")
    return response


def attachment(name: str | None, extension: str, day: date | None = None) -> dict[str, str]:
    """The Content-Disposition header of an export named after the bear and the day."""
    filename = export_filename(name, day or date.today(), extension)
    return {"Content-Disposition": f'attachment; filename="{filename}"'}
