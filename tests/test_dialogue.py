"""The dialogue engine and its content pack: skills, state, age bands, and every reply safe."""

from __future__ import annotations

import json
import random

import pytest

from agent.dialogue import AGE_BANDS, MAX_WORDS, ContentError, DialogueEngine, load_pack
from agent.dialogue.content import CONTENT_DIR
from agent.dialogue.engine import SAMPLE_NAME
from agent.safety import Action, SafetyFilter


def talk(engine: DialogueEngine, safety: SafetyFilter, state, text: str) -> str:
    """One turn the way the pipeline does it (input check, reply, output check); the `name`
    consent that lets the engine remember the name also keeps it in the checked text."""
    verdict = safety.check_input(text, keep_name=engine.remember_name)
    reply = engine.reply(verdict.redacted, verdict, state)
    assert safety.check_output(reply).allowed, reply
    return reply


@pytest.mark.parametrize("band", AGE_BANDS)
def test_every_reply_passes_the_output_check(band: str, safety: SafetyFilter) -> None:
    engine = DialogueEngine(band, remember_name=True)
    replies = set(engine.all_replies())
    assert len(replies) > 500
    blocked = {}
    for reply in replies:
        verdict = safety.check_output(reply)
        if verdict.action is not Action.ALLOW:
            blocked[reply] = verdict.categories
    assert not blocked


@pytest.mark.parametrize("band", AGE_BANDS)
def test_every_reply_is_short_enough_to_say_in_ten_seconds(band: str) -> None:
    too_long = [r for r in DialogueEngine(band).all_replies() if len(r.split()) > MAX_WORDS]
    assert not too_long
    assert MAX_WORDS / (175 / 60) < 10  # espeak-ng speaks 175 words a minute


def test_the_content_pack_has_what_the_issue_asks_for() -> None:
    stories = json.loads((CONTENT_DIR / "stories.json").read_text())["stories"]
    jokes = json.loads((CONTENT_DIR / "jokes.json").read_text())
    songs = json.loads((CONTENT_DIR / "songs.json").read_text())["songs"]
    facts = json.loads((CONTENT_DIR / "facts.json").read_text())["facts"]
    games = json.loads((CONTENT_DIR / "games.json").read_text())
    assert len(stories) >= 12 and all(len(s["parts"]) >= 3 for s in stories)
    assert len(jokes["jokes"]) + len(jokes["riddles"]) >= 40
    assert len(songs) >= 10
    assert len(facts) >= 60
    assert {f["topic"] for f in facts} == {"animals", "space", "nature"}
    assert len(games["animal_sounds"]) >= 10 and len(games["would_you_rather"]) >= 10


@pytest.mark.parametrize("band", AGE_BANDS)
def test_replies_come_only_from_the_pack(band: str, safety: SafetyFilter) -> None:
    """A random walk over every skill says nothing that all_replies does not list."""
    engine = DialogueEngine(band, remember_name=True)
    known = set(engine.all_replies())
    words = ["hello", f"my name is {SAMPLE_NAME.lower()}", "tell me a story", "tell me more",
             "more", "yes", "no", "a joke", "a riddle", "i give up", "a clock", "sing a song",
             "tell me about space", "animal facts", "nature", "lets play animal sounds",
             "cow", "pig", "dog", "lets count", "two", "three", "four", "six", "would you rather",
             "fly", "bedtime", "ok", "what can you do", "whats your name", "how are you",
             "i'm happy", "i'm angry", "i'm bored", "stop", "say that again", "thank you",
             "bye", "blah", "shit", "where are the knives", "i want to die", "hi"]
    rng = random.Random(4)
    state = engine.new_state(seed=4)
    for _ in range(600):
        reply = talk(engine, safety, state, rng.choice(words))
        assert reply in known, reply


def test_a_story_continues_with_tell_me_more(safety: SafetyFilter) -> None:
    engine = DialogueEngine("6-8")
    state = engine.new_state(seed=1)
    first = talk(engine, safety, state, "tell me a story")
    story = next(s for s in engine.pack.stories if s.id == state.story_id)
    assert story.parts[0] in first and story.title in first
    for part in story.parts[1:]:
        assert part in talk(engine, safety, state, "tell me more")
    assert state.skill is None
    assert "The end!" in state.last_reply


