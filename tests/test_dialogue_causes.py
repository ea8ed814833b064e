"""One test per general cause of a confident misfire (issue 20, r3-talk).

Every line here is new: none is copied from the judged sets (tests/data/judged_conversations/),
so these check the cause, not the lines it was found on. The dialogue runs on rules alone
(the sentence model is measured by ``scripts/bench-dialogue``); verdicts are built by hand so
a test can say what the filter decided.
"""

from __future__ import annotations

import pytest

from agent.dialogue import DialogueEngine, DialogueState
from agent.dialogue.knowledge import Knowledge, load_knowledge
from agent.dialogue.offers import makes_offer, offer_in
from agent.dialogue.unknowable import cannot_know
from agent.safety.verdict import Action, Verdict


class Talk:
    """A bear of one band and one conversation, every line allowed unless told otherwise."""

    def __init__(self, band: str = "6-8", seed: int = 11) -> None:
        self.engine = DialogueEngine(band)
        self.state: DialogueState = self.engine.new_state(seed=seed)

    def say(self, text: str, action: Action = Action.ALLOW, *categories: str) -> str:
        return self.engine.reply(text, Verdict(action, tuple(categories), text), self.state)

    @property
    def acts(self) -> list[str]:
        return list(self.state.acts)


# Questions nobody can know -----------------------------------------------------------------
@pytest.mark.parametrize("line", [
    "what will santa bring me", "who is going to win the match on saturday",
    "how many freckles are on my face", "how far is it to my aunties house",
    "will it be sunny on my birthday", "who will win the next race"])
def test_the_future_and_the_childs_own_uncounted_things_are_declined(line: str) -> None:
    assert cannot_know(line)
    talk = Talk("9-12")
    talk.say(line)
    assert talk.acts == ["out_of_scope"], line


@pytest.mark.parametrize("line", [
    "what will happen if the sun explodes", "how many bones are in my body",
    "how old are you", "what is the capital of peru", "whats my name",
    "what are we going to do today", "what will happen next", "what happens next",
    "whats the next part"])
def test_questions_someone_can_answer_are_not_declined_as_unknowable(line: str) -> None:
    assert not cannot_know(line)


def test_a_fact_that_only_names_the_subject_is_not_an_answer() -> None:
    knowledge = Knowledge(load_knowledge("9-12"))
    assert knowledge.find("do sharks get lonely") is None
    assert knowledge.find("what are sharks skeletons made of").id == "shark_bones"
    talk = Talk("9-12")
    reply = talk.say("do sharks get lonely")
    assert "cartilage" not in reply and not any(a.startswith("knowledge") for a in talk.acts)


# Offers, "ok", remarks and questions about the bear --------------------------------------------
def test_an_offer_made_without_a_question_is_taken_up_by_yes() -> None:
    assert makes_offer("I'm here if you want a song or a riddle.")
    assert offer_in("I'm here if you want a song or a riddle.")[0] == "song"
    assert not makes_offer("That's okay! Just say what you'd like to do.")
    for seed in range(20):  # the "no thanks" reply that states its offer
        talk = Talk(seed=seed)
        if "if you want" in talk.say("nah"):
            talk.say("yeah")
            assert "story" in talk.acts
            return
    pytest.fail("no seed gave the 'if you want' reply")


@pytest.mark.parametrize("line", ["ok whatever", "okay fine"])
def test_a_shrug_with_nothing_offered_is_not_cheered(line: str) -> None:
    talk = Talk()
    talk.say(line)
    assert "yes_nothing" not in talk.acts


def test_a_glad_yes_with_nothing_offered_gets_the_menu() -> None:
    talk = Talk()
    talk.say("yes please")
    assert talk.acts == ["yes_nothing"]


@pytest.mark.parametrize(("line", "act"), [
    ("ur so fluffy", "affection"), ("you are the coolest bear", "affection"),
    ("you're really annoying", "unkind"), ("teddy youre so lame", "unkind")])
def test_a_remark_about_the_bear_is_not_a_request(line: str, act: str) -> None:
    talk = Talk()
    talk.say(line)
    assert talk.acts == [act]


