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
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.safety.classifier import MANIFEST, MODEL_DIR
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
from agent.safety.model_stage import ModelStage
from agent.safety.normalize import FoldTables, fold, load_tables
from agent.safety.pii import NAME_CONSENT_RULES, PiiDetector, redact
from agent.safety.semantic import SemanticHit, SemanticStage
from agent.safety.sounds import SoundsLike
from agent.safety.verdict import Action, Match, Verdict

logger = logging.getLogger(__name__)

Stage = SemanticStage | ModelStage
"""A semantic stage the filter can run."""

PACKAGE_DIR = Path(__file__).parent
"""Where the default data files live (beside this code)."""
INPUT = "input"
"""Direction name of the child's words."""
OUTPUT = "output"
"""Direction name of the bear's words."""
CONTEXT_TURNS = 2
"""Earlier child turns judged together with the current one."""
CONTEXT_SUSPICION = 0.45
"""A turn this close (cosine) to an escalating exemplar is also judged with the turns before
it (one more forward pass); others are not, which keeps most turns to one pass. (The trained
stage has its own ``suspicion``, a probability.)"""
SEMANTIC_KINDS = ("auto", "model", "knn")
"""Which semantic stage: the trained classifier ("model"; "auto" when its weights ship) or
nearest-neighbour over exemplars ("knn", kept for comparison)."""


