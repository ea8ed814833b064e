"""Word and phrase lists: reading the data files and matching them against token streams.

A list file ``lists/<category>.txt`` holds one entry per line (``#`` starts a comment).
An entry is plain words, folded like the child's text, matched as whole tokens:

* ``(a|b|)`` offers alternatives (an empty one makes the group optional);
* a trailing ``*`` on the last word matches any ending (``kill*`` -> killing, killer);
* a final ``$`` anchors the phrase at the end of the utterance.

``allow.txt`` lists phrases that are fine whatever they contain ("killed it", "naked mole
rat"): a hit lying inside an allowed phrase is dropped. ``suppress.txt`` lists
``category: phrase`` lines: when the phrase occurs, the category is dropped for that text
("keep it a secret" + "birthday surprise").

Two interchangeable matchers search the lists: :class:`AhoCorasickMatcher` (pyahocorasick,
all phrases in one pass) and :class:`RegexMatcher` (one compiled alternation).
``scripts/bench-safety`` measures both; the filter uses Aho-Corasick when it is installed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.safety.errors import SafetyListError
from agent.safety.normalize import FoldTables, fold_phrase

logger = logging.getLogger(__name__)

END = "$"
"""Token appended to every stream so a phrase can be anchored at the end."""
ALLOW = "allow"
"""Pseudo-category of allow-list entries."""
SUPPRESS_PREFIX = "suppress:"
"""Pseudo-category prefix of suppressor entries (``suppress:secrets``)."""

_GROUP = re.compile(r"\(([^()]*)\)")


@dataclass(frozen=True)
class Entry:
    """One expanded list entry: the tokens to match and where it came from."""

    category: str
    """Category, ``"allow"`` or ``"suppress:<category>"``."""
    rule: str
    """The entry as written in the file (names the rule, never the child's words)."""
    tokens: tuple[str, ...]
    """Folded tokens to match, whole tokens each."""
    prefix: bool = False
    """Whether the last token may continue (entry ended with ``*``)."""

    @property
    def key(self) -> str:
        """The string searched for in a space-padded stream."""
        body = " " + " ".join(self.tokens)
        return body if self.prefix else body + " "


def expand_alternatives(pattern: str) -> list[str]:
    """All plain phrases a pattern with ``(a|b|)`` groups (nesting allowed) stands for."""
    if "(" not in pattern:
        return [" ".join(pattern.split())]
    parts = _GROUP.split(pattern, maxsplit=1)
    if len(parts) == 1:
        raise SafetyListError(f"unbalanced parentheses in list entry {pattern!r}")
    before, group, after = parts
    phrases: list[str] = []
    for choice in group.split("|"):
        phrases.extend(expand_alternatives(before + choice + after))
    return list(dict.fromkeys(phrases))


def parse_entry(category: str, line: str, tables: FoldTables) -> list[Entry]:
    """The entries one list line expands to (none for blanks and comments)."""
    rule = line.split("#", 1)[0].strip()
    if not rule:
        return []
    entries = []
    for phrase in expand_alternatives(rule):
        anchored = phrase.endswith(f" {END}")
        prefix = phrase.endswith("*")
        body = phrase.removesuffix(f" {END}").rstrip("*")
        tokens = fold_phrase(body, tables)
        if not tokens:
            continue
        if anchored:
            tokens = (*tokens, END)
        entries.append(Entry(category, rule, tokens, prefix))
    return entries


def read_list(path: Path, category: str, tables: FoldTables) -> list[Entry]:
    """Entries of one list file; ``category`` None reads ``category: phrase`` lines."""
    entries: list[Entry] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        this_category = category
        if category.startswith(SUPPRESS_PREFIX) and line.strip() and not line.startswith("#"):
            name, sep, line = line.partition(":")
            if not sep:
                raise SafetyListError(
                    f"{path}:{number}: expected 'category: phrase' — fix the line"
                )
            this_category = SUPPRESS_PREFIX + name.strip()
        entries.extend(parse_entry(this_category, line, tables))
    return entries


@dataclass(frozen=True)
class Hit:
    """One entry found in a stream, with its character span in the padded stream."""

    entry: Entry
    """The entry that matched."""
    start: int
    """Index of the entry key's first character (the leading space)."""
    end: int
    """Index of the key's last character."""


def padded(tokens: Iterable[str]) -> str:
    """The searchable form of a token stream: spaces around every token, END at the end."""
    return " " + " ".join((*tokens, END)) + " "


class AhoCorasickMatcher:
    """All entries in one pyahocorasick automaton: one linear pass per stream."""

    name = "aho-corasick"

    def __init__(self, entries: Iterable[Entry]) -> None:
        import ahocorasick  # noqa: PLC0415 - optional C extension, imported where used

        self._automaton = ahocorasick.Automaton()
        by_key: dict[str, list[Entry]] = {}
        for entry in entries:
            by_key.setdefault(entry.key, []).append(entry)
        for key, group in by_key.items():
            self._automaton.add_word(key, (len(key), tuple(group)))
        self._automaton.make_automaton()

    def find(self, stream: str) -> Iterator[Hit]:
        """Every entry occurring in ``stream`` (overlaps included)."""
        for end, (length, group) in self._automaton.iter(stream):
            for entry in group:
                yield Hit(entry, end - length + 1, end)


class RegexMatcher:
    """All entries in one compiled alternation, tried at every token start."""

    name = "regex"

    def __init__(self, entries: Iterable[Entry]) -> None:
        self._by_key: dict[str, list[Entry]] = {}
        for entry in entries:
            self._by_key.setdefault(entry.key, []).append(entry)
        # Keys overlap at one start ("kill myself" / "kill"); a lookahead per length class
        # finds them all. Longest first inside a class.
        keys = sorted(self._by_key, key=len, reverse=True)
        alternation = "|".join(re.escape(k) for k in keys)
        self._pattern = re.compile(f"(?=({alternation}))")
        self._shorter: dict[str, list[str]] = {
            key: [key[:j] for j in range(2, len(key)) if key[:j] in self._by_key]
            for key in keys
        }

    def find(self, stream: str) -> Iterator[Hit]:
        """Every entry occurring in ``stream`` (overlaps included)."""
        for match in self._pattern.finditer(stream):
            key = match.group(1)
            start = match.start()
            for k in (key, *self._shorter[key]):
                for entry in self._by_key[k]:
                    yield Hit(entry, start, start + len(k) - 1)


@dataclass(frozen=True)
class NearRule:
    """Words from several sets in order, each within a few tokens of the one before.

    Written ``category: hits|slaps ~2 me|my``: a token from the first set, then within 2
    tokens a token from the second. It catches phrasings no fixed phrase foresaw
    ("daddy threw me against the wall") while staying inside one short stretch of words.
    """

    entry: Entry
    """Category and rule text, for reporting."""
    steps: tuple[frozenset[str], ...]
    """The word sets, in order."""
    gaps: tuple[int, ...]
    """Most tokens between step i and step i+1 (``gaps[i]``), at least 1."""


_NEAR_GAP = re.compile(r"\s+~(\d+)\s+")


def read_near(path: Path, tables: FoldTables) -> list[NearRule]:
    """Proximity rules from ``near.txt`` (``category: a|b ~N c|d [~M e|f]``)."""
    rules = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        category, sep, body = text.partition(":")
        parts = _NEAR_GAP.split(body.strip())
        if not sep or len(parts) < 3 or len(parts) % 2 == 0:
            raise SafetyListError(f"{path}:{number}: expected 'category: a|b ~N c|d' — "
                                  "fix the line")
        steps = []
        for words in parts[::2]:
            folded = [(END,) if w == END else fold_phrase(w, tables) for w in words.split("|")]
            if any(len(f) != 1 for f in folded):
                raise SafetyListError(f"{path}:{number}: each word of a near rule must be one "
                                      f"token after folding (fillers fold to none): {words!r}")
            steps.append(frozenset(f[0] for f in folded))
        gaps = tuple(int(g) for g in parts[1::2])
        rules.append(NearRule(Entry(category.strip(), text, ()), tuple(steps), gaps))
    return rules


class NearMatcher:
    """Finds proximity rules in a token stream, starting only where a first word occurs."""

    def __init__(self, rules: list[NearRule]) -> None:
        self._rules = rules
        self._by_first: dict[str, list[int]] = {}
        for r, rule in enumerate(rules):
            for word in rule.steps[0]:
                self._by_first.setdefault(word, []).append(r)

    def find(self, tokens: tuple[str, ...]) -> Iterator[Hit]:
        """Every rule whose steps occur in order within their gaps (spans as in padded())."""
        starts: dict[int, list[int]] = {}
        for position, token in enumerate(tokens):
            for r in self._by_first.get(token, ()):
                starts.setdefault(r, []).append(position)
        offsets: list[int] | None = None
        for r, positions in starts.items():
            rule = self._rules[r]
            for first in positions:
                last = _follow(rule, tokens, first)
                if last is not None:
                    offsets = offsets or _token_offsets(tokens)
                    yield Hit(rule.entry, offsets[first] - 1, offsets[last] + len(tokens[last]))
                    break


def _follow(rule: NearRule, tokens: tuple[str, ...], at: int) -> int | None:
    """Position of the rule's last word when its steps chain up from ``at``, else None."""
    for words, gap in zip(rule.steps[1:], rule.gaps, strict=True):
        for position in range(at + 1, min(at + gap, len(tokens) - 1) + 1):
            if tokens[position] in words:
                at = position
                break
        else:
            return None
    return at


def _token_offsets(tokens: tuple[str, ...]) -> list[int]:
    """Where each token starts in ``padded(tokens)``."""
    offsets, at = [], 1
    for token in tokens:
        offsets.append(at)
        at += len(token) + 1
    return offsets


def make_matcher(entries: list[Entry], backend: str = "auto"):
    """Build the matcher named by ``backend`` ("aho-corasick", "regex" or "auto")."""
    if backend in ("auto", AhoCorasickMatcher.name):
        try:
            return AhoCorasickMatcher(entries)
        except ImportError:
            if backend != "auto":
                raise SafetyListError(
                    "pyahocorasick is not installed — pip install pyahocorasick "
                    "or use the regex backend"
                ) from None
            logger.warning("pyahocorasick missing; safety filter falls back to regex")
    if backend in ("auto", RegexMatcher.name):
        return RegexMatcher(entries)
    raise SafetyListError(f"unknown matcher backend {backend!r} — use aho-corasick or regex")