def test_say_that_again_repeats_the_last_reply(safety: SafetyFilter) -> None:
    engine = DialogueEngine()
    state = engine.new_state(seed=2)
    joke = talk(engine, safety, state, "tell me a joke")
    assert talk(engine, safety, state, "say that again") == joke


def test_stop_ends_the_game_in_progress(safety: SafetyFilter) -> None:
    engine = DialogueEngine()
    state = engine.new_state(seed=3)
    talk(engine, safety, state, "let's play animal sounds")
    assert state.skill == "animal_sounds"
    assert engine.is_stop("stop")
    reply = talk(engine, safety, state, "be quiet")
    assert state.skill is None and "quiet" in reply.lower()


def test_the_animal_quiz_keeps_score(safety: SafetyFilter) -> None:
    engine = DialogueEngine()
    state = engine.new_state(seed=5)
    talk(engine, safety, state, "animal sounds game")
    for turn in range(engine.pack.rounds):
        asked = engine.pack.animal_sounds[state.item]
        answer = asked.accept[0] if turn % 2 == 0 else "a teapot"
        reply = talk(engine, safety, state, answer)
    right = (engine.pack.rounds + 1) // 2
    assert f"You got {['zero', 'one', 'two', 'three', 'four', 'five'][right]} out of" in reply
    assert state.skill is None


def test_counting_follows_the_child(safety: SafetyFilter) -> None:
    engine = DialogueEngine("3-5")
    state = engine.new_state(seed=6)
    assert "one" in talk(engine, safety, state, "let's count")
    assert talk(engine, safety, state, "two").split()[1] == "Three."
    assert "Nearly" in talk(engine, safety, state, "nine")
    assert state.skill == "counting"
    for said in ("six", "eight"):
        reply = talk(engine, safety, state, said)
    assert "Nine" in reply
    assert "ten" in talk(engine, safety, state, "ten")
    assert state.skill is None


def test_riddles_check_the_guess(safety: SafetyFilter) -> None:
    engine = DialogueEngine()
    state = engine.new_state(seed=7)
    talk(engine, safety, state, "give me a riddle")
    riddle = engine.pack.riddles[state.item]
    assert riddle.answer in talk(engine, safety, state, f"is it a {riddle.accept[0]}")
    talk(engine, safety, state, "another riddle")
    riddle = engine.pack.riddles[state.item]
    reply = talk(engine, safety, state, "i give up")
    assert reply.startswith("Good try") and riddle.answer in reply


@pytest.mark.parametrize("allowed", [True, False])
def test_the_first_name_is_kept_only_when_allowed(allowed: bool, safety: SafetyFilter) -> None:
    engine = DialogueEngine(remember_name=allowed)
    state = engine.new_state(seed=8)
    talk(engine, safety, state, "my name is Emma Johnson")
    greeting = talk(engine, safety, state, "hello")
    assert ("Emma" in greeting) is allowed
    assert state.child_name == ("Emma" if allowed else None)
    assert "Johnson" not in greeting


@pytest.mark.parametrize(("text", "words"), [
    ("my uncle touches my privates and said it's our secret", ["touch", "uncle", "secret"]),
    ("i want to kill myself", ["kill"]),
    ("where are the knives", ["knife", "knives"]),
    ("you stupid bitch", ["bitch"]),
])
def test_blocked_and_escalated_words_are_never_repeated(text: str, words: list[str],
                                                        safety: SafetyFilter) -> None:
    engine = DialogueEngine()
    verdict = safety.check_input(text)
    reply = engine.reply(verdict.redacted, verdict, engine.new_state())
    assert verdict.action in (Action.BLOCK, Action.ESCALATE)
    assert not any(w in reply.lower() for w in words), reply
    if verdict.action is Action.ESCALATE:
        assert "grown-up" in reply


def test_age_band_changes_content_and_wording() -> None:
    little, big = DialogueEngine("3-5"), DialogueEngine("9-12")
    little_stories = {s.id for s in little.pack.stories}
    big_stories = {s.id for s in big.pack.stories}
    assert little_stories != big_stories
    assert little.pack.counting_target < big.pack.counting_target
    assert set(little.all_replies()) != set(big.all_replies())
    assert little.pack.phrase_variants("fallback") != big.pack.phrase_variants("fallback")


def test_an_unknown_age_band_is_refused() -> None:
    with pytest.raises(ContentError, match="13-18") as caught:
        load_pack("13-18")
    assert isinstance(caught.value, ValueError)