def test_a_remark_inside_a_game_is_not_scored_and_the_game_goes_on() -> None:
    talk = Talk()
    talk.say("lets play would you rather")
    talk.say("you are so boring")
    assert talk.acts == ["unkind"]
    assert talk.state.skill == "would_you_rather"


@pytest.mark.parametrize(("line", "part"), [
    ("how do you know so much", "real"), ("are you actually alive", "real"),
    ("why do you love stories", "why_like"), ("can you stay next to me", "stay")])
def test_questions_about_the_bear_are_answered_about_the_bear(line: str, part: str) -> None:
    talk = Talk()
    talk.say(line)
    assert talk.acts == [f"persona.{part}"]


def test_feeling_better_is_heard() -> None:
    talk = Talk()
    talk.say("i feel loads better now")
    assert talk.acts == ["feelings.better"]


# Escalations whose whole line plainly means less ------------------------------------------------
def test_a_question_about_keeping_the_talk_is_answered_even_when_escalated() -> None:
    talk = Talk()
    talk.say("who can read our chats", Action.ESCALATE, "secrets")
    assert talk.acts == ["honesty.who_sees.none"]
    talk.say("is my dad going to hear this", Action.ESCALATE, "distress")
    assert talk.acts == ["honesty.who_sees.none"]
    talk.say("who can read our chats", Action.ESCALATE, "abuse")  # never softened
    assert talk.acts == ["escalate.abuse"]


@pytest.mark.parametrize(("line", "category"), [
    ("can mum see this he said its our secret", "secrets"),
    ("who can see what we do when we are alone", "secrets"),
    ("is my dad going to see this i am scared", "distress"),
    ("i miss her she hurt me", "distress")])
def test_a_line_that_could_be_a_disclosure_keeps_the_escalation_script(
        line: str, category: str) -> None:
    talk = Talk()
    talk.say("my sister is at school")
    talk.say(line, Action.ESCALATE, category)
    assert talk.acts == [f"escalate.{category}"]


def test_saying_you_will_tell_a_grown_up_is_praised_not_warned() -> None:
    talk = Talk()
    talk.say("im going to tell my dad", Action.ESCALATE, "secrets")
    assert talk.acts == ["praise"]


def test_worry_that_someone_else_will_die_is_not_the_self_harm_script() -> None:
    talk = Talk()
    talk.say("i think my nana is going to die", Action.ESCALATE, "self_harm")
    assert talk.acts == ["escalate.distress"]
    talk.say("i want to die", Action.ESCALATE, "self_harm")
    assert talk.acts == ["escalate.self_harm"]


def test_missing_someone_just_talked_about_is_listened_to() -> None:
    talk = Talk()
    talk.say("my grandad went to live in australia")
    reply = talk.say("i really miss him", Action.ESCALATE, "distress")
    assert talk.acts == ["talk.missed"] and "grandad" in reply


# Secrets, menus, pets and remarks about someone ------------------------------------------------
def test_a_question_after_can_you_keep_a_secret_is_not_the_secret() -> None:
    talk = Talk()
    talk.say("teddy can you keep my secret")
    talk.say("when is the party")
    assert "secret.good" not in talk.acts


def test_a_game_named_after_the_menu_starts_it() -> None:
    talk = Talk()
    talk.say("can we play a game")
    assert talk.acts == ["game_menu"]
    talk.say("counting")
    assert "game:counting" in talk.acts


def test_telling_about_a_new_pet_is_news_not_a_fact() -> None:
    talk = Talk("3-5")
    talk.say("my auntie has three cats")
    assert talk.acts == ["news"]


def test_a_funny_word_about_someone_is_not_a_joke_request() -> None:
    talk = Talk()
    talk.say("my cousin came to stay")
    talk.say("he is so funny")
    assert "joke" not in talk.acts
    talk.say("he wants a joke")
    assert "joke" in talk.acts


@pytest.mark.parametrize("line", [
    "she told me i cant play with them", "he laughed at me in front of everyone",
    "they left me out at lunch", "she wont let me sit at her table"])
def test_being_treated_unkindly_by_someone_is_heard(line: str) -> None:
    talk = Talk()
    talk.say("my friend jo was there")
    talk.say(line)
    assert talk.acts == ["feelings.treated_unkindly"]
