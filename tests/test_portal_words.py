"""The parent app's plain words: return paths after sign-in, errors, names, days, files."""

from __future__ import annotations

from datetime import date

import pytest

from sync.cloud.portal.words import (
    bear_name,
    capitalised,
    config_error,
    export_filename,
    friendly_day,
    safe_next,
    scopes_in_words,
    signin_url,
)


@pytest.mark.parametrize("path", ["/bears", "/bears/abc/conversations?x=1", "/alerts"])
def test_a_same_site_path_is_kept(path: str):
    assert safe_next(path) == path


@pytest.mark.parametrize("path", [None, "", "bears", "//evil.example", "///evil.example",
                                  "https://evil.example/", "/\\evil.example", "/\\\\evil",
                                  "/bears\r\nSet-Cookie: x=1", "/signin", "/signin/tok",
                                  "/signout", "/" + "a" * 600])
def test_anything_else_is_refused(path: str | None):
    assert safe_next(path) is None


def test_the_sign_in_url_carries_the_path_encoded():
    assert signin_url("/bears/x", "a=1") == "/signin?next=%2Fbears%2Fx%3Fa%3D1"
    assert signin_url("//evil") == "/signin" and signin_url("/") == "/signin"


def test_errors_read_as_a_parent_understands():
    raw = "invalid config: voice.tts_volume=1.5 is invalid: must be <= 1"
    assert config_error(raw) == "Volume must be between 0 and 100%."
    assert capitalised("give both a start and an end") == "Give both a start and an end."
    assert capitalised("sam@example.org already has one.") == "sam@example.org already has one."


def test_names_scopes_days_and_files():
    assert bear_name(None) == "Your bear" and bear_name(" Mia ") == "Mia's bear"
    assert scopes_in_words([]).startswith("Nothing")
    assert scopes_in_words(["keep", "sync"]) == ("Keep conversations on the bear; "
                                                 "Send them to this app")
    today = date(2026, 12, 7)
    assert friendly_day("2026-12-07", today) == "Today"
    assert friendly_day(date(2026, 12, 6), today) == "Yesterday"
    assert friendly_day("2026-12-01", today) == "Tuesday 1 December"
    assert friendly_day("2025-12-01", today) == "Monday 1 December 2025"
    assert export_filename("Zoë/../x", today, "txt") == "teddy-zo-x-2026-12-07.txt"
    assert export_filename(None, today, "json") == "teddy-2026-12-07.json"
