"""Spoken arithmetic: "whats seven times eight" -> "Seven times eight is fifty-six."

The child's words (as the recogniser writes them, or typed digits and signs) are read into
numbers and operators by a small hand-written parser: nothing is ever evaluated as code.
Only whole sentences that are a sum (after a question frame such as "what is") count, so
"i have two dogs and three cats" is not arithmetic. Whole numbers and simple fractions,
+ - x / (with remainders explained), squares, cubes, square roots and times tables.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

from agent.dialogue.numbers import LARGEST, read_number, say_number, say_whole
from agent.dialogue.speech import MAX_WORDS

logger = logging.getLogger(__name__)

MAX_TOKENS = 15
"""Most numbers and operators in one sum (longer lines are not treated as sums)."""
MAX_POWER = 10
"""Largest exponent the bear works out."""
_PLUS, _MINUS, _TIMES, _DIVIDE = "plus", "minus", "times", "divided by"
_OPERATORS = (  # longest first: the words a child uses for each operation
    ("to the power of", "power"), ("multiplied by", _TIMES), ("divided by", _DIVIDE),
    ("divide by", _DIVIDE), ("shared between", _DIVIDE), ("shared by", _DIVIDE),
    ("take away", _MINUS), ("takeaway", _MINUS), ("taken away", _MINUS), ("minus", _MINUS),
    ("subtract", _MINUS), ("plus", _PLUS), ("add", _PLUS), ("added to", _PLUS),
    ("times", _TIMES), ("multiply by", _TIMES), ("lots of", _TIMES), ("groups of", _TIMES),
    ("x", _TIMES), ("over", _DIVIDE), ("of", "of"), ("and", _PLUS),
)
_POSTFIX = {"squared": 2, "cubed": 3}
_FRAME = re.compile(
    r"^(?:(?:hey|hi|ok|okay|so|um|umm|and|teddy|please|quick|quickly|can you|could you|"
    r"tell me|do you know|i want to know|i wanna know|work out|calculate|solve|figure out|"
    r"what|whats|what's|wat|what is|what are|what does|what do|how much is|how much are|"
    r"how much does|how much do|do|does|did|is|the answer to|answer|question)\s+)*")
_TAIL = re.compile(r"(?:\s+(?:equals?|equal to|make|makes|come to|comes to|is|are|please|"
                   r"teddy|then|again|altogether|in total|all together|what|how much))*$")
_VERB_FIRST = (  # "add 3 and 4", "subtract 3 from 10", "divide 144 by 12"
    (re.compile(r"^add (.+?) (?:and|to) (.+)$"), _PLUS, False),
    (re.compile(r"^(?:subtract|take|take away) (.+?) (?:away )?from (.+)$"), _MINUS, True),
    (re.compile(r"^multiply (.+?) (?:by|and) (.+)$"), _TIMES, False),
    (re.compile(r"^divide (.+?) by (.+)$"), _DIVIDE, False),
    (re.compile(r"^share (.+?) (?:between|among|by) (.+)$"), _DIVIDE, False),
    (re.compile(r"^how many (.+?)s? (?:are )?(?:there )?in (.+)$"), _DIVIDE, True),
    (re.compile(r"^(.+?) more than (.+)$"), _PLUS, True),
    (re.compile(r"^(.+?) less than (.+)$"), _MINUS, True),
)
_TABLE = re.compile(r"(?:^|\s)(?:the )?(\S+(?: \S+)?) times tables?(?:\s|$)")
_ROOT = re.compile(r"^(?:the )?square root of (.+)$")
_SAY_OPS = {_PLUS: "plus", _MINUS: "take away", _TIMES: "times", _DIVIDE: "divided by"}


class NotASum(ValueError):
    """The words are not a sum the bear can read."""


@dataclass(frozen=True)
class Sum:
    """A sum as read: the numbers and operators in order, and how to say it."""

    tokens: tuple[Fraction | str, ...]
    """Numbers and operator names, alternating (postfix "squared"/"cubed" after a number)."""
    spoken: str
    """The sum in the bear's words ("seven times eight")."""


def normalise(text: str) -> str:
    """Lower case, signs to words, commas in numbers and punctuation dropped."""
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    text = re.sub(r"(?<=\d)\s*[x\u00d7*]\s*(?=\d)", " times ", text)
    text = text.replace("\u00d7", " times ").replace("*", " times ")
    text = text.replace("\u00f7", " divided by ").replace("+", " plus ")
    text = re.sub(r"(?<=\d)\s*/\s*(?=\d)", " over ", text)
    text = re.sub(r"(?<=\d)\s*-\s*(?=\d)", " minus ", text)
    text = re.sub(r"(?<![\d])-\s*(?=\d)", " minus ", text)
    text = re.sub(r"(?<=\d)\s*\^\s*(?=\d)", " to the power of ", text)
    text = re.sub(r"(?<![\d])\.|\.(?!\d)", " ", text)
    text = re.sub(r"[^a-z0-9.' ]+", " ", text).replace("'", "")
    return re.sub(r"\s+", " ", text).strip()


