"""Issue 13's examples, each as a test: the bear understands what a child means.

Every example runs twice: with the sentence model (how the bear ships) and on rules alone
(how it runs when the model files are absent). Turns go the pipeline's way: input check,
reply on the redacted text, output check.
"""

from __future__ import annotations

import pytest
from support.embedder import require_embedder

from agent.dialogue import DialogueEngine
from agent.dialogue.evaluate import fallback_replies
from agent.safety import SafetyFilter

MODES = ["model", "rules"]


def engine_for(mode: str, band: str = "6-8") -> DialogueEngine:
    """An engine with the model (``model``) or without it (``rules``)."""
    return DialogueEngine(band, embedder=require_embedder() if mode == "model" else None)


class Chat:
    """One child talking to one bear."""

    def __init__(self, mode: str, safety: SafetyFilter, band: str = "6-8", seed: int = 3):
        self.engine = engine_for(mode, band)
        self.safety = safety
        self.state = self.engine.new_state(seed=seed)
        self.canned = fallback_replies(self.engine)

    def say(self, text: str) -> str:
        verdict = self.safety.check_input(text)
        reply = self.engine.reply(verdict.redacted, verdict, self.state)
        assert self.safety.check_output(reply).allowed, reply
        return reply

    def heard(self, text: str) -> str:
        return self.engine.understander.understand(text).intent


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("text", "words"), [
    ("what's your favorite color", ["yellow"]),
    ("are you real", ["toy"]),
    ("do you sleep", ["rest"]),
    ("how old are you", ["teddy"]),
    ("what's your favourite food", ["honey"]),
    ("do you have friends", ["friend"]),
])
def test_the_child_can_ask_about_the_bear(mode: str, text: str, words: list[str],
                                          safety: SafetyFilter) -> None:
    chat = Chat(mode, safety)
    reply = chat.say(text)
    assert reply not in chat.canned
    assert any(w in reply.lower() for w in words), reply


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text", ["i love you", "can you give me a hug"])
def test_affection_gets_a_warm_answer(mode: str, text: str, safety: SafetyFilter) -> None:
    chat = Chat(mode, safety)
    reply = chat.say(text)
    assert "hug" in reply.lower() and reply not in chat.canned, reply


@pytest.mark.parametrize("mode", MODES)
def test_a_childs_news_gets_a_warm_reply(mode: str, safety: SafetyFilter) -> None:
    chat = Chat(mode, safety)
    reply = chat.say("i got a new puppy today")
    assert chat.heard("i got a new puppy today") == "news"
    assert reply not in chat.canned
    # the child goes on about it: the bear keeps listening rather than "I didn't get that"
    assert chat.say("his name is biscuit and he is fluffy") not in chat.canned


@pytest.mark.parametrize("mode", MODES)
def test_why_is_the_sky_blue_is_answered(mode: str, safety: SafetyFilter) -> None:
    reply = Chat(mode, safety).say("why is the sky blue")
    assert "scatter" in reply and "blue" in reply, reply


@pytest.mark.parametrize("mode", MODES)
def test_tell_me_about_dinosaurs_is_about_dinosaurs(mode: str, safety: SafetyFilter) -> None:
    chat = Chat(mode, safety)
    reply = chat.say("can you tell me about dinosaurs")
    assert "dinosaur" in reply.lower() and "kangaroo" not in reply.lower(), reply
    more = chat.say("tell me more")
    assert any(w in more.lower() for w in ("dinosaur", "rex", "fossil", "feather")), more


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text", ["what's the capital of peru", "who is the president"])
def test_out_of_scope_questions_get_an_honest_answer(mode: str, text: str,
                                                     safety: SafetyFilter) -> None:
    chat = Chat(mode, safety)
    reply = chat.say(text)
    assert "don't know" in reply and reply not in chat.canned, reply


@pytest.mark.parametrize("mode", MODES)
def test_my_dog_died_gets_comfort_not_a_fact(mode: str, safety: SafetyFilter) -> None:
    reply = Chat(mode, safety).say("my dog died")
    assert "sorry" in reply.lower() and "owl" not in reply.lower(), reply


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text", ["my grandma is sick", "i fell off my bike and im bleeding"])
def test_illness_and_injury_get_a_grown_up_now(mode: str, text: str,
                                               safety: SafetyFilter) -> None:
    chat = Chat(mode, safety)
    reply = chat.say(text)
    assert "grown-up" in reply and reply not in chat.canned, reply


