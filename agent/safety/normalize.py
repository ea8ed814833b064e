"""Fold text the way children talk and recognizers transcribe into tokens we can match.

The same folding is applied to the child's words and to every list entry, so the lists
can be written in plain words ("i'm sad") and still match "I'M S0OOO SAD!!" or "im sad".

Steps: Unicode NFKC (full-width and mathematical letters), look-alike letters to Latin
(Cyrillic and Greek homoglyphs, small capitals), accents stripped, case folded; split on
spaces and punctuation; contractions expanded, family words unified ("mummy" -> "mum");
fillers dropped. Obfuscations give *alternative* token streams, matched as well:
leetspeak ("sh1t"), letters spaced out ("s h i t"), letters repeated ("shiiiit").
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

_DATA_FILE = Path(__file__).with_name("normalize.json")
_RAW_TOKEN = re.compile(r"[^\s,.;:?\"()\[\]{}<>/\\~^&=_\-–—…]+")
_NON_ALNUM = re.compile(r"[^a-z0-9]")
_TRIPLE = re.compile(r"([a-z])\1{2,}")
_LETTER = re.compile(r"[a-z]")
_LEET_CHARS = re.compile(r"[0-9@$!|+€£(]")
_SMALL_CAPITAL_BLOCKS = ((0x0250, 0x02B0), (0x1D00, 0x1D80), (0xA720, 0xA800))
"""Unicode blocks holding the Latin small capitals (IPA, phonetic extensions, Latin ext-D)."""
_SMALL_CAPITAL = "LATIN LETTER SMALL CAPITAL "


@dataclass(frozen=True, eq=False)
class FoldTables:
    """The data that drives folding, loaded from ``normalize.json``."""

    confusables: dict[int, str]
    """Look-alike character (code point) -> Latin replacement."""
    leet: dict[int, str]
    """Leetspeak character (code point) -> letter."""
    contractions: dict[str, tuple[str, ...]]
    """Token -> the tokens it stands for ("im" -> ("i", "am"))."""
    drop: frozenset[str]
    """Filler and intensifier tokens removed before matching."""
    masked: dict[str, str]
    """Star-masked words ("f***") -> the word they hide."""
    apostrophes: dict[str, tuple[str, ...]]
    """Contractions that must be read before the apostrophe goes ("he'll" is not "hell")."""


@lru_cache(maxsize=4)
def load_tables(path: Path = _DATA_FILE) -> FoldTables:
    """Read the folding tables (cached: one copy per file)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return FoldTables(
        confusables=str.maketrans(small_capitals() | data["confusables"]),
        leet=str.maketrans(data["leet"]),
        contractions={k: tuple(v.split()) for k, v in data["contractions"].items()},
        drop=frozenset(data["drop"]),
        masked=dict(data.get("masked", {})),
        apostrophes={k: tuple(v.split()) for k, v in data.get("apostrophes", {}).items()},
    )


def small_capitals() -> dict[str, str]:
    """Every Latin small capital (``ᴋ``, ``ɪ``, ``ʟ``) -> its lower-case letter, by its name."""
    table = {}
    for start, end in _SMALL_CAPITAL_BLOCKS:
        for code in range(start, end):
            name = unicodedata.name(chr(code), "")
            letter = name.removeprefix(_SMALL_CAPITAL)
            if name.startswith(_SMALL_CAPITAL) and len(letter) == 1:
                table[chr(code)] = letter.lower()
    return table


def fold_chars(text: str, tables: FoldTables) -> str:
    """Unicode-normalize, map look-alikes, strip accents and fold case."""
    text = unicodedata.normalize("NFKC", text).translate(tables.confusables)
    if text.isascii():
        return text.casefold()
    # look-alikes again after case folding (capital Eta passes for "H", its small form "n")
    text = text.casefold().translate(tables.confusables)
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _expand(token: str, tables: FoldTables) -> tuple[str, ...]:
    if token in tables.drop:
        return ()
    found = tables.contractions.get(token)
    if found is not None:
        return found
    if len(token) > 3 and token.endswith("s"):
        stem = tables.contractions.get(token[:-1])
        if stem is not None and len(stem) == 1:
            return (stem[0] + "s",)  # possessive or plural: "mummys" -> "mums"
    return (token,)