@dataclass(frozen=True)
class CategoryPolicy:
    """What one category does in each direction (None: not checked there)."""

    input: Action | None
    """Action when found in the child's words."""
    output: Action | None
    """Action when found in the bear's words."""
    severity: str | None = None
    """For an escalating category: "high" (page the parent) or "low" (daily-summary note)."""
    reply: tuple[str, ...] | None = None
    """For a category that escalates or blocks the child's words: the phrase set the bear
    answers with (``("escalate", "self_harm")``: ``phrases.json`` section and key)."""
    priority: int | None = None
    """Among those categories: the lowest priority that fired chooses the reply."""


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
        severity = spec.get("severity")
        if severity not in (None, "high", "low"):
            raise SafetyListError(f"{path}: category {name} has severity {severity!r} — "
                                  "use \"high\" or \"low\"")
        reply, priority = spec.get("reply"), spec.get("priority")
        if reply is not None and (not isinstance(reply, str) or "." not in reply):
            raise SafetyListError(f"{path}: category {name} has reply {reply!r} — name a "
                                  "phrase set as section.key, e.g. \"escalate.distress\"")
        if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)):
            raise SafetyListError(f"{path}: category {name} has priority {priority!r} — use a "
                                  "whole number (lowest is spoken first)")
        policies[name] = CategoryPolicy(
            Action(spec["input"]) if spec.get("input") else None,
            Action(spec["output"]) if spec.get("output") else None,
            severity,
            tuple(reply.split(".")) if reply else None,
            priority,
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
                 near: list[NearRule] | None = None,
                 semantic: Callable[[], Stage | None] | None = None,
                 sounds: SoundsLike | None = None) -> None:
        self._policies = policies
        self._sounds = sounds
        self._semantic_loader = semantic
        self._semantic: Stage | None = None
        self._semantic_lock = threading.Lock()
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

    @property
    def semantic(self) -> Stage | None:
        """The semantic stage, loaded on first use (None: rules only)."""
        if self._semantic_loader is not None:
            with self._semantic_lock:
                if self._semantic_loader is not None:
                    self._semantic = self._semantic_loader()
                    self._semantic_loader = None
        return self._semantic

    @property
    def stages(self) -> str:
        """``"rules+semantic"`` or ``"rules-only"`` (loads the semantic stage if pending)."""
        return "rules+semantic" if self.semantic is not None else "rules-only"

    @classmethod
    def load(cls, lists_dir: Path | None = None, backend: str = "auto",
             embedder: Any = None, cache_dir: Path | None = None,
             semantic_kind: str = "auto") -> SafetyFilter:
        """Build the filter from the data files in ``lists_dir`` (default: beside the code).

        ``embedder``: an :class:`agent.semantic.Embedder`, or a no-argument callable that
        returns one or None (called on first use, so start-up stays fast); None: rules only.
        ``semantic_kind``: one of :data:`SEMANTIC_KINDS`.
        """
        if semantic_kind not in SEMANTIC_KINDS:
            raise SafetyListError(f"semantic_kind {semantic_kind!r} is unknown — use one of "
                                  f"{', '.join(SEMANTIC_KINDS)}")
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
        semantic = (_semantic_loader(embedder, base, cache_dir, semantic_kind)
                    if embedder is not None else None)
        sounds = SoundsLike.from_lists(entries, near)
        built = cls(entries, policies, pii, tables, backend, near, semantic, sounds)
        logger.info("safety filter ready: %d entries, %s matcher", len(entries), built.backend)
        return built

    def check_input(self, text: str, history: Sequence[str] | None = None,
                    keep_name: bool = False) -> Verdict:
        """Judge the child's words; ``history``: the child's previous turns, oldest first.

        ``keep_name``: the parent allowed the ``name`` scope, so the child's own first name
        (from a self-introduction) is kept; every other name is still redacted.

        Only the last :data:`CONTEXT_TURNS` of ``history`` count, so a long conversation is
        judged exactly like a short one. The turns together escalate when they, and not this
        text alone nor the earlier turns alone, amount to a disclosure or a lure.
        """
        verdict = self._check(text, INPUT, keep_name)
        if history and verdict.action is not Action.ESCALATE:
            verdict = self._with_context(text, list(history)[-CONTEXT_TURNS:], verdict,
                                         keep_name)
        return verdict

    def check_output(self, text: str) -> Verdict:
        """Judge what the bear is about to say."""
        return self._check(text, OUTPUT)

    def _check(self, text: str, direction: str, keep_name: bool = False) -> Verdict:
        spans = self._spans(text, keep_name)
        word_hits = self._word_hits(text, direction)
        matches = [Match(s.category, s.rule) for s in spans]
        matches += [Match(e.category, e.rule) for e in word_hits]
        action = self._most_severe(matches, direction)
        stage, hit = "rules", None
        if action.severity < Action.BLOCK.severity or (
                direction == INPUT and action is Action.BLOCK):
            hit = self._semantic_hit(text, direction)
            if hit is not None:
                found = self._action(hit.category, direction)
                if found is not None and found.severity > action.severity:
                    matches.append(Match(hit.category, "semantic"))
                    action, stage = found, "semantic"
                elif found is Action.ALLOW and action is Action.ALLOW:
                    matches.append(Match(hit.category, "semantic"))  # e.g. comfort: no alert
                    stage = "semantic"
                else:
                    hit = None
            elif self.semantic is not None and action is Action.ALLOW:
                stage = "semantic"
        return self._verdict(text, spans, matches, action, stage, hit, direction)

    def _spans(self, text: str, keep_name: bool) -> list:
        spans = self._pii.find(text)
        if keep_name:
            spans = [s for s in spans if s.rule not in NAME_CONSENT_RULES]
        return spans

    def _semantic_hit(self, text: str, direction: str) -> SemanticHit | None:
        semantic = self.semantic
        if semantic is None or not text.strip():
            return None
        return semantic.judge(text, direction)

    def _most_severe(self, matches: Iterable[Match], direction: str) -> Action:
        action = Action.ALLOW
        for match in matches:
            found = self._action(match.category, direction)
            if found is not None and found.severity > action.severity:
                action = found
        return action

    def _verdict(self, text: str, spans: list, matches: list[Match], action: Action,
                 stage: str, hit: SemanticHit | None, direction: str,
                 context: bool = False) -> Verdict:
        unique = tuple(sorted(set(matches), key=lambda m: (m.category, m.rule)))
        categories = tuple(sorted({m.category for m in unique}))
        verdict = Verdict(
            action=action,
            categories=categories,
            redacted=redact(text, spans) if spans else text,
            matches=unique,
            stage=stage,
            nearest=hit.nearest if hit is not None else None,
            similarity=hit.similarity if hit is not None else None,
            severity=self._severity(categories, direction) if action is Action.ESCALATE
            else None,
            context=context,
        )
        logger.debug("%s check: %d chars -> %s %s (%s)", direction, len(text),
                     verdict.action.value, verdict.categories, stage)
        return verdict

    def _severity(self, categories: Iterable[str], direction: str) -> str:
        """The most severe alert severity of the escalating categories ("high" wins)."""
        levels = {self._policies[c].severity for c in categories
                  if c in self._policies and self._action(c, direction) is Action.ESCALATE}
        return "high" if "high" in levels or None in levels else "low"

    def _with_context(self, text: str, earlier: list[str], verdict: Verdict,
                      keep_name: bool) -> Verdict:
        """Escalate when the last turns together newly amount to a disclosure or lure."""
        escalating = frozenset(c for c, p in self._policies.items() if p.input is Action.ESCALATE)
        joined_now = _join([*earlier, text])
        before = {e.category for e in self._word_hits(_join(earlier), INPUT)}
        new = [Match(e.category, e.rule) for e in self._word_hits(joined_now, INPUT)
               if e.category in escalating and e.category not in before]
        stage, hit = "rules", None
        semantic = self.semantic
        if not new and semantic is not None and text.strip():
            allowed = frozenset(c for c in escalating if c in semantic.categories[INPUT])
            if semantic.closeness(text, INPUT, allowed) >= getattr(semantic, "suspicion",
                                                                    CONTEXT_SUSPICION):
                hit = semantic.judge_window([*earlier, text], INPUT, allowed)
                if hit is not None and not semantic.judge_each(
                        [t for t in earlier if t.strip()], INPUT, allowed):
                    new, stage = [Match(hit.category, "semantic.context")], "semantic"
                else:
                    hit = None
        if not new:
            return verdict
        matches = [*verdict.matches, *new]
        spans = self._spans(text, keep_name)
        return self._verdict(text, spans, matches, Action.ESCALATE, stage, hit, INPUT,
                             context=True)

    def _action(self, category: str, direction: str) -> Action | None:
        policy = self._policies.get(category)
        if policy is None:
            return None
        return policy.input if direction == INPUT else policy.output

    def _readings(self, text: str) -> list[tuple[str, ...]]:
        """Every token stream of ``text``: as written, de-obfuscated, and heard by sound."""
        streams = list(fold(text, self._tables).streams())
        if self._sounds is not None:
            streams += self._sounds.readings(streams)
        return streams

    def _word_hits(self, text: str, direction: str) -> list[Entry]:
        """List entries found in any reading of ``text``, after allow and suppress."""
        found: list[Entry] = []
        suppressed: set[str] = set()
        for stream in self._readings(text):
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


def _join(turns: Iterable[str]) -> str:
    return " . ".join(t.strip() for t in turns if t.strip())


def _semantic_loader(embedder: Any, base: Path, cache_dir: Path | None, kind: str
                     ) -> Callable[[], Stage | None]:
    """A loader that builds the semantic stage on first use (None if no embedder)."""
    def load() -> Stage | None:
        model = embedder() if callable(embedder) and not hasattr(embedder, "encode") else embedder
        if model is None:
            return None
        if kind == "model" or (kind == "auto" and (base / MODEL_DIR / MANIFEST).is_file()):
            trained = ModelStage(model, base, SemanticStage(model, base, cache_dir))
            logger.info("semantic safety stage ready: trained classifier, labels %s",
                        trained.categories)
            return trained
        stage = SemanticStage(model, base, cache_dir)
        logger.info("semantic safety stage ready: %s exemplars",
                    {d: len(i.texts) for d, i in stage.indexes.items()})
        return stage
    return load


def _inside_any(hit: Hit, allowed: Iterable[Hit]) -> bool:
    return any(a.start <= hit.start and hit.end <= a.end for a in allowed)