@pytest.mark.parametrize("mode", MODES)
def test_yes_takes_up_the_bears_own_offer(mode: str, safety: SafetyFilter) -> None:
    chat = Chat(mode, safety, band="3-5")
    offer = "Shall I tell you a story about a little rabbit?"
    chat.state.last_reply = offer
    chat.state.offer, chat.state.story_hint = "story", "rabbit"
    reply = chat.say("yes")
    assert chat.state.skill == "story" and "rabbit" in reply.lower(), reply
    # and from the bear's real fallback line, with no state set by hand
    chat = Chat(mode, safety, band="3-5")
    for seed in range(40):
        chat.state = chat.engine.new_state(seed=seed)
        if chat.say("blorp flibber") == offer:
            break
    else:
        pytest.fail("the rabbit-story offer never came up")
    assert "rabbit" in chat.say("yes").lower()


@pytest.mark.parametrize("mode", MODES)
def test_i_dont_want_a_song_is_not_a_song(mode: str, safety: SafetyFilter) -> None:
    chat = Chat(mode, safety)
    reply = chat.say("i dont want a song")
    songs = {s.text for s in chat.engine.pack.songs}
    assert not any(text in reply for text in songs), reply
    assert chat.heard("i dont want a song") == "no"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text", ["dont stop playing", "i want to keep playing", "keep playing"])
def test_keep_playing_continues_the_game(mode: str, text: str, safety: SafetyFilter) -> None:
    chat = Chat(mode, safety)
    chat.say("let's play animal sounds")
    assert chat.state.skill == "animal_sounds"
    reply = chat.say(text)
    assert chat.state.skill == "animal_sounds", reply
    assert "Which animal" in reply


@pytest.mark.parametrize("mode", MODES)
def test_again_repeats_the_same_joke(mode: str, safety: SafetyFilter) -> None:
    chat = Chat(mode, safety, band="3-5")
    joke = chat.say("tell me a joke")
    assert chat.say("again") == joke
    assert chat.say("again") == joke
    assert chat.say("another joke") != joke


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text", ["tell me a tory", "stowy", "tell me a stowy please"])
def test_recognizer_near_misses_still_match(mode: str, text: str, safety: SafetyFilter) -> None:
    chat = Chat(mode, safety)
    chat.say(text)
    assert chat.state.skill == "story"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text", ["shut up", "go away", "quiet teddy"])
def test_rude_stops_are_stops(mode: str, text: str, safety: SafetyFilter) -> None:
    chat = Chat(mode, safety)
    chat.say("tell me a story")
    reply = chat.say(text)
    assert chat.state.skill is None and "quiet" in reply.lower(), reply


@pytest.mark.parametrize("mode", MODES)
def test_the_nine_to_twelve_band_gets_no_preschool_games(mode: str,
                                                         safety: SafetyFilter) -> None:
    chat = Chat(mode, safety, band="9-12")
    for text in ("lets play animal sounds", "what can you do", "lets play a game"):
        reply = chat.say(text).lower()
        assert "moo" not in reply and "animal sounds" not in reply, reply
    said = " ".join(chat.engine.all_replies()).lower()
    for baby in ("says moo", "says woof", "I fall from the clouds and make puddles"):
        assert baby.lower() not in said


@pytest.mark.parametrize("mode", MODES)
def test_jokes_stories_and_songs_do_not_repeat_too_soon(mode: str,
                                                        safety: SafetyFilter) -> None:
    chat = Chat(mode, safety)
    pack = chat.engine.pack
    for ask, items in (("tell me a joke", [j.answer for j in pack.jokes]),
                       ("sing me a song", [s.text for s in pack.songs])):
        said = [chat.say(ask) for _ in items]
        given = [next(i for i, item in enumerate(items) if item in reply) for reply in said]
        assert sorted(given) == list(range(len(items))), ask


def test_the_rules_only_bear_says_it_understands_less(safety: SafetyFilter) -> None:
    """Without the model the engine still runs, and says so."""
    assert not engine_for("rules").understander.semantic
    assert engine_for("model").understander.semantic
