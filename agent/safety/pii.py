"""Find and redact a child's personal information, written or spoken.

Recognizers write numbers as words ("oh seven seven ...") and e-mail addresses as speech
("tom at gmail dot com"), so every detector knows both forms. Detectors return spans; the
text is redacted from the end so earlier spans keep their offsets. No detector logs or
returns the value it found: a :class:`PiiSpan` carries only where it was and which rule.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

_DATA_FILE = Path(__file__).with_name("pii.json")
_WORD = re.compile(r"\+?\d+|[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)
_NO_DIGITS = str.maketrans("", "", "0123456789")
_NOT_NEEDLE = re.compile(r"[^\w'@]+")
_GAP = re.compile(r"^[\s,.()\-+/]*$")
_REST = r"[^.,!?;\n]"


@dataclass(frozen=True)
class PiiSpan:
    """Where one piece of personal information lies in the text."""

    start: int
    """First character index."""
    end: int
    """One past the last character index."""
    category: str
    """Category, e.g. ``"pii.phone"``."""
    rule: str
    """Which detector rule fired (safe to log)."""

    @property
    def placeholder(self) -> str:
        """What replaces the span in the redacted text, e.g. ``[phone]``."""
        return "[" + self.category.removeprefix("pii.").replace("_", " ") + "]"


def _alternation(words: list[str]) -> str:
    ordered = sorted(words, key=len, reverse=True)
    return "(?:" + "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in ordered) + ")"


class PiiDetector:
    """All personal-information detectors, compiled once from ``pii.json``."""

    def __init__(self, data_file: Path = _DATA_FILE) -> None:
        data = json.loads(data_file.read_text(encoding="utf-8"))
        self._digits: dict[str, str] = data["digit_words"]
        self._repeats: dict[str, int] = data["repeat_words"]
        self._phone_context = re.compile(
            r"\b" + _alternation(data["phone_context"]) + r"\b", re.I
        )
        self._spoken_digits = frozenset([*self._digits, *self._repeats])
        self._not_names = frozenset(data["not_names"])
        self._first_names = frozenset(data.get("first_names", ()))
        self._street_words = frozenset(w.split()[-1] for w in data["street_types"])
        self._generic = frozenset(data["generic_words"])
        self._patterns = self._compile(data)
        self._needles = NeedleIndex(self._patterns)

    def _compile(self, data: dict) -> list[tuple[str, str, tuple[str, ...], re.Pattern[str], int]]:
        """(category, rule, needles, pattern, group): a pattern runs only when the
        lower-cased text contains one of its needles (cheap substring tests first)."""
        number = r"(?>\d{1,5}[a-z]?|" + _alternation(
            list(self._digits) + ["ten", "eleven", "twelve", "twenty", "thirty", "forty",
                                  "fifty", "hundred"]) + r"\b(?:[\s-]+" + _alternation(
            list(self._digits) + ["ten", "twenty", "thirty", "forty", "fifty", "hundred",
                                  "and"]) + r"\b)*)"
        digit = r"(?:\d+|" + _alternation([*self._digits, *self._repeats]) + r")\b"
        digits = rf"(?>{digit}(?:[\s,-]+{digit})*)"
        local = r"(?:[\w.]+\s+(?:dot|underscore|dash)\s+)*[\w.]+"
        streets = tuple(f" {w.split()[-1]} " for w in data["street_types"])
        schools = tuple(f" {w.split()[-1]} " for w in data["school_types"])
        places = tuple(f" {w.split()[-1]} " for w in data["places"])
        street = _alternation(data["street_types"])
        place = _alternation(data["places"])
        school = _alternation(data["school_types"])
        spoken_tld = r"(?:com|net|org|co|uk|edu|io|me|us|ca|au|de|fr|info|ie|nz)"
        providers = r"(?:gmail|hotmail|yahoo|outlook|icloud|aol|btinternet|live|proton)"
        table = [
            ("pii.email", "email.written", ("@",), r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", 0),
            ("pii.email", "email.spoken", ("at",),
             rf"\b{local}\s+at\s+\w+(?:\s+dot\s+\w+)*\s+dot\s+{spoken_tld}\b", 0),
            ("pii.email", "email.provider", ("at",),
             rf"\b{local}\s+at\s+{providers}\b(?:\s+dot\s+\w+)*", 0),
            ("pii.address", "address.number_street", streets,
             rf"\b{number}\s+(?:[a-z']+\s+){{1,3}}?{street}\b", 0),
            ("pii.address", "address.lives_on_street", streets,
             rf"\b(?:live|living|lives|house\s+is|home\s+is|flat\s+is|moved|moving|move)\s+"
             rf"(?:at|on|in|to|into)\s+"
             rf"((?:the\s+)?(?:[a-z']+\s+){{1,3}}?{street})\b", 1),
            ("pii.address", "address.my_address", ("address",),
             rf"\bmy\s+(?:home\s+)?address\s+is\s+"
             rf"((?:{_REST}+?)(?=\s+(?:and|but)\b|[.,!?;]|$))", 1),
            ("pii.address", "address.lives_at", ("live at",), rf"\bi\s+live\s+at\s+((?:{_REST}+?)"
             r"(?=\s+(?:and|but|with)\b|[.,!?;]|$))", 1),
            ("pii.address", "address.postcode", tuple("0123456789"),
             r"\b[a-z]{1,2}\d[a-z\d]?\s*\d[a-z]{2}\b", 0),
            ("pii.address", "address.zip", ("zip", "post"),
             r"\b(?:zip|zip\s+code|postcode|post\s+code|postal\s+code)\s+(?:is\s+)?"
             r"((?:\d[\s-]*){5,9}|[a-z0-9]{2,4}\s?[a-z0-9]{3})", 1),
            ("pii.school", "school.named", schools,
             rf"\b((?:(?:st\.?|saint|[a-z']+)\s+){{1,3}}){school}\b", 0),
            ("pii.school", "school.called", ("school",),
             r"\bmy\s+school\s+is\s+called\s+((?:[a-z']+\s*){1,3})", 1),
            ("pii.location", "location.at_place", places,
             rf"\b(?:i\s+am|i'm|im|we\s+are|we're|i\s+am\s+now|i'm\s+now)\s+"
             rf"(?:at|in|outside|near|by|on)\s+((?:the\s+)?(?:[a-z']+\s+){{0,3}}?{place})\b", 1),
            ("pii.location", "location.right_now", ("right now",),
             r"\b(?:i\s+am|i'm|im|we\s+are|we're)\s+(?:at|in)\s+((?:the\s+)?[a-z']+(?:\s+"
             r"[a-z']+)?)\s+(?=right\s+now\b)", 1),
            ("pii.location", "location.home_alone", ("home",),
             r"\b(?:home\s+alone|alone\s+at\s+home|by\s+myself\s+at\s+home|on\s+my\s+own\s+"
             r"at\s+home|(?:nobody|no\s+one|no-one)\s+(?:else\s+)?(?:is\s+)?(?:at\s+)?home)\b",
             0),
            ("pii.password", "password.is", ("pass", "pin", "code"),
             r"\b(?:password|passcode|pass\s+code|pin|pin\s+number|pin\s+code|door\s+code|"
             r"lock\s+code|ipad\s+code|phone\s+code|secret\s+code|passwords?)"
             r"(?:'s|\s+is|:|\s*=|\s+was)\s+(" + digits + r"|\S+)", 1),
            *_extra_rules(street, school),
            ("pii.name", "name.full", ("name", "call"),
             r"\b(?:my\s+(?:full\s+|whole\s+|real\s+)?name\s+is|my\s+name's|my\s+names|"
             r"i\s+am\s+called|i'm\s+called|im\s+called|call\s+me|everyone\s+calls\s+me)"
             r"\s+([^\W\d_]+\s+[^\W\d_]+(?:-[^\W\d_]+)?(?:\s+[^\W\d_]+)?)", 1),
            ("pii.name", "name.surname", ("name",),
             r"\bmy\s+(?:last|second|family|sur)\s*name\s+is\s+([^\W\d_]+(?:-[^\W\d_]+)?)", 1),
        ]
        return [(cat, rule, tuple(needle), re.compile(rx, re.I), group)
                for cat, rule, needle, rx, group in table]

    def find(self, text: str) -> list[PiiSpan]:
        """Every span of personal information in ``text``, non-overlapping, in order."""
        lowered = " " + _NOT_NEEDLE.sub(" ", text.lower()) + " "
        spans = list(self._phones(text, lowered))
        for index in sorted(self._needles.patterns_in(lowered)):
            category, rule, _, pattern, group = self._patterns[index]
            for match in pattern.finditer(text):
                start, end = match.span(group)
                if self._accept(rule, match, text[start:end]):
                    if rule == "school.named":
                        start = self._skip_generic(text, start, end)
                    elif rule == "name.full":
                        given = re.match(r"\S+\s+", text[start:end])  # a full name has two words
                        start = start + given.end() if given else start
                    if rule in _TRIMMED:
                        end = self._trim(text, start, end)
                    spans.append(PiiSpan(start, end, category, rule))
        return _merge(spans)

    def _accept(self, rule: str, match: re.Match[str], value: str) -> bool:
        if not value.strip():
            return False
        check: Callable[[PiiDetector, str], bool] | None = _CHECKS.get(rule)
        return check(self, value) if check else True

    def _trim(self, text: str, start: int, end: int) -> int:
        """Move ``end`` back past trailing words that are no names ("chloe and" -> "chloe")."""
        words = list(re.finditer(r"\S+", text[start:end]))
        while len(words) > 1 and words[-1].group().lower() in self._not_names:
            words.pop()
        return start + words[-1].end() if words else end

    def _is_surname(self, value: str) -> bool:
        return value.lower() not in self._not_names

    def _is_full_name(self, value: str) -> bool:
        first, last = value.lower().split()[:2]
        return first not in self._not_names and last not in self._not_names


    def _is_named_school(self, value: str) -> bool:
        """A school name directly before the school word ("riverside primary")."""
        words = value.lower().replace(".", " ").split()
        leading = [w for w in words if w not in _SCHOOL_WORDS]
        return bool(leading) and leading[-1] not in self._generic

    def _skip_generic(self, text: str, start: int, end: int) -> int:
        """Move ``start`` past leading generic words ("go to riverside" -> "riverside")."""
        for word in re.finditer(r"\S+", text[start:end]):
            if word.group().lower() not in self._generic:
                return start + word.start()
        return start

    def _is_postcode(self, value: str) -> bool:
        return any(ch.isdigit() for ch in value) and any(ch.isalpha() for ch in value)

    def _phones(self, text: str, lowered: str) -> Iterator[PiiSpan]:
        """Runs of seven or more digits, written or spoken, that are not counting."""
        if not self._maybe_phone(lowered):
            return
        has_context = bool(self._phone_context.search(text))
        for start, end, digits in self._digit_runs(text):
            if len(digits) < 7 or _is_counting(digits):
                continue
            if has_context or len(digits) >= 10 or digits[0] in "0+":
                yield PiiSpan(start, end, "pii.phone", "phone.digits")

    def _maybe_phone(self, lowered: str) -> bool:
        """Cheap test: could the (lower-cased, spaced) text hold seven digits at all?"""
        digits = len(lowered) - len(lowered.translate(_NO_DIGITS))
        if digits >= 7:
            return True
        spoken = self._spoken_digits
        return digits + sum(word in spoken for word in lowered.split()) >= 7

    def _digit_runs(self, text: str) -> Iterator[tuple[int, int, str]]:
        run_start = run_end = -1
        digits = ""
        repeat = 1
        for match in _WORD.finditer(text):
            word = match.group().lower()
            gap_ok = run_end >= 0 and _GAP.match(text[run_end:match.start()])
            value = _digit_value(word, self._digits)
            if value is None and word in self._repeats:
                if not gap_ok and run_end >= 0:
                    yield from _emit(run_start, run_end, digits)
                    run_start, digits = match.start(), ""
                elif run_end < 0:
                    run_start = match.start()
                repeat, run_end = self._repeats[word], match.end()
                continue
            if value is None:
                yield from _emit(run_start, run_end, digits)
                run_start = run_end = -1
                digits, repeat = "", 1
                continue
            if run_end >= 0 and not gap_ok:
                yield from _emit(run_start, run_end, digits)
                run_start, digits = -1, ""
            if run_start < 0:
                run_start = match.start()
            digits += value[0] * (repeat - 1) + value
            repeat, run_end = 1, match.end()
        yield from _emit(run_start, run_end, digits)


class NeedleIndex:
    """Which patterns can match a text at all: one pass for every pattern's needles."""

    def __init__(self, patterns: list[tuple]) -> None:
        self._by_needle: dict[str, set[int]] = {}
        for index, (_, _, needles, _, _) in enumerate(patterns):
            for needle in needles:
                self._by_needle.setdefault(needle, set()).add(index)
        try:
            import ahocorasick  # noqa: PLC0415 - optional C extension
        except ImportError:
            self._automaton = None
            return
        self._automaton = ahocorasick.Automaton()
        for needle, indexes in self._by_needle.items():
            self._automaton.add_word(needle, frozenset(indexes))
        self._automaton.make_automaton()

    def patterns_in(self, lowered: str) -> set[int]:
        """Indexes of the patterns with a needle in ``lowered``."""
        found: set[int] = set()
        if self._automaton is None:
            for needle, indexes in self._by_needle.items():
                if needle in lowered:
                    found |= indexes
            return found
        for _, indexes in self._automaton.iter(lowered):
            found |= indexes
        return found


