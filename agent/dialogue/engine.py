"""The dialogue engine: turns the child's (redacted) words into the bear's next reply.

Replies are built only from the content pack, by small composer functions. Each skill
has two faces: ``reply`` picks one text for this turn, and ``all_replies`` lists every
text the same composers can produce, so a test can put each through ``check_output``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from pathlib import Path

from agent.dialogue import games
from agent.dialogue.content import CONTENT_DIR, ContentPack, load_pack
from agent.dialogue.intents import IntentMatcher
from agent.dialogue.speech import MAX_WORDS, Speech, fit
from agent.dialogue.state import DialogueState
from agent.safety.verdict import Action, Verdict

logger = logging.getLogger(__name__)

ESCALATION_ORDER = ("medical_emergency", "self_harm", "abuse", "secrets", "bullying", "distress")
"""Which wellbeing answer wins when several categories fired, most urgent first."""
BLOCK_ORDER = ("sexual", "violence", "dangerous", "drugs_alcohol", "hate", "profanity")
"""Which steer-away answer wins when several categories fired."""
SWITCH_INTENTS = ("story", "joke", "riddle", "song", "game_animals", "game_counting",
                  "game_wyr", "game", "fact", "bedtime", "capabilities", "bear_name", "bye")
"""Intents that leave a game in progress."""
SAMPLE_NAME = "Sam"
"""First name used when listing every reply that can carry the child's name."""
_FEELINGS = ("scared", "sad", "nervous", "angry", "excited", "tired", "bored", "silly", "proud",
             "calm", "happy")
_FEELING_OFFERS = {"tired": "bedtime", "sad": "song", "happy": "song", "silly": "joke",
                   "bored": "would_you_rather"}
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz-")


