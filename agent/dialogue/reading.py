"""Reading a line in the light of the conversation: run-ons, "it", questions inside games,
and how sure the bear must be before it acts on a guess.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from agent.dialogue import clauses
from agent.dialogue.content import Answer, ContentPack
from agent.dialogue.numbers import parse_number
from agent.dialogue.state import DialogueState
from agent.dialogue.understand import ACCEPT, QUESTION, Understander, Understanding, answer_by_keys

_ACTS = ("riddle", "joke", "story", "song", "bedtime", "game_animals", "game_counting",
         "game_wyr", "game")
SURE_WEAK = frozenset({"answer", "news", "acknowledge", "feelings_talk", "greeting", "thanks",
                       "yes", "no", "give_up", "apology", "how_are_you", "listening"})
"""Intents a weak meaning match may still decide (a wrong one does little harm)."""
HEAVY = frozenset({*_ACTS, "stop", "bye", "grief", "hurt", "ill", "unkind"})
"""Intents whose reply changes the talk: by meaning alone they need :data:`SURE_HEAVY`."""
SURE_HEAVY = 0.70
"""Cosine at which meaning alone may start a story, a game, or answer as to a death."""
STATEMENT_SKIP = frozenset({*_ACTS, "stop", "bye", "grief", "hurt", "ill", "affection",
                            "unkind", "repeat", "more", "child_name", "fact", "thanks",
                            "greeting"})
"""Keyword intents that make a line more than a remark about someone ("he ...")."""
HE_SHE = re.compile(r"^(?:he|she|hes|shes|he's|she's|they|theyre|they're)\b")
"""A line that starts by talking about someone."""
_ASKING = re.compile(r"\b(?:tell|sing|say|want|wants|can|could|lets|let's|play|another|give"
                     r"|read|do|again)\b")
_PRONOUN = re.compile(r"\b(?:it|its|it's|they|them|theyre|they're)\b|^(?:what|whats|what's|"
                      r"what is) (?:that|this)$")
_GUESS = ("is it", "its", "it's", "it is", "a ", "an ", "maybe", "i think")


def remark(text: str, keywords: Iterable[str]) -> bool:
    """A statement about someone ("she was funny"), asking for nothing: a word like "funny"
    or "song" in it is not a request (words of death, hurt or goodbye still count)."""
    return bool(HE_SHE.match(text)) and set(keywords) & STATEMENT_SKIP <= set(_ACTS) and \
        not _ASKING.search(text) and not asks(text)


def follows_topic(text: str, state: DialogueState) -> bool:
    """Whether ``text`` asks about the last thing answered by pronoun ("why does it")."""
    return state.memory.topic is not None and bool(_PRONOUN.search(text))


def asks(text: str) -> bool:
    """Whether ``text`` is a question (by its first words: the recogniser gives no "?")."""
    return bool(QUESTION.search(text))


def unsure(heard: Understanding) -> bool:
    """A weak meaning match for an intent that would do something the child didn't ask, or a
    heavy one (grief, a story, stop) that no word of the child's line supports."""
    if heard.source != "semantic":
        return False
    if heard.intent in HEAVY and heard.intent not in heard.keywords:
        return heard.score < SURE_HEAVY
    return heard.score < ACCEPT and heard.intent not in SURE_WEAK and \
        not heard.intent.startswith("feel_")


def last_request(understander: Understander, text: str, state: DialogueState) -> str:
    """The last clause of a run-on that asks for something; a "stop" or "no" before it ends
    the game in progress (without making the bear quiet)."""
    parts = [c for c in clauses.split(text) if not clauses.is_filler(c)]
    if len(parts) < 2:
        return parts[0] if parts else text
    intents = [understander.understand(part).intent for part in parts]
    last = max((i for i, intent in enumerate(intents) if intent != "fallback"),
               default=len(parts) - 1)
    if any(intent in ("stop", "no") for intent in intents[:last]):
        state.end_skill()
        state.offer = None
    return parts[last]


def in_context(understander: Understander, answers: Iterable[Answer], text: str,
               state: DialogueState) -> Understanding:
    """What ``text`` means; "why does it explode" after volcanoes is about volcanoes."""
    answers = tuple(answers)
    topic = state.memory.topic
    if topic is None or not _PRONOUN.search(text) or not asks(text) or \
            answer_by_keys(answers, text) is not None:
        return understander.understand(text)
    about = _PRONOUN.sub(topic, text, count=1)
    answer = answer_by_keys(answers, about)
    heard = understander.understand(about)
    if answer is not None and (heard.intent in ("out_of_scope", "fallback")
                               or heard.source == "rules"):
        return Understanding("answer", "keys", answer=answer, keywords=heard.keywords,
                             text=about)
    return heard


def side_question(pack: ContentPack, text: str, heard: Understanding,
                  state: DialogueState) -> bool:
    """A question asked in the middle of a game, not an answer to it."""
    if not asks(text) or text.startswith(_GUESS) or heard.intent in ("yes", "no", "more"):
        return False
    if state.skill == "counting":
        return parse_number(text, allow_homophones=True) is None
    if state.skill == "riddle":
        return not set(text.split()) & set(pack.riddles[state.item].accept)
    if state.skill == "animal_sounds":
        return not set(text.split()) & set(pack.animal_sounds[state.item].accept)
    return True
