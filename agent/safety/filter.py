"""The child-safety filter: one object, built once, that judges every text both ways.

``check_input`` judges the child's words, ``check_output`` everything the bear is about to
say. Both find personal information (and redact it), search the folded text for every list
entry in one pass per token stream plus the proximity rules, drop hits inside allowed
phrases, and let the most severe action win. Categories are searched in the whole text,
personal information included, so a redaction never hides a disclosure.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agent.safety.errors import SafetyListError
from agent.safety.lexicon import (
    ALLOW,
    END,
    SUPPRESS_PREFIX,
    Entry,
    Hit,
    NearMatcher,
    NearRule,
    make_matcher,
    padded,
    read_list,
    read_near,
)
from agent.safety.normalize import FoldTables, fold, load_tables
from agent.safety.pii import PiiDetector, redact
from agent.safety.verdict import Action, Match, Verdict

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).parent
"""Where the default data files live (beside this code)."""
INPUT = "input"
"""Direction name of the child's words."""
OUTPUT = "output"
"""Direction name of the bear's words."""


@dataclass(frozen=True)
class CategoryPolicy:
    """What one category does in each direction (None: not checked there)."""

    input: Action | None
    """Action when found in the child's words."""
    output: Action | None
    """Action when found in the bear's words."""


def read_policies(path: Path) -> dict[str, CategoryPolicy]:
    """Category -> policy, from ``categories.json``."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SafetyListError(
            f"cannot read safety categories {path}: {exc} — restore the file from the package"
        ) from None
    policies = {}
    for name, spec in raw.items():
        if name.startswith("_"):
            continue
        policies[name] = CategoryPolicy(
            Action(spec["input"]) if spec.get("input") else None,
            Action(spec["output"]) if spec.get("output") else None,
        )
    return policies


def read_entries(lists_dir: Path, policies: dict[str, CategoryPolicy],
                 tables: FoldTables) -> list[Entry]:
    """Every list entry: one file per category, plus allow and suppress lists."""
    entries: list[Entry] = []
    for path in sorted((lists_dir / "lists").glob("*.txt")):
        category = path.stem
        if category not in policies:
            raise SafetyListError(
                f"safety list {path} names unknown category {category!r} — "
                "add it to categories.json or rename the file"
            )
        entries.extend(read_list(path, category, tables))
    entries.extend(read_list(lists_dir / "allow.txt", ALLOW, tables))
    entries.extend(read_list(lists_dir / "suppress.txt", SUPPRESS_PREFIX, tables))
    return entries


class SafetyFilter:
    """Judges texts for a child's safety. Build once with :meth:`load`; thread-safe."""

    def __init__(self, entries: list[Entry], policies: dict[str, CategoryPolicy],
                 pii: PiiDetector, tables: FoldTables, backend: str = "auto",
                 near: list[NearRule] | None = None) -> None:
        self._policies = policies
        self._pii = pii
        self._tables = tables
        self._matcher = make_matcher(entries, backend)
        self._near = NearMatcher(near or [])
        self.entry_count = len(entries)
        """How many expanded list entries the matcher holds."""

    @property
    def backend(self) -> str:
        """Name of the phrase matcher in use ("aho-corasick" or "regex")."""
        return self._matcher.name

    @classmethod
    def load(cls, lists_dir: Path | None = None, backend: str = "auto") -> SafetyFilter:
        """Build the filter from the data files in ``lists_dir`` (default: beside the code)."""
        base = Path(lists_dir) if lists_dir is not None else PACKAGE_DIR
        if not (base / "categories.json").is_file():
            raise SafetyListError(
                f"safety data dir {base} has no categories.json — point lists_dir at a "
                "directory laid out like agent/safety/"
            )
        tables = load_tables(base / "normalize.json")
        policies = read_policies(base / "categories.json")
        try:
            entries = read_entries(base, policies, tables)
            near = read_near(base / "near.txt", tables)
            pii = PiiDetector(base / "pii.json")
        except (OSError, json.JSONDecodeError) as exc:
            raise SafetyListError(
                f"cannot read safety lists under {base}: {exc} — restore the data files"
            ) from None
        unknown = {r.entry.category for r in near} - set(policies)
        if unknown:
            raise SafetyListError(f"{base / 'near.txt'} names unknown categories "
                                  f"{sorted(unknown)} — add them to categories.json")
        built = cls(entries, policies, pii, tables, backend, near)
        logger.info("safety filter ready: %d entries, %s matcher", len(entries), built.backend)
        return built

    def check_input(self, text: str) -> Verdict:
        """Judge the child's words."""
        return self._check(text, INPUT)

    def check_output(self, text: str) -> Verdict:
        """Judge what the bear is about to say."""
        return self._check(text, OUTPUT)

    def _check(self, text: str, direction: str) -> Verdict:
        spans = self._pii.find(text)
        word_hits = self._word_hits(text, direction)
        matches = [Match(s.category, s.rule) for s in spans]
        matches += [Match(e.category, e.rule) for e in word_hits]
        action = Action.ALLOW
        for match in matches:
            found = self._action(match.category, direction)
            if found is not None and found.severity > action.severity:
                action = found
        unique = tuple(sorted(set(matches), key=lambda m: (m.category, m.rule)))
        verdict = Verdict(
            action=action,
            categories=tuple(sorted({m.category for m in unique})),
            redacted=redact(text, spans) if spans else text,
            matches=unique,
        )
        logger.debug("%s check: %d chars -> %s %s", direction, len(text),
                     verdict.action.value, verdict.categories)
        return verdict

    def _action(self, category: str, direction: str) -> Action | None:
        policy = self._policies.get(category)
        if policy is None:
            return None
        return policy.input if direction == INPUT else policy.output

    def _word_hits(self, text: str, direction: str) -> list[Entry]:
        """List entries found in any reading of ``text``, after allow and suppress."""
        found: list[Entry] = []
        suppressed: set[str] = set()
        for stream in fold(text, self._tables).streams():
            hits = [*self._matcher.find(padded(stream)), *self._near.find((*stream, END))]
            allowed = [h for h in hits if h.entry.category == ALLOW]
            for hit in hits:
                category = hit.entry.category
                if category.startswith(SUPPRESS_PREFIX):
                    suppressed.add(category.removeprefix(SUPPRESS_PREFIX))
                elif category != ALLOW and not _inside_any(hit, allowed):
                    if self._action(category, direction) is not None:
                        found.append(hit.entry)
        if direction == INPUT and suppressed:
            found = [e for e in found if e.category not in suppressed]
        return found


def _inside_any(hit: Hit, allowed: Iterable[Hit]) -> bool:
    return any(a.start <= hit.start and hit.end <= a.end for a in allowed)