def _deleet(raw: str, tables: FoldTables) -> str | None:
    """The leetspeak reading of a raw token mixing letters and symbols, else None."""
    if not _LEET_CHARS.search(raw) or raw.isdigit():
        return None
    if not _LETTER.search(raw) and len(raw) < 3:
        return None
    mapped = _NON_ALNUM.sub("", raw.rstrip("!").translate(tables.leet))
    return mapped or None


def _join_spelled(tokens: list[str]) -> list[str]:
    """Join runs of three or more single letters ("s h i t" -> "shit")."""
    out: list[str] = []
    run: list[str] = []
    for token in [*tokens, ""]:
        if len(token) == 1 and token.isalpha():
            run.append(token)
            continue
        if len(run) >= 3:
            out.append("".join(run))
        else:
            out.extend(run)
        run = []
        if token:
            out.append(token)
    return out


@dataclass(frozen=True)
class Folded:
    """Token streams of one text: the plain reading and de-obfuscated alternatives."""

    primary: tuple[str, ...]
    """Tokens as written (after folding and expansion)."""
    alternatives: tuple[tuple[str, ...], ...]
    """Other readings (leetspeak, spelled-out, repeated letters); empty for plain text."""

    def streams(self) -> tuple[tuple[str, ...], ...]:
        """Every reading, the plain one first."""
        return (self.primary, *self.alternatives)


def fold(text: str, tables: FoldTables | None = None) -> Folded:
    """Fold ``text`` into the token streams that the matchers search."""
    tables = tables or load_tables()
    primary: list[str] = []
    deobfuscated: list[str] = []
    obfuscated = repeated = False
    singles = 0
    for raw in _RAW_TOKEN.findall(fold_chars(text, tables)):
        reading = _read_token(raw, tables)
        primary.extend(reading.expanded)
        if reading.token:
            deobfuscated.append(reading.token)
            singles += len(reading.token) == 1
        obfuscated = obfuscated or reading.leet
        repeated = repeated or reading.repeated
    if not (obfuscated or repeated or singles >= 3):
        return Folded(tuple(primary), ())
    alternatives = _alternatives(deobfuscated, repeated, tables)
    plain = tuple(primary)
    return Folded(plain, tuple(a for a in alternatives if a != plain))


@dataclass(frozen=True)
class _Reading:
    expanded: tuple[str, ...]
    token: str
    leet: bool
    repeated: bool


@lru_cache(maxsize=16384)
def _read_token(raw: str, tables: FoldTables) -> _Reading:
    """One raw token's plain tokens, its de-obfuscated form, and what it showed (cached)."""
    spelled_out = tables.apostrophes.get(raw)
    if spelled_out is not None:
        return _Reading(spelled_out, "".join(spelled_out), False, False)
    raw = tables.masked.get(raw, raw).replace("'", "")
    clean = _NON_ALNUM.sub("", raw)
    leet = _deleet(raw, tables)
    token = leet or clean
    expanded = _expand(clean, tables) if clean else ()
    return _Reading(expanded, token, bool(leet and leet != clean),
                    bool(_TRIPLE.search(token)))


def _expand_all(tokens: list[str], tables: FoldTables) -> tuple[str, ...]:
    out: list[str] = []
    for token in tokens:
        out.extend(_expand(token, tables))
    return tuple(out)


def _alternatives(
    tokens: list[str], repeated: bool, tables: FoldTables
) -> list[tuple[str, ...]]:
    joined = _join_spelled(tokens)
    found = [_expand_all(joined, tables)]
    if repeated:
        found.append(_expand_all([_TRIPLE.sub(r"\1\1", t) for t in joined], tables))
        found.append(_expand_all([_TRIPLE.sub(r"\1", t) for t in joined], tables))
    return list(dict.fromkeys(found))


def fold_phrase(phrase: str, tables: FoldTables | None = None) -> tuple[str, ...]:
    """Fold one list entry (plain words) into the tokens it must match.

    Word by word, with a cache: lists expand to tens of thousands of phrases made of a
    few thousand words, and the plain reading of a text is the concatenation of its words'.
    """
    tables = tables or load_tables()
    out: list[str] = []
    for word in phrase.split():
        out.extend(_fold_word(word, tables))
    return tuple(out)


@lru_cache(maxsize=65536)
def _fold_word(word: str, tables: FoldTables) -> tuple[str, ...]:
    return fold(word, tables).primary
