"""Words that sound like a listed word: "phuck", "fvck", "sheit", "kil yorself".

A text-to-speech voice says "phuck" exactly as it says the listed word, and a child types
it to get past a word list. Every token that is not a known English word (``words.txt.gz``,
the commonest words by ``wordfreq``, see ``scripts/make-safety-words``) is given a
*phonetic key* — a small metaphone-like spelling of its sound — and, when the key equals the
key of a word the lists use, the token is read as that word in an extra token stream. Known
words are never re-read ("fake" and "shot" sound close to listed words but are words), so
the lists keep their precision; only spellings no dictionary knows are heard by sound.

Tokens without a vowel ("fck", "sht", "btch") are compared by their consonants alone, and
only with words that are a list entry by themselves (a swear word, not "my" or "the").
"""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from agent.safety.lexicon import END, Entry, NearRule

logger = logging.getLogger(__name__)

WORDS_FILE = Path(__file__).with_name("words.txt.gz")
"""Known English words, one a line (gzip): never re-read by sound."""
MIN_LETTERS = 3
"""Shorter tokens and list words are never matched by sound (too many collide)."""
MAX_READINGS = 3
"""At most this many sound-alike readings of one text (one per candidate word)."""

_VOWELS = frozenset("aeiouy")
_DIGRAPHS = (("tch", "X"), ("sch", "SK"), ("sh", "X"), ("ch", "X"), ("ph", "F"), ("th", "0"),
             ("ck", "K"), ("gh", ""), ("wh", "W"), ("qu", "KW"), ("dg", "J"))
_SINGLE = {"b": "B", "d": "D", "f": "F", "g": "G", "h": "H", "j": "J", "k": "K", "l": "L",
           "m": "M", "n": "N", "p": "P", "q": "K", "r": "R", "s": "S", "t": "T", "v": "V",
           "w": "W", "x": "KS", "z": "S"}
_VOWEL_MARK = "a"
_SOFT_C = frozenset("eiy")
_LOOKS_LIKE_U = re.compile(r"(?<=[^aeiouy])[vw](?=[^aeiouy])")
_RESPELL = (("ph", "f"), ("ck", "k"), ("q", "k"), ("x", "ks"), ("z", "s"))
_HARD_C = re.compile(r"c(?![eiy])")
_DOUBLE = re.compile(r"(.)\1+")


@lru_cache(maxsize=8192)
def phonetic_key(word: str) -> str:
    """A coarse key of how ``word`` (lowercase a-z) sounds: consonant classes in order, each
    run of vowels as one ``a``, doubled sounds once, a silent final ``e`` dropped.

    "phuck", "fuck" and "fuuck" share ``FaK``; "yorself" and "yourself" share ``YaRSaLF``.
    A ``v`` or ``w`` between consonants is read as the ``u`` it stands for ("fvck").
    """
    if not _VOWELS.intersection(word):
        word = _LOOKS_LIKE_U.sub("u", word)
    if len(word) > 3 and word.endswith("e") and word[-2] not in _VOWELS:
        word = word[:-1]
    out: list[str] = []
    i = 0
    while i < len(word):
        sound, i = _sound_at(word, i)
        if sound and (not out or out[-1] != sound):
            out.append(sound)
    return "".join(out)


def _sound_at(word: str, i: int) -> tuple[str, int]:
    """The sound starting at ``word[i]`` and where the next one starts."""
    for spelling, sound in _DIGRAPHS:
        if word.startswith(spelling, i):
            return sound, i + len(spelling)
    letter = word[i]
    if letter == "y" and i + 1 < len(word) and word[i + 1] in _VOWELS - {"y"}:
        return "Y", i + 1  # consonant y: "yes", "yorself"
    if letter in _VOWELS:
        j = i
        while j < len(word) and word[j] in _VOWELS:
            j += 1
        return _VOWEL_MARK, j
    if letter == "c":
        soft = i + 1 < len(word) and word[i + 1] in _SOFT_C
        return ("S" if soft else "K"), i + 1
    if letter == "h" and (i + 1 == len(word) or word[i + 1] not in _VOWELS):
        return "", i + 1  # silent unless a vowel follows ("ah", "fuhk")
    return _SINGLE.get(letter, ""), i + 1