def strip_frame(text: str) -> str:
    """The words left once the question frame ("whats", "is", "please") is taken off."""
    core = _TAIL.sub("", _FRAME.sub("", text)).strip()
    return re.sub(r"^(?:whats|what is)\s+", "", core)


def read_sum(text: str) -> Sum:
    """The sum ``text`` asks for; raises :class:`NotASum` when it is not one."""
    core = strip_frame(normalise(text))
    for pattern, operator, swap in _VERB_FIRST:
        match = pattern.match(core)
        if match:
            left, right = (match.group(2), match.group(1)) if swap else match.groups()
            try:
                return _join(_tokens(left), operator, _tokens(right))
            except NotASum:
                continue
    return _sum_of(_tokens(core))


def _join(left: list[Fraction | str], operator: str, right: list[Fraction | str]) -> Sum:
    if len(left) != 1 or len(right) != 1:
        raise NotASum("verb-first sums take one number each side")
    return _sum_of([left[0], operator, right[0]])


def _sum_of(tokens: list[Fraction | str]) -> Sum:
    if not any(isinstance(t, str) for t in tokens) or len(tokens) > MAX_TOKENS:
        raise NotASum("no operation")
    _check_shape(tokens)
    return Sum(tuple(tokens), _say_tokens(tokens))


def _tokens(core: str) -> list[Fraction | str]:
    words = core.split()
    tokens: list[Fraction | str] = []
    i = 0
    while i < len(words):
        if not tokens and words[i] == "minus":  # a negative first number
            number = read_number(words, i + 1)
            if number is None:
                raise NotASum("minus without a number")
            tokens.append(-number[0])
            i = number[1]
            continue
        number = read_number(words, i)
        if number is not None:
            tokens.append(number[0])
            i = number[1]
            continue
        i = _operator(words, i, tokens)
    return tokens


def _operator(words: list[str], i: int, tokens: list[Fraction | str]) -> int:
    if words[i] in _POSTFIX:
        tokens.append(words[i])
        return i + 1
    for phrase, name in _OPERATORS:
        size = phrase.count(" ") + 1
        if " ".join(words[i:i + size]) == phrase:
            tokens.append(name)
            return i + size
    raise NotASum(f"{words[i]!r} is not part of a sum")


def _check_shape(tokens: list[Fraction | str]) -> None:
    expect_number = True
    for token in tokens:
        if token in _POSTFIX:
            if expect_number:
                raise NotASum("squared without a number")
            continue
        if isinstance(token, Fraction) != expect_number:
            raise NotASum("numbers and operations must take turns")
        if isinstance(token, Fraction) and abs(token) > LARGEST:
            raise NotASum("number too big")
        expect_number = not expect_number
    if expect_number:
        raise NotASum("the sum ends with an operation")


def _say_tokens(tokens: list[Fraction | str]) -> str:
    words = []
    for token in tokens:
        if isinstance(token, Fraction):
            words.append(say_number(token))
        elif token == "power":
            words.append("to the power of")
        else:
            words.append(_SAY_OPS.get(token, token))
    return " ".join(words)


# Working it out --------------------------------------------------------------------------
class DivideByZero(ArithmeticError):
    """A sum divides by zero."""


class TooBig(ArithmeticError):
    """A sum's answer is too big to say."""


def evaluate(tokens: tuple[Fraction | str, ...]) -> Fraction:
    """The value of a read sum, times and divide before plus and minus (exact fractions)."""
    terms: list[Fraction] = []
    signs: list[str] = []
    current: Fraction | None = None
    pending = None
    for token in _with_powers(list(tokens)):
        if isinstance(token, Fraction):
            current = token if pending is None else _apply(current, pending, token)
            pending = None
        elif token in (_TIMES, _DIVIDE, "of"):
            pending = token
        else:
            assert current is not None
            terms.append(current)
            signs.append(token)
            current, pending = None, None
    assert current is not None
    terms.append(current)
    total = terms[0]
    for sign, term in zip(signs, terms[1:], strict=True):
        total = total + term if sign == _PLUS else total - term
    if abs(total) > LARGEST:
        raise TooBig("answer too big")
    return total


def _apply(left: Fraction | None, operator: str, right: Fraction) -> Fraction:
    assert left is not None
    if operator in (_TIMES, "of"):
        return left * right
    if right == 0:
        raise DivideByZero("divide by zero")
    return left / right


