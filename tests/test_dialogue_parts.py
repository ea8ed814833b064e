"""Small parts of the dialogue engine: numbers as children say them, intents."""

from __future__ import annotations

import pytest

from agent.dialogue import load_pack
from agent.dialogue.intents import IntentMatcher
from agent.dialogue.numbers import number_word, parse_number


@pytest.mark.parametrize(("text", "number"), [
    ("two", 2), ("it's twenty one", 21), ("I think 14", 14), ("seventeen!", 17),
    ("a hundred", None), ("one hundred", 100), ("banana", None),
])
def test_parse_number(text: str, number: int | None) -> None:
    assert parse_number(text) == number


def test_homophones_count_only_when_asked() -> None:
    assert parse_number("for") is None
    assert parse_number("for", allow_homophones=True) == 4


def test_number_words_round_trip() -> None:
    for n in range(101):
        assert parse_number(number_word(n)) == n


@pytest.mark.parametrize(("text", "intent"), [
    ("Tell me a STORY please!", "story"), ("what happens next", "more"),
    ("say that again", "repeat"), ("be quiet", "stop"), ("what's your name?", "bear_name"),
    ("would you rather", "game_wyr"), ("let's play animal sounds", "game_animals"),
])
def test_intents(text: str, intent: str) -> None:
    assert intent in IntentMatcher(load_pack().intents).find(text)


def test_intents_match_whole_words_only() -> None:
    found = IntentMatcher(load_pack().intents).find("this is historic")
    assert "story" not in found and "stop" not in found
