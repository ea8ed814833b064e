"""Spoken arithmetic (issue 20, item 7): sums in words and digits as the recogniser writes
them, answered in words; remainders and fractions explained; division by zero kindly."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.dialogue import DialogueEngine
from agent.dialogue.arithmetic import (
    NotASum,
    answer,
    evaluate,
    every_reply,
    read_sum,
)
from agent.dialogue.numbers import LARGEST, read_number, say_number, say_whole
from agent.dialogue.speech import MAX_WORDS
from agent.safety import Action, SafetyFilter
from agent.safety.verdict import Verdict

ASKED = [
    ("whats seven times eight", "Seven times eight is fifty-six."),
    ("what is 144 divided by 12", "One hundred and forty-four divided by twelve is twelve."),
    ("what's a half plus a quarter", "A half plus a quarter is three quarters."),
    ("what is twelve take away five", "Twelve take away five is seven."),
    ("nine squared", "Nine squared is eighty-one."),
    ("whats 7 x 8", "Seven times eight is fifty-six."),
    ("what is 7*8", "Seven times eight is fifty-six."),
    ("what is one hundred forty four divided by twelve",
     "One hundred and forty-four divided by twelve is twelve."),
    ("what is one hundred and forty four divided by twelve",
     "One hundred and forty-four divided by twelve is twelve."),
    ("teddy whats six multiplied by seven please", "Six times seven is forty-two."),
    ("how much is 8 times 7", "Eight times seven is fifty-six."),
    ("what does 5 plus 5 make", "Five plus five is ten."),
    ("add 3 and 4", "Three plus four is seven."),
    ("subtract 3 from 10", "Ten take away three is seven."),
    ("divide 144 by 12", "One hundred and forty-four divided by twelve is twelve."),
    ("how many fives in twenty", "Twenty divided by five is four."),
    ("whats 5 minus 12", "Five take away twelve is minus seven."),
    ("what is 2 + 3 * 4", "Two plus three times four is fourteen."),
    ("what is half of ten", "A half of ten is five."),
    ("what is two and a half times three", "Two and a half times three is seven and a half."),
    ("what is 3 divided by 4", "Three divided by four is three quarters."),
    ("what is a third plus a third", "One third plus one third is two thirds."),
    ("what is 6 \u00f7 2", "Six divided by two is three."),
    ("what's 9-4", "Nine take away four is five."),
    ("what's 12,345 plus 1",
     "Twelve thousand three hundred and forty-five plus one is twelve thousand three hundred "
     "and forty-six."),
    ("what is two to the power of ten", "Two to the power of ten is one thousand and twenty-four."),
    ("three cubed", "Three cubed is twenty-seven."),
    ("seven times eight equals what", "Seven times eight is fifty-six."),
    ("what's a hundred divided by four", "One hundred divided by four is twenty-five."),
    ("what is nine times nine times nine", "Nine times nine times nine is seven hundred and "
     "twenty-nine."),
    ("what is a thousand take away one", "One thousand take away one is nine hundred and "
     "ninety-nine."),
]


@pytest.mark.parametrize(("text", "expected"), ASKED)
def test_sums_in_words_and_digits(text: str, expected: str) -> None:
    assert answer(text) == expected


def test_a_division_with_a_remainder_is_explained_both_ways() -> None:
    reply = answer("what is 17 divided by 5")
    assert reply == ("Seventeen divided by five is three, remainder two. As a fraction, "
                     "that's three and two fifths.")


@pytest.mark.parametrize("text", ["what is ten divided by zero", "7 / 0", "divide 3 by 0",
                                  "whats zero divided by zero"])
def test_dividing_by_zero_is_answered_kindly(text: str) -> None:
    reply = answer(text)
    assert reply is not None and "zero" in reply and "Try another sum" in reply


@pytest.mark.parametrize("text", [
    "i have two dogs and three cats", "what is one", "how many legs does a spider have",
    "what is the capital of france", "what is 2 times", "times", "tell me a story",
    "__import__('os').system('ls')", "what is 2 plus os.system", "eval 2+2 please now",
    "what is 9 ** 9 ** 9 ** 9", "how many times did you", "one two three four"])
def test_words_that_are_not_a_sum_get_no_answer(text: str) -> None:
    assert answer(text) is None


def test_huge_answers_and_powers_are_refused_not_computed() -> None:
    assert "too big" in (answer("whats 1000000 times 1000000") or "")
    assert "too big" in (answer("what is 9 to the power of 99") or "")
    assert "too big" in (answer("what is 999999 to the power of 10") or "")


def test_times_tables_and_square_roots() -> None:
    table = answer("whats the seven times table")
    assert table is not None and table.startswith("The seven times table: seven, fourteen")
    assert table.endswith("eighty-four.")
    assert answer("what is the square root of 81") == "The square root of eighty-one is nine."
    assert "between four and five" in (answer("square root of 20") or "")


def test_every_sum_reply_is_short_and_passes_the_output_check(safety: SafetyFilter) -> None:
    replies = list(every_reply())
    assert len(replies) >= 40
    assert all(len(r.split()) <= MAX_WORDS for r in replies)
    blocked = [r for r in replies if safety.check_output(r).action is not Action.ALLOW]
    assert not blocked


def test_the_bear_answers_a_sum_in_every_band_and_inside_a_game() -> None:
    for band in ("3-5", "6-8", "9-12"):
        engine = DialogueEngine(band)
        state = engine.new_state(seed=1)
        text = "whats seven times eight"
        reply = engine.reply(text, Verdict(Action.ALLOW, (), text), state)
        assert reply == "Seven times eight is fifty-six."
    engine = DialogueEngine("9-12")
    state = engine.new_state(seed=2)
    engine.reply("tell me a riddle", Verdict(Action.ALLOW, (), "tell me a riddle"), state)
    assert state.skill == "riddle"
    text = "what is 144 divided by 12"
    assert engine.reply(text, Verdict(Action.ALLOW, (), text), state).endswith("is twelve.")
    assert state.skill == "riddle"  # the riddle still waits for its answer


# Property tests: every whole number and sum survives the trip through words ---------------
def _words(n: int) -> str:
    return say_whole(n).replace("-", " ").replace(",", "")


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=LARGEST))
def test_whole_numbers_round_trip_through_words(n: int) -> None:
    words = _words(n).split()
    assert read_number(words, 0) == (Fraction(n), len(words))


OPS = {"plus": lambda a, b: a + b, "take away": lambda a, b: a - b,
       "times": lambda a, b: a * b, "divided by": lambda a, b: Fraction(a, b)}


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=100_000), st.sampled_from(sorted(OPS)),
       st.integers(min_value=1, max_value=1000), st.booleans())
def test_integer_sums_round_trip_in_words_and_digits(a: int, op: str, b: int,
                                                     in_words: bool) -> None:
    left, right = (_words(a), _words(b)) if in_words else (str(a), str(b))
    text = f"whats {left} {op} {right}"
    sum_ = read_sum(text)
    value = evaluate(sum_.tokens)
    assert value == OPS[op](a, b)
    reply = answer(text)
    assert reply is not None and len(reply.split()) <= MAX_WORDS
    if not reply.startswith("Phew"):
        with_remainder = f"{say_whole(a // b)}, remainder {say_whole(a % b)}"
        assert say_number(value) in reply or (op == "divided by" and with_remainder in reply)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_any_text_is_read_without_error(text: str) -> None:
    try:
        read_sum(text)
    except NotASum:
        pass
    reply = answer(text)
    assert reply is None or isinstance(reply, str)
