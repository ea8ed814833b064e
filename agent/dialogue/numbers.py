"""Numbers as a child says them and as the bear says them.

``number_word`` and ``parse_number`` cover 0-100 (the counting game); ``say_number`` and
``read_number`` cover whole numbers up to a billion and simple fractions ("three quarters",
"one and a half"), for spoken arithmetic.
"""

from __future__ import annotations

import re
from fractions import Fraction

_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
          "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
          "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_HOMOPHONES = {"won": 1, "to": 2, "too": 2, "for": 4, "ate": 8, "tree": 3, "free": 3}
_SCALES = ((1_000_000_000, "billion"), (1_000_000, "million"), (1000, "thousand"))
LARGEST = 999_999_999_999
"""Largest whole number the bear reads or says."""
_DENOMINATORS = {"half": 2, "halves": 2, "third": 3, "quarter": 4, "fourth": 4, "fifth": 5,
                 "sixth": 6, "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10,
                 "eleventh": 11, "twelfth": 12, "hundredth": 100, "thousandth": 1000}
_DENOMINATOR_WORDS = {2: ("half", "halves"), 4: ("quarter", "quarters")}
_ORDINALS = {3: "third", 5: "fifth", 6: "sixth", 7: "seventh", 8: "eighth", 9: "ninth",
             10: "tenth", 11: "eleventh", 12: "twelfth"}
SAYABLE_DENOMINATOR = 12
"""Largest denominator said as a fraction; others are said as a decimal."""


def number_word(n: int) -> str:
    """``n`` (0-100) in words, as the bear says it: 21 -> "twenty-one"."""
    if n == 100:
        return "one hundred"
    if n < 20:
        return _UNITS[n]
    tens, unit = divmod(n, 10)
    return _TENS[tens] + ("-" + _UNITS[unit] if unit else "")


_WORD_VALUES = {number_word(n).replace("-", " "): n for n in range(101)}
_SMALL = {**{w: i for i, w in enumerate(_UNITS)}, **{w: 10 * i for i, w in enumerate(_TENS) if w}}


def parse_number(text: str, allow_homophones: bool = False) -> int | None:
    """The first number in ``text`` (digits or words up to 100), else None."""
    digits = re.search(r"\d+", text)
    words = re.findall(r"[a-z]+", text.lower())
    for size in (2, 1):
        for i in range(len(words) - size + 1):
            phrase = " ".join(words[i : i + size])
            if phrase in _WORD_VALUES:
                return _WORD_VALUES[phrase]
    if digits:
        return int(digits.group())
    if allow_homophones:
        for word in words:
            if word in _HOMOPHONES:
                return _HOMOPHONES[word]
    return None


# Saying numbers -------------------------------------------------------------------------
def say_whole(n: int) -> str:
    """A whole number (|n| <= LARGEST) in words: 144 -> "one hundred and forty-four"."""
    if n < 0:
        return "minus " + say_whole(-n)
    if n > LARGEST:
        raise ValueError(f"{n} is too big to say (the bear says up to {LARGEST})")
    if n == 0:
        return "zero"
    parts: list[str] = []
    for size, name in _SCALES:
        count, n = divmod(n, size)
        if count:
            parts.append(f"{_under_thousand(count)} {name}")
    if n:
        rest = _under_thousand(n)
        parts.append(f"and {rest}" if parts and n < 100 else rest)
    return " ".join(parts)