def _with_powers(tokens: list[Fraction | str]) -> list[Fraction | str]:
    out: list[Fraction | str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in _POSTFIX:
            out[-1] = _power(out[-1], _POSTFIX[str(token)])
        elif token == "power":
            out[-1] = _power(out[-1], tokens[i + 1])
            i += 1
        else:
            out.append(token)
        i += 1
    return out


def _power(base: Fraction | str, exponent: Fraction | str | int) -> Fraction:
    assert isinstance(base, Fraction)
    exponent = Fraction(exponent)
    if exponent.denominator != 1 or not 0 <= exponent <= MAX_POWER:
        raise TooBig("exponent out of range")
    if abs(base) > 10**6:
        raise TooBig("base too big")
    return base ** int(exponent)


# Saying the answer -------------------------------------------------------------------------
def answer(text: str) -> str | None:
    """The bear's spoken answer if ``text`` asks for a sum or a times table, else None."""
    core = strip_frame(normalise(text))
    table = _TABLE.search(core)
    if table:
        return times_table(table.group(1))
    root = _ROOT.match(core)
    if root:
        return square_root(root.group(1))
    try:
        sum_ = read_sum(text)
    except NotASum:
        return None
    return say_result(sum_)


def say_result(sum_: Sum) -> str:
    """"Seven times eight is fifty-six." (or a kind word about dividing by zero)."""
    try:
        value = evaluate(sum_.tokens)
    except DivideByZero:
        return ("Nobody can divide by zero! Sharing into zero groups doesn't work, "
                "so there's no answer. Try another sum?")
    except TooBig:
        return "Phew, that answer is too big for a bear to say! Try a smaller sum?"
    return _fit(sum_.spoken, value, _remainder(sum_.tokens, value))


def _remainder(tokens: tuple[Fraction | str, ...], value: Fraction) -> str:
    """For a whole-number division with a remainder: "three, remainder two"."""
    if (len(tokens) != 3 or tokens[1] != _DIVIDE or value.denominator == 1
            or not all(isinstance(t, Fraction) and t.denominator == 1 and t > 0
                       for t in (tokens[0], tokens[2]))):
        return ""
    left, right = tokens[0], tokens[2]
    assert isinstance(left, Fraction) and isinstance(right, Fraction)
    whole, left_over = divmod(int(left), int(right))
    if whole == 0:
        return ""
    return f"{say_whole(whole)}, remainder {say_whole(left_over)}"


def _fit(spoken: str, value: Fraction, remainder: str) -> str:
    said = say_number(value)
    options = []
    if remainder:
        options.append(f"{spoken} is {remainder}. As a fraction, that's {said}.")
        options.append(f"{spoken} is {remainder}.")
    options += [f"{spoken} is {said}.", f"That's {said}."]
    for option in options:
        if len(option.split()) <= MAX_WORDS:
            return option[0].upper() + option[1:]
    return "Phew, that answer is too long for a bear to say! Try a smaller sum?"


def times_table(which: str) -> str | None:
    """"The seven times table: seven, fourteen, ..." (up to twelve), or None."""
    number = read_number(which.split(), 0)
    if number is None or number[0].denominator != 1 or not 1 <= number[0] <= 12:
        return None
    n = int(number[0])
    multiples = ", ".join(say_whole(n * k) for k in range(1, 13))
    text = f"The {say_whole(n)} times table: {multiples}."
    return text if len(text.split()) <= MAX_WORDS else f"The {say_whole(n)} times table: " \
        + ", ".join(say_whole(n * k) for k in range(1, 11)) + "."


def square_root(which: str) -> str | None:
    """"The square root of eighty-one is nine." for perfect squares, honest otherwise."""
    words = which.split()
    number = read_number(words, 0)
    if number is None or number[1] != len(words) or number[0].denominator != 1:
        return None
    n = int(number[0])
    if n < 0:
        return "Negative numbers don't have an everyday square root. Try a positive number!"
    root = math.isqrt(n)
    if root * root == n:
        return f"The square root of {say_whole(n)} is {say_whole(root)}."
    return (f"The square root of {say_whole(n)} isn't a whole number. It's between "
            f"{say_whole(root)} and {say_whole(root + 1)}.")


def every_reply() -> Iterator[str]:
    """Replies that stand for all the bear's sums (every times table holds every product up
    to 144 in words; one sum, remainder and fraction per number; the fixed messages), so a
    test can put each through the output check."""
    for n in range(1, 13):
        table = times_table(say_whole(n))
        if table:
            yield table
        yield say_result(read_sum(f"what is {n} times 12"))
        yield say_result(read_sum(f"what is {12 * n + n // 2 + 1} divided by 12"))
        yield say_result(read_sum(f"what is {n} divided by 13"))
    for text in ("what is 1 divided by 0", "what is a half plus a quarter", "9 squared",
                 "what is 5 take away 12", "what is 999999999 times 999999999",
                 "what is 1 divided by 7", "two and a half times 3",
                 "what is 123456789 plus 987654321"):
        yield say_result(read_sum(text))
    for text in ("the square root of 81", "the square root of 20", "the square root of -4"):
        reply = answer(text)
        if reply:
            yield reply
