"""Measuring the dialogue on the frozen sets: intent top-1, fallback rates, time per turn.

Used by ``scripts/bench-dialogue`` and ``tests/test_dialogue_measures.py``. The sets live in
``tests/data/`` (``frozen_intents.jsonl``, ``frozen_conversations/<band>.txt``) and were
written before any tuning; this module only reads them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from agent.dialogue.engine import DialogueEngine
from agent.safety import SAFE_FALLBACK_REPLY

OUT_OF_SCOPE = "out_of_scope"
"""Label of a question the bear should honestly not answer."""


@dataclass(frozen=True)
class Labelled:
    """One frozen child utterance and the intent a parent expects."""

    text: str
    """What the child said."""
    intent: str
    """Expected intent (``answer:<id>`` for a question the answers pack covers)."""


@dataclass
class IntentScore:
    """Top-1 results on a labelled set."""

    total: int = 0
    """Utterances scored."""
    right: int = 0
    """Utterances whose top intent was the expected one."""
    misses: list[tuple[str, str, str]] = field(default_factory=list)
    """(text, expected, got) for every miss."""

    @property
    def accuracy(self) -> float:
        """Share of utterances understood right."""
        return self.right / self.total if self.total else 0.0


@dataclass
class FallbackScore:
    """How often the bear answered with a canned "I didn't get that"."""

    lines: int = 0
    """Child lines."""
    fallbacks: list[tuple[str, str]] = field(default_factory=list)
    """(child line, bear reply) for every fallback."""
    seconds: list[float] = field(default_factory=list)
    """Time per turn (safety in, dialogue, safety out)."""

    @property
    def rate(self) -> float:
        """Share of lines answered with a fallback."""
        return len(self.fallbacks) / self.lines if self.lines else 0.0


def read_labelled(path: Path) -> list[Labelled]:
    """The labelled utterances in a JSONL file (lines with ``_doc`` are its header)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    return [Labelled(r["text"], r["intent"]) for r in rows if "_doc" not in r]


def read_conversations(path: Path) -> dict[str, list[str]]:
    """Conversation name -> the child's lines, from a frozen ``.txt`` script."""
    conversations: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("## "):
            current = conversations.setdefault(line[3:], [])
        elif line and not line.startswith("#") and current is not None:
            current.append(line)
    return conversations


def got_label(engine: DialogueEngine, text: str) -> str:
    """The label the engine's understanding gives ``text`` (``answer:<id>`` for answers)."""
    heard = engine.understander.understand(text)
    if heard.intent == "answer" and heard.answer is not None:
        return f"answer:{heard.answer.id}"
    return heard.intent


def score_intents(engine: DialogueEngine, rows: list[Labelled]) -> IntentScore:
    """Top-1 accuracy of the engine's understanding on ``rows``."""
    score = IntentScore()
    engine.understander.prime(r.text for r in rows)
    for row in rows:
        got = got_label(engine, row.text)
        score.total += 1
        if got == row.intent:
            score.right += 1
        else:
            score.misses.append((row.text, row.intent, got))
    return score


def fallback_replies(engine: DialogueEngine) -> frozenset[str]:
    """Every reply that means "I didn't get that"."""
    return frozenset({*engine.pack.phrase_variants("fallback"),
                      *engine.pack.phrase_variants("tell_more", "low"), SAFE_FALLBACK_REPLY})


def turns(engine: DialogueEngine, safety, lines: list[str],
          seed: int = 7) -> Iterator[tuple[str, str, float]]:
    """(child line, reply spoken, seconds) for one conversation, the pipeline's way."""
    state = engine.new_state(seed=seed)
    for line in lines:
        start = time.perf_counter()
        verdict = safety.check_input(line)
        candidate = engine.reply(verdict.redacted, verdict, state)
        checked = safety.check_output(candidate)
        spoken = checked.redacted if checked.allowed else SAFE_FALLBACK_REPLY
        yield line, spoken, time.perf_counter() - start


def score_fallbacks(engine: DialogueEngine, safety, conversations: list[list[str]],
                    prime: bool = True) -> FallbackScore:
    """Fallback replies over whole conversations (one fresh state each).

    ``prime`` encodes every line in one batch first (fast); leave it off to time real turns.
    """
    canned = fallback_replies(engine)
    score = FallbackScore()
    if prime:
        engine.understander.prime(line for lines in conversations for line in lines)
    for lines in conversations:
        for line, spoken, seconds in turns(engine, safety, lines):
            score.lines += 1
            score.seconds.append(seconds)
            if spoken in canned:
                score.fallbacks.append((line, spoken))
    return score


def in_scope_fallbacks(engine: DialogueEngine, safety, rows: list[Labelled]) -> FallbackScore:
    """Each in-scope frozen utterance said on its own to a fresh bear: fallback replies."""
    return score_fallbacks(engine, safety, [[r.text] for r in rows if r.intent != OUT_OF_SCOPE])


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values`` (nearest rank); 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]