def _under_thousand(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    if not hundreds:
        return number_word(rest)
    head = f"{_UNITS[hundreds]} hundred"
    return f"{head} and {number_word(rest)}" if rest else head


def say_number(value: Fraction | int) -> str:
    """A number as the bear says it: whole, a simple fraction ("two and three quarters"),
    or, for awkward fractions, a decimal to two places ("about zero point one four")."""
    value = Fraction(value)
    if value.denominator == 1:
        return say_whole(int(value))
    if value < 0:
        return "minus " + say_number(-value)
    if value.denominator > SAYABLE_DENOMINATOR:
        return "about " + _say_decimal(value)
    whole, part = divmod(value.numerator, value.denominator)
    fraction = _say_fraction(part, value.denominator)
    return f"{say_whole(whole)} and {fraction}" if whole else fraction


def _say_fraction(numerator: int, denominator: int) -> str:
    one, many = _DENOMINATOR_WORDS.get(denominator, (_ORDINALS.get(denominator, ""), ""))
    many = many or one + "s"
    if numerator == 1:
        return f"a {one}" if denominator in (2, 4) else f"one {one}"
    return f"{say_whole(numerator)} {many}"


def _say_decimal(value: Fraction) -> str:
    hundredths = round(value * 100)
    whole, rest = divmod(int(hundredths), 100)
    digits = f"{rest:02d}".rstrip("0")
    if not digits:
        return say_whole(whole)
    return f"{say_whole(whole)} point " + " ".join(_UNITS[int(d)] for d in digits)


# Reading numbers ------------------------------------------------------------------------
def read_number(words: list[str], start: int) -> tuple[Fraction, int] | None:
    """The number said at ``words[start:]`` and the index after it, else None.

    Reads digits ("144", "2.5"), words ("one hundred and forty four", "a thousand"),
    fractions ("a half", "three quarters", "two and a half") and mixes ("5 thousand").
    """
    whole = _read_whole(words, start)
    if whole is None:
        bare = start < len(words) and words[start] in ("half", "quarter", "third")
        return _read_fraction(words, start, Fraction(1)) if bare or _is_a(words, start) \
            else None
    value, end = whole
    fraction = _read_fraction(words, end, value)
    if fraction is not None:
        return fraction
    if end + 2 < len(words) and words[end] == "and" and (
            _is_a(words, end + 1) or words[end + 1] == "one"):
        mixed = _read_fraction(words, end + 2, Fraction(1))
        if mixed is not None and mixed[0] < 1:
            return value + mixed[0], mixed[1]
    return value, end


def _is_a(words: list[str], i: int) -> bool:
    return i < len(words) and words[i] in ("a", "an")


def _read_fraction(words: list[str], i: int, count: Fraction) -> tuple[Fraction, int] | None:
    if _is_a(words, i) and count == 1:
        i += 1
    if i >= len(words):
        return None
    word = words[i]
    base = word[:-1] if word.endswith("s") and word != "halves" else word
    denominator = _DENOMINATORS.get(base)
    if denominator is None or count.denominator != 1:
        return None
    return count / denominator, i + 1


def _read_whole(words: list[str], i: int) -> tuple[Fraction, int] | None:
    if i < len(words) and re.fullmatch(r"\d+(?:\.\d+)?", words[i]):
        value = Fraction(words[i])
        i += 1
        if i < len(words) and words[i] in ("thousand", "million", "billion", "hundred"):
            value *= _scale(words[i])
            i += 1
        return value, i
    if _is_a(words, i) and i + 1 < len(words) and words[i + 1] in (
            "hundred", "thousand", "million", "billion"):
        return _read_words(words, i + 1, start_value=1)
    if i < len(words) and words[i] in _SMALL:
        return _read_words(words, i, start_value=0)
    return None


def _scale(word: str) -> int:
    return {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}[word]


def _read_words(words: list[str], i: int, start_value: int) -> tuple[Fraction, int]:
    total, current, last = 0, start_value, "a" if start_value else ""
    while i < len(words):
        word = words[i]
        if word in _SMALL and _follows(last, word):
            current += _SMALL[word]
        elif word == "hundred" and current < 100:
            current = (current or 1) * 100
        elif word in ("thousand", "million", "billion"):
            total += (current or 1) * _scale(word)
            current = 0
        elif (word == "and" and last in ("hundred", "thousand", "million", "billion")
              and i + 1 < len(words) and words[i + 1] in _SMALL):
            pass
        else:
            break
        last = word
        i += 1
    return Fraction(total + current), i


def _follows(last: str, word: str) -> bool:
    """Whether number word ``word`` can continue a number that ended with ``last``."""
    if last in ("", "a", "and", "hundred", "thousand", "million", "billion"):
        return True
    return last in _TENS and _SMALL[word] < 10 and word != "zero"
