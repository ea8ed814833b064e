"""The dialogue's targets on the frozen sets (issue 13), and the pack's own checks.

The frozen sets (tests/data/frozen_intents.jsonl, tests/data/frozen_conversations/) were
written by hand before any example, keyword or threshold was tuned, and are never tuned on.
Targets: top-1 intent >= 90%; in-scope lines answered with a fallback <= 5%; fallback
replies <= 10% of a child's lines in whole conversations, per age band. Measured with the
sentence model (how the bear ships) and on rules alone (how it runs without the model).
``scripts/bench-dialogue`` prints the same figures with latency.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest
from support.embedder import require_embedder

from agent.dialogue import AGE_BANDS, MAX_WORDS, DialogueEngine, load_pack
from agent.dialogue.content import CONTENT_DIR
from agent.dialogue.evaluate import (
    in_scope_fallbacks,
    read_conversations,
    read_labelled,
    score_fallbacks,
    score_intents,
)
from agent.dialogue.semantic import _from_shipped, digest
from agent.dialogue.understand import SHIPPED_VECTORS, examples
from agent.safety import Action, SafetyFilter
from agent.semantic.embedder import Embedder
from agent.semantic.model_files import packaged_model_zip

DATA = Path(__file__).parent / "data"
FROZEN = read_labelled(DATA / "frozen_intents.jsonl")
MODES = ["model", "rules"]


@lru_cache(maxsize=8)
def engine_for(mode: str, band: str = "6-8") -> DialogueEngine:
    return DialogueEngine(band, embedder=require_embedder() if mode == "model" else None)


def test_the_frozen_set_is_big_enough_and_labels_exist() -> None:
    assert len(FROZEN) >= 300
    pack = load_pack("6-8")
    answer_ids = {a.id for a in pack.answers}
    labels = {r.intent for r in FROZEN}
    unknown = {label for label in labels if label.startswith("answer:")
               and label[7:] not in answer_ids}
    assert not unknown
    assert len({r.intent for r in FROZEN if r.intent.startswith("answer:")}) >= 60


@pytest.mark.parametrize("mode", MODES)
def test_top1_intent_on_the_frozen_set(mode: str) -> None:
    score = score_intents(engine_for(mode), FROZEN)
    print(f"\n{mode}: top-1 {score.accuracy:.3f} on {score.total}")
    for text, expected, got in score.misses:
        print(f"  {text!r}: expected {expected}, got {got}")
    assert score.accuracy >= 0.90


def test_top1_on_lines_that_are_not_also_examples() -> None:
    """The honest figure: frozen lines that happen to equal an example phrase left out."""
    engine = engine_for("model")
    known = {text for _, text in examples(engine.pack)}
    fresh = [r for r in FROZEN if r.text not in known]
    score = score_intents(engine, fresh)
    print(f"\nmodel, fresh wording only: top-1 {score.accuracy:.3f} on {score.total} "
          f"({len(FROZEN) - len(fresh)} lines equal an example)")
    assert len(fresh) >= 250
    assert score.accuracy >= 0.90


@pytest.mark.parametrize("mode", MODES)
def test_in_scope_lines_rarely_get_a_fallback(mode: str, safety: SafetyFilter) -> None:
    score = in_scope_fallbacks(engine_for(mode), safety, FROZEN)
    print(f"\n{mode}: in-scope fallback {score.rate:.3f} of {score.lines}")
    assert score.rate <= 0.05, score.fallbacks


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("band", AGE_BANDS)
def test_whole_conversations_rarely_get_a_fallback(mode: str, band: str,
                                                  safety: SafetyFilter) -> None:
    conversations = read_conversations(DATA / "frozen_conversations" / f"{band}.txt")
    assert len(conversations) >= 3
    score = score_fallbacks(engine_for(mode, band), safety, list(conversations.values()))
    print(f"\n{mode} {band}: fallback {score.rate:.3f} of {score.lines} lines")
    assert score.lines >= 80
    assert score.rate <= 0.10, score.fallbacks


@pytest.mark.parametrize("band", AGE_BANDS)
def test_every_answer_is_safe_short_and_true_to_its_shape(band: str,
                                                          safety: SafetyFilter) -> None:
    pack = load_pack(band)
    for answer in pack.answers:
        verdict = safety.check_output(answer.text)
        assert verdict.action is Action.ALLOW, (answer.id, verdict.categories)
        assert len(answer.text.split()) <= MAX_WORDS, answer.id
        assert len(answer.asks) >= 3 and answer.keys, answer.id


def test_every_intent_has_at_least_ten_phrasings() -> None:
    exemplars = load_pack().exemplars
    assert len(exemplars) >= 45
    thin = {intent: len(v) for intent, v in exemplars.items() if len(v) < 10}
    assert not thin


def test_the_shipped_vectors_match_the_examples_and_the_model() -> None:
    """Stale vectors are never used (digest) — but a stale file means a slow start: re-run
    scripts/make-dialogue-vectors after editing exemplars.json or answers.json."""
    embedder = require_embedder()  # the bear's default weights (int8)
    reference = Embedder.from_path(packaged_model_zip(), "float32")  # what the vectors ship as
    for band in AGE_BANDS:
        phrases = examples(load_pack(band))
        key = digest([t for _, t in phrases], embedder.fingerprint)
        shipped = _from_shipped(SHIPPED_VECTORS, key, len(phrases))
        assert shipped is not None, "run scripts/make-dialogue-vectors"
        sample = [0, len(phrases) // 2, len(phrases) - 1]
        texts = [phrases[i][1] for i in sample]
        assert abs(reference.encode(texts) - shipped[sample]).max() < 1e-4
        assert (embedder.encode(texts) * shipped[sample]).sum(axis=1).min() >= 0.99


def test_content_files_stay_valid_json() -> None:
    for path in CONTENT_DIR.glob("*.json"):
        json.loads(path.read_text(encoding="utf-8"))