_SCHOOL_WORDS = frozenset({
    "school", "primary", "elementary", "high", "middle", "academy", "junior", "infant",
    "infants", "grammar", "secondary", "prep", "preparatory", "montessori", "kindergarten",
    "nursery"})

def _is_given_name(self: PiiDetector, value: str) -> bool:
    return value.lower() not in self._not_names and value.lower() not in self._generic


def _is_known_first_name(self: PiiDetector, value: str) -> bool:
    return value.lower() in self._first_names and value.lower() not in self._not_names


def _is_family_name(self: PiiDetector, value: str) -> bool:
    return value.split()[0].lower() not in self._not_names


def _is_street_name(self: PiiDetector, value: str) -> bool:
    words = value.lower().split()[:-1]
    return bool(words) and not any(w in _NOT_STREET_NAME or w in self._street_words
                                   for w in words)


def _is_introduced_name(self: PiiDetector, value: str) -> bool:
    """A word in a self-introduction's place that is no state ("it's cold here")."""
    word = value.lower()
    return _is_given_name(self, value) and word not in _STATES and not word.endswith("ing")


_CHECKS: dict[str, Callable[[PiiDetector, str], bool]] = {
    "name.self": _is_given_name,
    "name.self_after": _is_given_name,
    "name.self_here": _is_introduced_name,
    "name.self_age": _is_introduced_name,
    "name.self_weak": _is_known_first_name,
    "name.family": _is_family_name,
    "name.title": _is_given_name,
    "address.on_street": _is_street_name,
    "name.full": PiiDetector._is_full_name,
    "name.surname": PiiDetector._is_surname,
    "school.named": PiiDetector._is_named_school,
    "school.called": lambda self, v: v.split()[0].lower() not in self._generic,
    "address.postcode": PiiDetector._is_postcode,
}


