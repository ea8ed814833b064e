"""The bear a 10-year-old respects (issue 20, item 7): the knowledge pack, stories by subject,
harder riddles.

``tests/data/knowledge_questions.jsonl`` was written before the pack and its matcher were
tuned: each line a child's question as the recogniser writes it and words an on-topic answer
contains, or ``null`` when the bear cannot know (it must say so, not give another fact).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest
from support.embedder import require_embedder

from agent.dialogue import DialogueEngine
from agent.dialogue.content import CONTENT_DIR
from agent.dialogue.errors import ContentError
from agent.dialogue.extras import Extras
from agent.dialogue.knowledge import (
    KNOWLEDGE_FILE,
    SHIPPED_VECTORS,
    TOPICS,
    examples,
    load_knowledge,
)
from agent.dialogue.semantic import _from_shipped, digest
from agent.dialogue.speech import MAX_WORDS
from agent.safety import Action, SafetyFilter
from agent.safety.verdict import Verdict

DATA = Path(__file__).parent / "data"
JUDGED = [json.loads(line) for line in
          (DATA / "knowledge_questions.jsonl").read_text().splitlines() if line.strip()]
MODES = ["model", "rules"]


@lru_cache(maxsize=4)
def engine_for(mode: str, band: str = "9-12") -> DialogueEngine:
    return DialogueEngine(band, embedder=require_embedder() if mode == "model" else None)


def say(engine: DialogueEngine, text: str, seed: int = 1) -> str:
    state = engine.new_state(seed=seed)
    return engine.reply(text, Verdict(Action.ALLOW, (), text), state)


# The pack ------------------------------------------------------------------------------------
def test_the_pack_has_400_checked_facts_each_with_a_source() -> None:
    raw = json.loads((CONTENT_DIR / KNOWLEDGE_FILE).read_text())["facts"]
    facts = load_knowledge("9-12")
    assert len(raw) == len(facts) >= 400
    assert {f.topic for f in facts} == set(TOPICS)
    assert all(len(f.source) >= 8 and ":" in f.source for f in facts)
    assert len({f.text for f in facts}) == len(facts)
    assert all(len(f.text.split()) <= MAX_WORDS for f in facts)
    assert all(f.asks and f.keys for f in facts)
    for topic in TOPICS:
        assert sum(f.topic == topic for f in facts) >= 40, topic


def test_every_key_set_is_specific() -> None:
    """A single keyword must be a word that names its subject, not a common one."""
    common = {"what", "how", "why", "who", "which", "many", "big", "biggest", "first",
              "long", "old", "far", "fast", "animal", "planet", "capital", "body", "earth",
              "people", "world", "water", "sun", "moon", "space", "country", "day"}
    loose = [(f.id, k) for f in load_knowledge("9-12") for k in f.keys
             if len(k) == 1 and k[0].rstrip("*") in common]
    assert not loose


def test_shipped_knowledge_vectors_are_current() -> None:
    embedder = require_embedder()
    questions = examples(load_knowledge("9-12"))
    key = digest([text for _, text in questions], embedder.fingerprint)
    assert _from_shipped(SHIPPED_VECTORS, key, len(questions)) is not None, (
        "knowledge_vectors.npz is stale — run scripts/make-knowledge-vectors")


def test_every_knowledge_and_story_text_passes_the_output_check(safety: SafetyFilter) -> None:
    extras = engine_for("rules").extras
    replies = list(dict.fromkeys(extras.every_reply()))
    assert len(replies) >= 450
    if safety.semantic is not None:  # one batch: many times faster than a pass per line
        safety.semantic.prime(replies, "output")
    verdicts = {r: safety.check_output(r) for r in replies}
    blocked = {r: v.categories for r, v in verdicts.items() if v.action is not Action.ALLOW}
    assert not blocked


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.pop("source"), "'source' must be a non-empty string"),
    (lambda f: f.update(topic="magic"), "topic 'magic' is not one of"),
    (lambda f: f.update(keys=[]), "'keys' must list keyword lists"),
    (lambda f: f.update(ask="why"), "'ask' must list example questions"),
])
def test_a_malformed_fact_is_refused_naming_it(tmp_path: Path, change, message: str) -> None:
    data = json.loads((CONTENT_DIR / KNOWLEDGE_FILE).read_text())
    change(data["facts"][3])
    (tmp_path / KNOWLEDGE_FILE).write_text(json.dumps(data))
    with pytest.raises(ContentError, match=message) as caught:
        load_knowledge("9-12", tmp_path)
    assert data["facts"][3]["id"] in str(caught.value)


# Answering on topic, honestly ------------------------------------------------------------------
@dataclass
class Judged:
    on_topic: int = 0
    honest: int = 0
    wrong: int = 0
    answerable: int = 0
    answered_right: int = 0
    unknowable: int = 0
    declined: int = 0


def judge(engine: DialogueEngine) -> tuple[Judged, list[str]]:
    unknown = set(engine.extras.phrases["unknown"]) | set(
        engine._speech.variants("out_of_scope"))
    score, wrong = Judged(), []
    for row in JUDGED:
        reply = say(engine, row["text"])
        expect = row["expect"]
        if reply in unknown:
            score.honest += 1
            score.declined += expect is None
        elif expect is not None and any(e.lower() in reply.lower() for e in expect):
            score.on_topic += 1
            score.answered_right += 1
        else:
            score.wrong += 1
            wrong.append(f"{row['text']!r} -> {reply!r}")
        score.answerable += expect is not None
        score.unknowable += expect is None
    return score, wrong


@pytest.mark.parametrize("mode", MODES)
def test_questions_are_answered_on_topic_or_honestly(mode: str) -> None:
    score, wrong = judge(engine_for(mode))
    total = len(JUDGED)
    print(f"\n{mode}: on topic {score.on_topic / total:.1%}, honest 'I don't know' "
          f"{score.honest / total:.1%}, wrong {score.wrong / total:.1%} of {total}; "
          f"answerable answered right {score.answered_right}/{score.answerable}, "
          f"unknowable declined {score.declined}/{score.unknowable}")
    for line in wrong:
        print("  wrong:", line)
    assert total >= 100
    assert score.answered_right / score.answerable >= 0.90
    assert score.wrong / total <= 0.10


@pytest.mark.parametrize("mode", MODES)
def test_questions_nobody_can_answer_get_an_honest_i_dont_know(mode: str) -> None:
    score, _ = judge(engine_for(mode))
    print(f"\n{mode}: unknowable declined {score.declined}/{score.unknowable}")
    assert score.declined / score.unknowable >= 0.70


def test_tell_me_more_stays_on_the_topic() -> None:
    engine = engine_for("rules")
    state = engine.new_state(seed=3)
    first = engine.reply("what is the capital of peru", Verdict(Action.ALLOW, (), "x"), state)
    assert "Lima" in first
    more = engine.reply("tell me more", Verdict(Action.ALLOW, (), "tell me more"), state)
    fact = next(f for f in engine.extras.knowledge.facts if f.text == more)
    assert fact.topic == "countries" and more != first


def test_the_knowledge_pack_is_for_the_oldest_band_only() -> None:
    assert load_knowledge("9-12") and not load_knowledge("3-5") and not load_knowledge("6-8")
    assert "Tokyo" not in say(DialogueEngine("6-8"), "whats the capital of japan")


# Stories and riddles for the band -------------------------------------------------------------
@pytest.mark.parametrize(("asked", "subject"), [
    ("tell me a story about a robot", "robot"), ("a space story please", "space"),
    ("tell me a detective story", "detective"), ("can you tell me a story about mars", "mars"),
    ("tell me a mystery story", "mystery"), ("a story about friends", "friendship"),
    ("tell me a story about the ocean", "ocean"), ("story about a dragon", "dragon"),
])
def test_a_story_asked_for_by_subject_is_about_it(asked: str, subject: str) -> None:
    engine = engine_for("rules")
    state = engine.new_state(seed=5)
    reply = engine.reply(asked, Verdict(Action.ALLOW, (), asked), state)
    story = next(s for s in engine.pack.stories if s.id == state.story_id)
    assert story.parts[0] in reply
    assert any(subject in tag or tag in subject for tag in story.about), (asked, story.id)


def test_a_subject_without_a_story_is_said_honestly_and_the_closest_offered() -> None:
    engine = engine_for("model")
    state = engine.new_state(seed=6)
    asked = "tell me a story about pirates"
    reply = engine.reply(asked, Verdict(Action.ALLOW, (), asked), state)
    assert "don't" in reply and state.offer == "story" and state.skill is None
    offered = next(s for s in engine.pack.stories if s.title in reply)
    told = engine.reply("yes", Verdict(Action.ALLOW, (), "yes"), state)
    assert offered.parts[0] in told


@pytest.mark.parametrize("asked", ["tell me a story but not a baby one",
                                   "a grown up story please", "a story for older kids",
                                   "i'm eleven tell me a proper story"])
def test_a_story_but_not_a_baby_one_is_written_for_9_to_12(asked: str) -> None:
    engine = engine_for("rules")
    for seed in range(6):
        state = engine.new_state(seed=seed)
        engine.reply(asked, Verdict(Action.ALLOW, (), asked), state)
        story = next(s for s in engine.pack.stories if s.id == state.story_id)
        assert story.ages == ("9-12",), (asked, story.id)


def test_the_band_has_20_stories_and_20_harder_riddles() -> None:
    pack = engine_for("rules").pack
    assert len(pack.stories) >= 20
    assert sum(s.ages == ("9-12",) for s in pack.stories) >= 16
    assert len(pack.riddles) >= 20
    assert "The Dragon with Hiccups" not in {s.title for s in pack.stories}
    assert all(len(p.split()) <= MAX_WORDS for s in pack.stories for p in s.parts)


def test_extras_refuse_a_pack_without_their_phrases(tmp_path: Path) -> None:
    data = json.loads((CONTENT_DIR / KNOWLEDGE_FILE).read_text())
    del data["phrases"]["unknown"]
    (tmp_path / KNOWLEDGE_FILE).write_text(json.dumps(data))
    engine = engine_for("rules")
    with pytest.raises(ContentError, match="needs 'phrases'"):
        Extras(engine.pack, tmp_path)


def test_the_quiz_asks_five_questions_scores_right_answers_and_ends() -> None:
    engine = engine_for("rules")
    state = engine.new_state(seed=7)

    def turn(text: str) -> str:
        return engine.reply(text, Verdict(Action.ALLOW, (), text), state)

    first = turn("quiz me")
    assert first.startswith("Quiz time!") and state.skill == "quiz"
    questions = engine.extras.quiz.questions
    asked = [questions[state.item]]
    for number in range(5):
        question = questions[state.item]
        reply = turn(question.accept[0] if number % 2 == 0 else "a banana")
        assert reply.startswith("Yes, right!" if number % 2 == 0 else "Not quite.")
        assert question.answer in reply
        if number < 4:
            assert turn("yes") == questions[state.item].question
            asked.append(questions[state.item])
    assert turn("yes") == "You got 3 out of 5. Great quizzing!"
    assert state.skill is None and len(set(asked)) == 5


def test_no_ends_the_quiz_and_another_request_leaves_it() -> None:
    engine = engine_for("rules")
    state = engine.new_state(seed=8)
    engine.reply("can we do a quiz", Verdict(Action.ALLOW, (), "quiz"), state)
    question = engine.extras.quiz.questions[state.item]
    engine.reply(question.accept[0], Verdict(Action.ALLOW, (), "x"), state)
    assert engine.reply("no thanks", Verdict(Action.ALLOW, (), "no thanks"), state) == (
        "Okay, quiz over. You got 1 out of 1.")
    engine.reply("quiz me", Verdict(Action.ALLOW, (), "quiz me"), state)
    joke = engine.reply("tell me a joke", Verdict(Action.ALLOW, (), "tell me a joke"), state)
    assert state.skill is None and "Quiz" not in joke and "Not quite" not in joke


def test_younger_bands_get_no_quiz_from_the_knowledge_pack() -> None:
    engine = DialogueEngine("6-8")
    assert not engine.extras.quiz.questions
    assert not say(engine, "quiz me").startswith("Quiz time!")
