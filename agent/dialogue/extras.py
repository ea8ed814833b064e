"""Skills for an older child, joined to the engine by one hook: spoken sums, the knowledge
pack, and stories chosen by subject.

:meth:`Extras.sums` runs before any game (a sum is never a guess); :meth:`Extras.reply`
runs where intents are answered, before the engine's own skills and fallback. Each returns
None when it has nothing to say, so the engine carries on as before.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.dialogue import arithmetic, quiz, stories
from agent.dialogue.content import AGE_BANDS, CONTENT_DIR, ContentPack, _read_optional
from agent.dialogue.errors import ContentError
from agent.dialogue.knowledge import (
    KNOWLEDGE_FILE,
    Knowledge,
    KnownFact,
    asks_for_knowledge,
    is_question,
    load_knowledge,
    words_of,
)
from agent.dialogue.semantic import Encoder
from agent.dialogue.state import DialogueState
from agent.dialogue.understand import Understanding

logger = logging.getLogger(__name__)

KIND = "knowledge"
"""``state.last_kind`` after a fact from the knowledge pack ("more" stays on its topic)."""
SURE_INTENT = 0.80
"""Cosine above which the engine's own meaning-matched answer stands."""
_PERSONAL = frozenset({"you", "your", "youre", "yours", "my", "mine", "me", "i", "im"})
_WH = re.compile(r"(?:(?:hey|ok|so|teddy|um|and) )*(?:why|what|whats|who|whos|when|where|which"
                 r"|how)\b")
_SWITCH = frozenset({"story", "joke", "riddle", "song", "bedtime", "game", "game_animals",
                     "game_counting", "game_wyr", "grief", "hurt", "ill", "bye"})
_KEEP = frozenset({"stop", "child_name", "grief", "hurt", "ill", "repeat", "affection",
                   "unkind", "bye", "thanks", "greeting", "no", "yes"})


@dataclass(frozen=True)
class Extra:
    """A reply from one of these skills."""

    text: str
    """What the bear says (for a story: empty, the engine tells the chosen story's part)."""
    story: bool = False
    """Whether ``state`` now holds a story to start telling."""