def respell(word: str) -> str:
    """``word`` spelled plainly: "phuck" -> "fuk", "secks" -> "seks", "fvck" -> "fuk"."""
    if not _VOWELS.intersection(word):
        word = _LOOKS_LIKE_U.sub("u", word)
    for spelling, plain in _RESPELL:
        word = word.replace(spelling, plain)
    word = _HARD_C.sub("k", word).replace("c", "s")
    return _DOUBLE.sub(r"\1", word)


def close_spelling(token: str, word: str) -> bool:
    """Whether ``token`` is at most one plain-spelling edit from ``word`` (two for words
    longer than five letters): the guard that keeps sound-alikes to misspellings."""
    a, b = respell(token), respell(word)
    return edit_distance(a, b) <= (1 if len(b) <= 5 else 2)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance of two short strings."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def consonants(key: str) -> str:
    """The key without its vowel marks (how a vowel-less token is compared)."""
    return key.replace(_VOWEL_MARK, "")


@lru_cache(maxsize=2)
def known_words(path: Path = WORDS_FILE) -> frozenset[str]:
    """The known English words (cached per file)."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return frozenset(line.strip() for line in handle if line.strip())


class SoundsLike:
    """Reads unknown tokens as the listed words they sound like. Immutable; thread-safe."""

    def __init__(self, targets: Iterable[str], standalone: Iterable[str],
                 known: frozenset[str]) -> None:
        words = sorted({t for t in targets if len(t) >= MIN_LETTERS and t.isalpha()})
        self._known = known | frozenset(words)
        self._by_key: dict[str, tuple[str, ...]] = {}
        for word in words:
            key = phonetic_key(word)
            self._by_key[key] = (*self._by_key.get(key, ()), word)
        self._by_consonants: dict[str, tuple[str, ...]] = {}
        for word in sorted({w for w in standalone if len(w) >= MIN_LETTERS and w.isalpha()}):
            key = consonants(phonetic_key(word))
            if len(key) >= 2:
                self._by_consonants[key] = (*self._by_consonants.get(key, ()), word)
        self.size = len(words)
        """How many list words can be heard by sound."""

    @classmethod
    def from_lists(cls, entries: Iterable[Entry], near: Iterable[NearRule],
                   known: frozenset[str] | None = None) -> SoundsLike:
        """Built over the words of every list entry and proximity rule that flags."""
        targets: set[str] = set()
        standalone: set[str] = set()
        for entry in entries:
            if entry.category.startswith(("allow", "suppress:")):
                continue
            tokens = [t for t in entry.tokens if t != END]
            targets.update(tokens)
            if len(tokens) == 1:
                standalone.add(tokens[0])
        for rule in near:
            for step in rule.steps:
                targets.update(w for w in step if w != END)
        return cls(targets, standalone, known_words() if known is None else known)

    def candidates(self, token: str) -> tuple[str, ...]:
        """The list words an unknown ``token`` sounds like (none for a known word)."""
        if len(token) < MIN_LETTERS or token in self._known or not token.isalpha():
            return ()
        key = phonetic_key(token)
        if _VOWELS.intersection(token) or "a" in key:
            found = self._by_key.get(key, ())
        else:
            found = self._by_consonants.get(consonants(key), ())
        return tuple(word for word in found if close_spelling(token, word))

    def readings(self, streams: Iterable[tuple[str, ...]]) -> list[tuple[str, ...]]:
        """Extra token streams in which unknown tokens are read as the words they sound like."""
        out: list[tuple[str, ...]] = []
        for stream in streams:
            options = [self.candidates(token) for token in stream]
            if not any(options):
                continue
            for choice in range(min(MAX_READINGS, max(len(o) for o in options))):
                out.append(tuple(o[min(choice, len(o) - 1)] if o else token
                                 for token, o in zip(stream, options, strict=True)))
        return out