def _digit_value(word: str, digit_words: dict[str, str]) -> str | None:
    if word.lstrip("+").isdigit():
        return word
    return digit_words.get(word)


def _emit(start: int, end: int, digits: str) -> Iterator[tuple[int, int, str]]:
    if start >= 0 and digits:
        yield start, end, digits


def _is_counting(digits: str) -> bool:
    """Whether digits step by one up or down ("1234567", "987654321"): a child counting."""
    values = [ord(c) - 48 for c in digits if "0" <= c <= "9"]  # "+44 ...": the plus is no step
    steps = {b - a for a, b in zip(values, values[1:], strict=False)}
    return steps in ({1}, {-1})


def _merge(spans: list[PiiSpan]) -> list[PiiSpan]:
    """Overlapping spans merged (the earlier-starting one's category kept)."""
    merged: list[PiiSpan] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if merged and span.start < merged[-1].end:
            last = merged[-1]
            if span.end > last.end:
                merged[-1] = PiiSpan(last.start, span.end, last.category, last.rule)
            continue
        merged.append(span)
    return merged


def redact(text: str, spans: list[PiiSpan]) -> str:
    """``text`` with every span replaced by its placeholder."""
    for span in reversed(spans):
        text = text[: span.start] + span.placeholder + text[span.end :]
    return text