class Extras:
    """Sums, facts and stories by subject for one content pack."""

    def __init__(self, pack: ContentPack, content_dir: Path | None = None,
                 embedder: Encoder | None = None, cache_dir: Path | None = None) -> None:
        directory = content_dir or CONTENT_DIR
        self.pack = pack
        """The engine's content pack (its stories)."""
        self.knowledge = Knowledge(load_knowledge(pack.age_band, directory), embedder, cache_dir)
        """The knowledge pack for the band."""
        self.phrases = _phrases(directory)
        """What the bear says around facts, the quiz and story offers."""
        questions = quiz.load(_read_optional(directory, KNOWLEDGE_FILE))
        self.quiz = quiz.Quiz(questions if self.knowledge.facts else (), self.phrases)
        """The harder quiz (for the bands the knowledge pack is for)."""
        self._embedder = embedder

    # Hooks -----------------------------------------------------------------------------
    def sums(self, text: str, state: DialogueState) -> str | None:
        """The answer to a spoken sum or times table, else None."""
        reply = arithmetic.answer(text)
        if reply is not None:
            state.last_item = reply
        return reply

    def reply(self, text: str, heard: Understanding, state: DialogueState) -> Extra | None:
        """A story by subject, a fact, or an honest "I don't know" for a knowledge question;
        None when the engine's own answer (``heard``: what it understood) should stand."""
        intent = heard.intent
        if state.skill == quiz.SKILL:
            return self._in_quiz(text, heard, state)
        if (self.quiz.questions and quiz.wants_quiz(text)
                and intent not in ("no", "stop", "game_animals")):
            return Extra(self.quiz.start(state))
        if intent == "story":
            return self._story(text, state)
        if intent == "more" and state.last_kind == KIND:
            fact = self.knowledge.find(text)
            if fact is not None:
                return Extra(self._tell(fact, state))
            return None if _WH.search(" ".join(words_of(text))) else self._more(state)
        if intent in _KEEP or not self._may_answer(text, heard):
            return None
        fact = self.knowledge.find(text)
        if fact is not None:
            return Extra(self._tell(fact, state))
        if self._cannot_know(text, heard):
            return Extra(self._one(state, "unknown"))
        return None

    def _cannot_know(self, text: str, heard: Understanding) -> bool:
        """A plain wh-question on a knowledge subject that no fact answers and the engine
        would only have guessed at ("whats the capital of the moon")."""
        if not self.knowledge.facts or heard.intent not in ("out_of_scope", "fallback", "answer"):
            return False  # no knowledge pack for this band: the engine's own answer stands
        if heard.intent == "answer" and (heard.source == "exact" or heard.score >= SURE_INTENT):
            return False
        return asks_for_knowledge(text) and bool(_WH.match(" ".join(words_of(text))))

    def _in_quiz(self, text: str, heard: Understanding, state: DialogueState) -> Extra | None:
        """A quiz turn, or None (quiz left) when the child clearly asks for something else."""
        if heard.intent in _SWITCH and heard.source in ("rules", "exact"):
            state.end_skill()
            return None
        return Extra(self.quiz.turn(text, heard.intent == "no", state))

    def _may_answer(self, text: str, heard: Understanding) -> bool:
        """Whether a fact may replace what the engine understood (a question, or a fact
        asked for: "he built a massive castle" is news, not a question about castles)."""
        if heard.intent != "fact" and not is_question(text):
            return False
        if heard.intent in ("out_of_scope", "fallback", "fact"):
            return True
        if heard.intent == "answer" and heard.answer is not None:
            if heard.source in ("exact", "keys"):
                return heard.source == "keys"  # the engine's weakest guess gives way
            own = _key_size(heard.answer.keys, text)
            return self.knowledge.key_size(text) > own or heard.score < SURE_INTENT
        personal = any(w in _PERSONAL for w in words_of(text))
        return is_question(text) and not personal and (
            heard.source != "semantic" or heard.score < 0.7)

    # Facts -------------------------------------------------------------------------------
    def _tell(self, fact: KnownFact, state: DialogueState) -> str:
        state.end_skill()
        state.offer = None
        state.last_kind, state.fact_topic = KIND, fact.topic
        state.memory.topic = " ".join(fact.keys[0]) if fact.keys else None  # "why does it…"
        state.act(f"{KIND}:{fact.id}")
        state.used.setdefault(KIND, set()).add(self.knowledge.facts.index(fact))
        state.last_item = fact.text
        return fact.text

    def _more(self, state: DialogueState) -> Extra:
        used = state.used.setdefault(KIND, set())
        done = {self.knowledge.facts[i].id for i in used}
        fact = self.knowledge.on_topic(state.fact_topic or "", done)
        if fact is None:
            state.last_kind = None
            return Extra(self._one(state, "more_done"))
        return Extra(self._tell(fact, state))

    # Stories -------------------------------------------------------------------------------
    def _story(self, text: str, state: DialogueState) -> Extra | None:
        choice = stories.choose(self.pack.stories, text, self._embedder)
        if choice is None:
            return None
        if choice.stories:
            ids = [s.id for s in self.pack.stories]
            picks = [ids.index(s.id) for s in choice.stories]
            story = self.pack.stories[state.pick("story", len(ids), picks)]
            state.end_skill()
            state.last_kind, state.skill, state.story_id = "story", "story", story.id
            state.story_hint = None
            return Extra("", story=True)
        offer = choice.closest or self.pack.stories[0]
        state.end_skill()
        state.offer, state.story_hint = "story", offer.title.lower()
        return Extra(self._one(state, "story_none", title=offer.title))

    # Saying -------------------------------------------------------------------------------
    def _one(self, state: DialogueState, key: str, **fields: str) -> str:
        return state.rng.choice(self.phrases[key]).format(**fields)

    def every_reply(self) -> Iterator[str]:
        """Every text these skills can say (sums stand in by every times table and the
        fixed messages), for the output check."""
        yield from arithmetic.every_reply()
        for fact in self.knowledge.facts:
            yield fact.text
        for key in ("unknown", "more_done"):
            yield from self.phrases[key]
        for story in self.pack.stories:
            for variant in self.phrases["story_none"]:
                yield variant.format(title=story.title)
        yield from self.quiz.every_reply()


def _key_size(keys: tuple[tuple[str, ...], ...], text: str) -> int:
    """Words in the largest of an engine answer's key sets wholly present in ``text``."""
    words = words_of(text)
    present = [len(k) for k in keys if all(any(w.startswith(p) for w in words) for p in k)]
    return max(present, default=0)


def check_pack(directory: Path) -> None:
    """Raise :class:`ContentError` unless the knowledge pack in ``directory`` loads for every
    band (for the content-pack install gate)."""
    for band in AGE_BANDS:
        load_knowledge(band, directory)
    _phrases(directory)
    quiz.load(_read_optional(directory, KNOWLEDGE_FILE))


def _phrases(directory: Path) -> dict[str, tuple[str, ...]]:
    data = _read_optional(directory, KNOWLEDGE_FILE).get("phrases")
    needed = ("unknown", "more_done", "story_none", *quiz.PHRASES)
    if not isinstance(data, dict) or not all(
            isinstance(data.get(k), list) and data[k] and all(isinstance(v, str) for v in data[k])
            for k in needed):
        raise ContentError(f"{KNOWLEDGE_FILE} needs 'phrases' with non-empty lists "
                           f"{', '.join(needed)} — restore them from the built-in pack")
    return {k: tuple(data[k]) for k in needed}