class DialogueEngine:
    """Skills over a content pack, for one age band. Stateless itself; thread-safe."""

    def __init__(self, age_band: str = "6-8", remember_name: bool = False,
                 content_dir: Path | None = None) -> None:
        self.age_band = age_band
        """Age band of the child ("3-5", "6-8" or "9-12")."""
        self.remember_name = remember_name
        """Whether a parent allowed the bear to use the child's first name."""
        self.pack: ContentPack = load_pack(age_band, content_dir or CONTENT_DIR)
        """The content for this band (a fleet-installed pack when ``content_dir`` is given)."""
        self._intents = IntentMatcher(self.pack.intents)
        self._speech = Speech(self.pack)
        self._not_names = set(self.pack.intents["yes"]) | set(self.pack.intents["no"]) | {
            "teddy", "bear", "not", "and", "the", "a", "called", "is", "name"}

    def new_state(self, seed: int | None = None) -> DialogueState:
        """A fresh conversation state (``seed`` makes its choices reproducible)."""
        return DialogueState(rng=random.Random(seed))

    def is_stop(self, text: str) -> bool:
        """Whether the child asked the bear to stop or be quiet."""
        return "stop" in self._intents.find(text)

    def reply(self, text: str, verdict: Verdict, state: DialogueState) -> str:
        """The bear's answer to ``text`` (already redacted) given its input ``verdict``."""
        state.turns += 1
        answer = self._answer(text, verdict, state)
        state.last_reply = answer
        logger.debug("reply %d: %d words, skill %s", state.turns, len(answer.split()),
                     state.skill)
        return answer

    def _answer(self, text: str, verdict: Verdict, state: DialogueState) -> str:
        say = self._speech
        if verdict.action is Action.ESCALATE:
            state.end_skill()
            state.offer = None
            category = _first(ESCALATION_ORDER, verdict.categories, "distress")
            return say.one(state, "escalate", category)
        if verdict.action is Action.BLOCK:
            category = _first(BLOCK_ORDER, verdict.categories, "other")
            state.offer = "game" if category == "dangerous" else None
            return say.one(state, "block", category)
        intents = self._intents.find(text)
        if "stop" in intents:
            state.end_skill()
            state.offer = None
            return say.one(state, "stop")
        if "repeat" in intents:
            return state.last_reply or say.one(state, "repeat_nothing")
        if state.skill in games.GAMES and not intents.intersection(SWITCH_INTENTS):
            answer = games.answer(say, self.pack, state, text, intents)
            if answer is not None:
                return answer
        return self._skill(text, intents, state)

    def _skill(self, text: str, intents: set[str], state: DialogueState) -> str:
        say = self._speech
        if "child_name" in intents:
            return self._learn_name(text, state)
        for intent, start in (("game_animals", "animal_sounds"), ("game_counting", "counting"),
                              ("game_wyr", "would_you_rather")):
            if intent in intents:
                return games.start(say, self.pack, state, start)
        for kind in ("riddle", "joke", "story", "song", "bedtime"):
            if kind in intents:
                return self._give(kind, state)
        if "game" in intents:
            state.end_skill()
            state.offer = "animal_sounds"
            return say.one(state, "game_menu")
        topic = _topic(intents)
        if "fact" in intents or (topic and not intents & {"greeting", "feelings_talk"}):
            return self._fact(state, topic)
        if "more" in intents or ("yes" in intents and state.offer == "more"):
            return self._more(state)
        return self._social(intents, state)

    def _social(self, intents: set[str], state: DialogueState) -> str:
        say = self._speech
        if "yes" in intents and state.offer and "no" not in intents:
            offer, state.offer = state.offer, None
            if offer in games.GAMES:
                return games.start(say, self.pack, state, offer)
            return self._give(offer, state)
        state.offer = None
        for intent, key, path in (("capabilities", "capabilities", ()),
                                  ("bear_name", "bear_name", ()),
                                  ("how_are_you", "how_are_you", ())):
            if intent in intents:
                return say.one(state, key, *path)
        for feeling in _FEELINGS:
            if f"feel_{feeling}" in intents:
                state.offer = _FEELING_OFFERS.get(feeling)
                return say.one(state, "feelings", feeling)
        if "feelings_talk" in intents:
            return say.one(state, "feelings", "talk")
        for intent in ("greeting", "thanks", "bye"):
            if intent in intents:
                return say.one(state, intent, name=self._name_suffix(state))
        if "no" in intents:
            return say.one(state, "no_thanks")
        if "yes" in intents:
            return say.one(state, "yes_nothing")
        return say.one(state, "fallback")

    def _give(self, kind: str, state: DialogueState) -> str:
        """Start a skill or hand out one piece of content of ``kind``."""
        say = self._speech
        pack = self.pack
        state.end_skill()
        state.last_kind = kind
        if kind == "story":
            index = state.pick("story", len(pack.stories))
            state.skill, state.story_id, state.position = "story", pack.stories[index].id, 0
            return self._story_part(state)
        if kind == "bedtime":
            state.skill, state.position = "bedtime", 0
            return self._bedtime_step(state)
        if kind == "joke":
            joke = pack.jokes[state.pick("joke", len(pack.jokes))]
            return say.joke(state, joke)
        if kind == "riddle":
            state.skill = "riddle"
            state.item = state.pick("riddle", len(pack.riddles))
            return say.riddle_question(state, pack.riddles[state.item])
        if kind == "song":
            song = pack.songs[state.pick("song", len(pack.songs))]
            return say.song(state, song)
        if kind == "fact":
            return self._fact(state, state.fact_topic)
        return self._give("story", state)

    def _more(self, state: DialogueState) -> str:
        if state.skill == "story":
            return self._story_part(state)
        if state.skill == "bedtime":
            return self._bedtime_step(state)
        return self._give(state.last_kind or "story", state)

    def _story_part(self, state: DialogueState) -> str:
        story = next(s for s in self.pack.stories if s.id == state.story_id)
        index = state.position
        state.position += 1
        last = state.position >= len(story.parts)
        if last:
            state.end_skill()
            state.offer = None
        else:
            state.offer = "more"
        return self._speech.story_part(state, story, index)

    def _bedtime_step(self, state: DialogueState) -> str:
        steps = self._speech.variants("bedtime")
        step = steps[min(state.position, len(steps) - 1)]
        state.position += 1
        if state.position >= len(steps):
            state.end_skill()
        state.offer = "more" if state.skill == "bedtime" else None
        return step

    def _fact(self, state: DialogueState, topic: str | None) -> str:
        facts = self.pack.facts
        choices = [i for i, f in enumerate(facts) if topic is None or f.topic == topic]
        index = state.pick("fact", len(facts), choices or None)
        state.end_skill()
        state.last_kind, state.fact_topic = "fact", topic
        return self._speech.fact(state, facts[index])

    def _learn_name(self, text: str, state: DialogueState) -> str:
        words = self._intents.after("child_name", text).split()
        first = words[0] if words else ""
        if (self.remember_name and 2 <= len(first) <= 20 and set(first) <= _NAME_CHARS
                and first not in self._not_names):
            state.child_name = first.capitalize()
            return self._speech.one(state, "name_kept", first=state.child_name)
        return self._speech.one(state, "name_not_kept")

    def _name_suffix(self, state: DialogueState) -> str:
        return f", {state.child_name}" if self.remember_name and state.child_name else ""

    def all_replies(self) -> Iterator[str]:
        """Every reply this engine can produce (the child's name shown as ``Sam``)."""
        say = self._speech
        pack = self.pack
        names = ("", f", {SAMPLE_NAME}")
        for key in ("greeting", "thanks", "bye"):
            for name in names:
                yield from say.every(key, name=name)
        yield from say.every("name_kept", first=SAMPLE_NAME)
        for key in ("name_not_kept", "bear_name", "capabilities", "how_are_you", "stop",
                    "repeat_nothing", "yes_nothing", "no_thanks", "fallback", "game_menu",
                    "bedtime"):
            yield from say.every(key)
        for feeling in (*_FEELINGS, "talk"):
            yield from say.every("feelings", feeling)
        for category in ESCALATION_ORDER:
            yield from say.every("escalate", category)
        for category in (*BLOCK_ORDER, "other"):
            yield from say.every("block", category)
        for story in pack.stories:
            for index in range(len(story.parts)):
                yield from say.every_story_part(story, index)
        for joke in pack.jokes:
            yield from say.every_joke(joke)
        for riddle in pack.riddles:
            yield from say.every_riddle(riddle)
        for song in pack.songs:
            yield from say.every_song(song)
        for fact in pack.facts:
            yield from say.every_fact(fact)
        yield from games.every(say, pack)


def _first(order: tuple[str, ...], categories: tuple[str, ...], default: str) -> str:
    return next((c for c in order if c in categories), default)


def _topic(intents: set[str]) -> str | None:
    for topic in ("space", "nature", "animals"):
        if f"topic_{topic}" in intents:
            return topic
    return None


__all__ = ["DialogueEngine", "DialogueState", "MAX_WORDS", "fit"]