_TRIMMED = frozenset({"name.full", "name.family"})

SELF_NAME_RULES = frozenset({"name.self", "name.self_weak", "name.self_after",
                             "name.self_here", "name.self_age"})
"""Rules that find the child's own first name (kept when the parent allowed ``name``)."""

NAME_CONSENT_RULES = SELF_NAME_RULES | {"name.pet"}
"""Names kept when the parent allowed ``name``: the child's own, and their pet's (a pet's name
is what the child talks about; it is also a favourite security answer, so without the consent
it is redacted like the child's)."""

_WORDNAME = r"[^\W\d_]+"
_RELATION = (r"(?:(?:big|little|baby|older|younger|best|step|step\s+)?\s*(?:mum|mom|mummy|"
             r"mommy|mother|mama|dad|daddy|father|papa|sister|brother|sis|bro|nan|nana|nanny|"
             r"gran|granny|grandma|grandmother|grandad|granddad|grandpa|grandfather|aunt|"
             r"auntie|aunty|uncle|cousin|friend|teacher|babysitter|stepmum|stepmom|stepdad|"
             r"neighbour|neighbor))")
_PET = (r"(?:dog|doggy|doggie|puppy|pup|cat|kitty|kitten|hamster|rabbit|bunny|guinea\s+pig|"
        r"fish|goldfish|tortoise|turtle|parrot|budgie|pony|horse|lizard|snake|pet)")
