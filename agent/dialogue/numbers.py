"""Numbers as a child says them and as the bear says them (0-100)."""

from __future__ import annotations

import re

_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
          "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
          "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_HOMOPHONES = {"won": 1, "to": 2, "too": 2, "for": 4, "ate": 8, "tree": 3, "free": 3}


def number_word(n: int) -> str:
    """``n`` (0-100) in words, as the bear says it: 21 -> "twenty-one"."""
    if n == 100:
        return "one hundred"
    if n < 20:
        return _UNITS[n]
    tens, unit = divmod(n, 10)
    return _TENS[tens] + ("-" + _UNITS[unit] if unit else "")


_WORD_VALUES = {number_word(n).replace("-", " "): n for n in range(101)}


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