_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
          r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)")
_ORDINAL_WORD = (r"(?:(?:twenty|thirty)[\s-])?(?:first|second|third|fourth|fifth|sixth|seventh|"
                 r"eighth|ninth|tenth|eleventh|twelfth|thirteenth|fourteenth|fifteenth|"
                 r"sixteenth|seventeenth|eighteenth|nineteenth|twentieth|thirtieth)")
_DAY = rf"(?:\d{{1,2}}(?:st|nd|rd|th)?|{_ORDINAL_WORD})"
_YEAR = r"(?:(?:19|20)\d\d|(?:twenty|two\s+thousand)(?:\s+and)?(?:\s+[a-z]+){1,2})"
_DATE = (rf"(?:(?:the\s+)?{_DAY}\s+(?:of\s+)?{_MONTH}\b(?:,?\s+{_YEAR})?"
         rf"|{_MONTH}\s+(?:the\s+)?{_DAY}\b(?:,?\s+{_YEAR})?"
         rf"|{_MONTH}\s+{_YEAR}"
         r"|\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}"
         rf"|(?<=in\s){_YEAR})")
_NEAR = (r"(?:right\s+|just\s+)?(?:next\s+door\s+to|next\s+to|near|nearby|behind|opposite|"
         r"across\s+from|across\s+the\s+road\s+from|by|beside|in\s+front\s+of|close\s+to|"
         r"round\s+the\s+corner\s+from|around\s+the\s+corner\s+from|down\s+the\s+road\s+from)")
_AGE_WORD = (r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
             r"thirteen)(?:\s+(?:and\s+a\s+half|years?\s+old))?")
_STATES = frozenset({
    "cold", "hot", "warm", "dark", "quiet", "noisy", "loud", "sunny", "windy", "rainy",
    "wet", "dry", "boring", "scary", "fun", "messy", "busy", "lovely", "nice", "great",
    "cosy", "cozy", "safe", "ok", "okay", "fine", "bored", "tired", "hungry", "sleepy",
    "sad", "happy", "scared", "cross", "angry", "sick", "ill", "poorly", "good", "bad",
    "home", "back", "done", "ready", "late", "early", "sorry", "excited", "lonely", "upset",
    "grumpy", "cheeky", "naughty", "silly", "big", "small", "tall", "short", "strong",
    "fast", "slow", "clever", "smart", "brave", "shy", "gross", "yucky", "smelly", "snowy",
    "freezing", "boiling", "crowded", "empty", "full", "new", "old", "weird", "funny",
    "nobody", "someone", "somebody", "everyone", "everybody", "nothing", "something",
    "still", "all", "both"})
"""Words that follow "it's ... here" / "i'm ... and i'm six" as a state, not a name."""
_NOT_STREET_NAME = frozenset({
    "the", "a", "an", "my", "our", "your", "his", "her", "their", "its", "this", "that",
    "busy", "big", "long", "dark", "open", "same", "other", "wrong", "right", "each", "every",
    "whole", "new", "old", "little", "bumpy", "quiet", "wet", "slippery", "way", "top",
    "back", "front", "side", "main", "high"})


def _extra_rules(street: str, school: str) -> list[tuple]:
    """Self-introductions, family names, birthdays, saints' schools, landmarks, streets."""
    intro = (r"\b(?:my\s+(?:first\s+|full\s+|whole\s+|real\s+)?name\s+is|my\s+name's|"
             r"my\s+names|i\s+am\s+called|i'm\s+called|im\s+called|call\s+me|"
             r"everyone\s+calls\s+me)")
    return [
        ("pii.name", "name.self", ("name", "call"),
         rf"{intro}\s+({_WORDNAME})", 1),
        ("pii.name", "name.self_weak", ("i'm", "im", "i am", "this is", " me "),
         rf"\b(?:i'm|im|i\s+am|this\s+is|(?:it's|its|it\s+is)\s+me,?)\s+({_WORDNAME})\b", 1),
        ("pii.name", "name.family", ("name", "called", "named"),
         rf"\b(?:my\s+|our\s+)?{_RELATION}(?:'s|s)?\s+(?:name\s+is|names\s+is|name's|is\s+called|"
         rf"is\s+named|called|named)\s+({_WORDNAME}(?:\s+{_WORDNAME})?)", 1),
        ("pii.name", "name.pet", ("name", "called", "named"),
         rf"\b(?:my|our)\s+{_PET}(?:'s|s)?\s+(?:name\s+is|names\s+is|name's|is\s+called|"
         rf"is\s+named|called|named)\s+({_WORDNAME})", 1),
        ("pii.name", "name.self_after", ("my name", "my first name"),
         rf"\b({_WORDNAME})\s+(?:is|'s)\s+my\s+(?:first\s+|real\s+)?name\b", 1),
        ("pii.name", "name.self_here", (" here ",),
         rf"\b(?:it's|its|it\s+is|this\s+is)\s+({_WORDNAME})\s+here\b", 1),
        ("pii.name", "name.self_age", ("and i", "and im"),
         rf"\b(?:i'm|im|i\s+am)\s+({_WORDNAME})\s*,?\s+and\s+(?:i'm|im|i\s+am)\s+"
         rf"(?:\d{{1,2}}|{_AGE_WORD})\b", 1),
        ("pii.name", "name.title", ("mr", "mrs", "ms", "dr", "mister"),
         rf"\b(?:mr|mrs|ms|dr|mister)\.?\s+({_WORDNAME})", 1),
        ("pii.birthday", "birthday.date", ("birth", "born", "bday"),
         rf"\b(?:birthday|birth\s+day|born|birth|bday|b-day)\b[^.!?\n]{{0,24}}?({_DATE})", 1),
        ("pii.school", "school.saint", ("st", "saint"),
         rf"\b(?:go|goes|going|went|am|i'm|im|is|are|at|to)\s+(?:to\s+|at\s+)?"
         rf"((?:st\.?|saint)\s+{_WORDNAME}(?:'s|s)?(?:\s+{school})?)\b", 1),
        ("pii.location", "location.landmark", ("live", "house", "home", "flat"),
         rf"\b(?:my\s+house|my\s+home|our\s+house|our\s+home|my\s+flat|our\s+flat|we\s+live|"
         rf"i\s+live|where\s+i\s+live)\s+(?:is\s+)?{_NEAR}\s+"
         rf"((?:{_REST}+?)(?=\s+(?:and|but|so)\b|[.,!?;]|$))", 1),
        ("pii.address", "address.on_street", tuple(f" {w} " for w in (
            "street", "road", "lane", "avenue", "drive", "close", "crescent", "terrace",
            "grove", "way", "gardens")),
         rf"\bon\s+((?:{_WORDNAME}\s+){{1,2}}?{street})\b", 1),
    ]
