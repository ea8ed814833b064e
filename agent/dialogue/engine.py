"""The dialogue engine: turns the child's (redacted) words into the bear's next reply.

Replies are built only from the content pack, by small composer functions. Each skill
has two faces: ``reply`` picks one text for this turn, and ``all_replies`` lists every
text the same composers can produce, so a test can put each through ``check_output``.
What the child means comes from :class:`~agent.dialogue.understand.Understander`
(keyword rules, and sentence meaning when the model is loaded), after the conversation's
context had its say (:mod:`agent.dialogue.context`: names, "he"/"she", honest answers about
keeping the talk, never sharing with strangers) and a run-on line was cut to its last
request (:mod:`agent.dialogue.clauses`).

Extra skills go in :attr:`DialogueEngine.skills`: each ``skill(text, heard, state)``
returns a reply or None, and is tried in order before the bear says it is not sure.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from agent.dialogue import games, honesty, mentions, negation, reading, unknowable
from agent.dialogue.content import CONTENT_DIR, Answer, ContentPack, load_pack
from agent.dialogue.context import ContextAnswers, every_context_reply
from agent.dialogue.extras import Extras, _key_size
from agent.dialogue.knowledge import says_less, words_of
from agent.dialogue.offers import makes_offer, offer_in
from agent.dialogue.semantic import Encoder
from agent.dialogue.speech import MAX_WORDS, Speech, fit
from agent.dialogue.state import DialogueState, Privacy
from agent.dialogue.understand import (
    QUESTION,
    Understander,
    Understanding,
    answer_by_keys,
)
from agent.safety.categories import BLOCK_ORDER, ESCALATION_ORDER, REPLIES
from agent.safety.verdict import Action, Verdict

logger = logging.getLogger(__name__)

BLOCK_FALLBACK = ("block", "other")
"""The steer-away phrase set when no blocking category with a reply fired."""
GAME_INTENTS = {"game_animals": "animal_sounds", "game_counting": "counting",
                "game_wyr": "would_you_rather"}
"""Intent -> the game it starts."""
CONTENT_KINDS = ("riddle", "joke", "story", "song", "bedtime")
"""Intents that hand out one piece of content (or start telling it)."""
SWITCH_INTENTS = frozenset({*CONTENT_KINDS, *GAME_INTENTS, "game", "fact", "capabilities",
                            "bear_name", "bye", "grief", "hurt", "ill", "affection",
                            "feel_sad", "feel_scared"})
"""Intents that leave a game in progress."""
SURE_SWITCH = 0.80
"""Cosine at which a meaning-matched switch leaves a game (answers like "a dog" stay in it)."""
SAMPLE_NAME = "Sam"
"""First name used when listing every reply that can carry the child's name."""
DECLINABLE = ("story", "joke", "riddle", "song", "game", "fact")
"""Kinds a child can say no to by name ("i dont want a song")."""
_FEELINGS = ("scared", "sad", "nervous", "angry", "excited", "tired", "bored", "silly", "proud",
             "calm", "happy")
_FEELING_OFFERS = {"tired": "bedtime", "sad": "song", "happy": "song", "silly": "joke",
                   "bored": "would_you_rather"}
_PERSONA = ("colour", "food", "age", "friends", "real", "sleep", "animal", "home", "hobby")
_SIMPLE = ("affection", "grief", "hurt", "ill", "unkind", "acknowledge", "apology",
           "out_of_scope", "capabilities", "bear_name", "how_are_you")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz-")
_TOPICS = ("space", "nature", "animals")
_PAGED_ALREADY = frozenset({"lures", "secrets", "abuse"})
"""Escalations whose parent alert covers the "should I send it" follow-ups of the same talk."""
Skill = Callable[[str, Understanding, DialogueState], "str | None"]
"""An extra skill: the reply to ``(text, heard, state)``, or None to pass."""
_AGAIN = re.compile(r"\bagain\b|^(?:do|say|sing|tell) (?:it|that) again")
_ANOTHER = re.compile(r"^(?:and |ok |okay )?(?:another|another one|one more|a different one"
                      r"|next one|tell me another|tell me one more|sing another|another "
                      r"(?:song|joke|riddle|story|fact)|the next one)(?: please| one)?$")
_GAME_WORDS = {
    "animals": "animal_sounds", "animal": "animal_sounds", "animal sounds": "animal_sounds",
    "the animal one": "animal_sounds", "animal quiz": "animal_sounds", "sounds": "animal_sounds",
    "counting": "counting", "counting one": "counting", "numbers": "counting",
    "counting in twos": "counting", "would you rather": "would_you_rather",
    "the first one": "animal_sounds", "the last one": "would_you_rather"}
"""A game named by a word or two after the bear listed them ("Which one?")."""
_CHEER = re.compile(r"^(?:yes|yeah|yep|yay|yippee|yes please|yeah please|sure|ok yes|okay yes"
                    r"|yes yes|hooray)(?: teddy| please)?$")
"""A plain, glad "yes" (with no offer open it gets a menu; "ok whatever" gets a nod)."""
_THE_END = re.compile(r"^(?:the end|thats the end|that's the end|the end teddy)$")


class DialogueEngine:
    """Skills over a content pack, for one age band. Stateless itself; thread-safe."""

    def __init__(self, age_band: str = "6-8", remember_name: bool = False,
                 content_dir: Path | None = None, embedder: Encoder | None = None,
                 cache_dir: Path | None = None,
                 name_check: Callable[[str], bool] | None = None) -> None:
        self.age_band = age_band
        """Age band of the child ("3-5", "6-8" or "9-12")."""
        self.remember_name = remember_name
        """Whether a parent allowed the bear to use the child's first name."""
        self.pack: ContentPack = load_pack(age_band, content_dir or CONTENT_DIR)
        """The content for this band (a fleet-installed pack when ``content_dir`` is given)."""
        self.understander = Understander(self.pack, embedder, cache_dir)
        """What the child means (by meaning when ``embedder`` is given, else by rules)."""
        self.name_check = name_check
        """Whether a name may be kept and spoken (the bear's safety checks, both ways);
        None: any name that looks like a name."""
        self._speech = Speech(self.pack)
        self.extras = Extras(self.pack, content_dir, embedder, cache_dir)
        """Sums, the knowledge pack and stories by subject (``agent/dialogue/extras.py``)."""
        self._not_names = set(self.pack.intents["yes"]) | set(self.pack.intents["no"]) | {
            "teddy", "bear", "not", "and", "the", "a", "called", "is", "name"}
        self._context = ContextAnswers(self._speech, self.understander.vocabulary, name_check)
        self.skills: list[Skill] = []
        """Extra skills tried in order before the bear says it is not sure."""

    def new_state(self, seed: int | None = None) -> DialogueState:
        """A fresh conversation state (``seed`` makes its choices reproducible)."""
        return DialogueState(rng=random.Random(seed), privacy=Privacy(name=self.remember_name))

    def is_stop(self, text: str) -> bool:
        """Whether the child asked the bear to stop or be quiet."""
        return self.understander.understand(text).intent == "stop"

    def reply(self, text: str, verdict: Verdict, state: DialogueState) -> str:
        """The bear's answer to ``text`` (already redacted) given its input ``verdict``."""
        state.turns += 1
        state.acts.clear()
        state.alert = None
        state.memory.share_turns = max(0, state.memory.share_turns - 1)
        answer = self._answer(text, verdict, state)
        state.last_reply = answer
        if state.skill is None and state.offer is None and makes_offer(answer):
            state.offer, state.story_hint = offer_in(answer)
        logger.debug("reply %d: %d words, skill %s", state.turns, len(answer.split()),
                     state.skill)
        return answer

    def _answer(self, text: str, verdict: Verdict, state: DialogueState) -> str:
        say = self._speech
        cleaned = negation.tidy(self.understander.normalise(text))
        introduced = mentions.note(state.memory, cleaned)
        if verdict.action is Action.ESCALATE:
            if honesty.asks_to_share(cleaned, state.memory.share_turns > 0) or \
                    set(verdict.categories) & _PAGED_ALREADY:  # follow-ups page no one again
                state.memory.share_turns = honesty.SHARE_FOLLOW_TURNS
            state.end_skill()
            state.offer, state.listening = None, False
            category = _first(ESCALATION_ORDER, verdict.categories, "distress")
            truer = self._context.escalated(cleaned, category, state)
            return truer if truer is not None else say.one(state, *REPLIES[category])
        if verdict.action is Action.BLOCK:
            category = _first(BLOCK_ORDER, verdict.categories, "other")
            if category == "profanity" and self.is_stop(text):  # "shut up": rude, still a stop
                state.end_skill()
                state.offer, state.listening = None, False
                return say.one(state, "stop")
            state.offer = "game" if category == "dangerous" else None
            return say.one(state, *REPLIES.get(category, BLOCK_FALLBACK))
        known = self._context.first(cleaned, state, introduced)
        if known is not None:
            if state.skill is None:  # an offer is answered on the next turn or not at all
                state.offer = None
            return known
        text = reading.last_request(self.understander, negation.no_then_request(cleaned), state)
        if unknowable.cannot_know(text):  # the future, the child's own uncounted things
            state.offer = None
            return say.one(state, "out_of_scope")
        early = self._early(text, state)
        if early is not None:
            return early
        heard = reading.in_context(self.understander, self.pack.answers, text, state)
        if heard.intent == "stop":
            state.end_skill()
            state.offer, state.listening = None, False
            return say.one(state, "stop")
        if heard.intent == "repeat":
            return self._again(heard, state)
        if introduced is not None and heard.intent in ("answer", "fact") \
                and not reading.asks(text) and state.skill is None:  # "i have a cat": news
            state.listening = True
            return say.one(state, "news")
        extra = self._extra(text, heard, state)
        if extra is not None:
            return extra
        if state.skill in games.GAMES:
            answer = self._in_game(text, heard, state)
            if answer is not None:
                return answer
        if state.skill in ("story", "bedtime") and "more" in heard.keywords:
            return self._more(state)
        listening, state.listening = state.listening, False
        if (introduced is None or reading.HE_SHE.match(heard.text)) \
                and (not heard.keywords & reading.STATEMENT_SKIP
                     or reading.remark(heard.text, heard.keywords)):
            about = self._context.about(heard.text, state)
            if about is not None:
                state.listening = listening
                return about
        return self._skill(text, heard, state, listening)

    def _extra(self, text: str, heard: Understanding, state: DialogueState) -> str | None:
        """Sums (even inside a game), then facts and stories by subject (outside games)."""
        sum_reply = self.extras.sums(text, state)
        if sum_reply is not None or state.skill in games.GAMES:
            return sum_reply
        extra = self.extras.reply(text, heard, state)
        if extra is None:
            return None
        return self._story_part(state) if extra.story else extra.text

    def _early(self, text: str, state: DialogueState) -> str | None:
        """Negated feelings, "not scary", "again" and "another one", "the end"."""
        say = self._speech
        denied = negation.negated_feeling(text)
        if denied is not None and denied[1] is None:
            state.offer = None
            return say.one(state, "negated", "feeling", feeling=denied[0])
        if denied is not None and denied[1] is not None:
            heard = Understanding(f"feel_{denied[1]}", "negation", text=text)
            return self._social(heard, state, False)
        if negation.not_scary(text):
            return say.one(state, "negated", "scary")
        if _THE_END.match(text):
            state.end_skill()
            return say.one(state, "acknowledge")
        picked = _GAME_WORDS.get(text) if state.offer in (*games.GAMES, "game") else None
        if picked is not None and state.skill is None:  # "animals" after the game menu
            state.offer = None
            return self._start_game(picked, state)
        if state.skill is None and _ANOTHER.match(text) and state.last_kind in CONTENT_KINDS:
            named = next((k for k in CONTENT_KINDS if k in text.split()), None)
            return self._give(named or state.last_kind, state)
        if state.skill is None and _AGAIN.search(text) and state.last_item \
                and not text.startswith(("not", "no ", "dont", "don't")) \
                and len(text.split()) <= 5:
            state.act("again")
            return state.last_item
        return None

    def _again(self, heard: Understanding, state: DialogueState) -> str:
        """"again" gives the same item again; "say that again" repeats the last words."""
        wants_item = any(w in heard.text.split() for w in ("again", "same", "more"))
        if (wants_item and state.skill is None and state.offer in games.GAMES
                and state.last_kind == "game"):
            return self._start_game(state.offer, state)
        if wants_item and state.skill is None and state.last_item:
            state.act("again")
            return state.last_item
        state.act("repeat")
        return state.last_reply or self._speech.one(state, "repeat_nothing")

    def _in_game(self, text: str, heard: Understanding, state: DialogueState) -> str | None:
        say = self._speech
        if reading.side_question(self.pack, text, heard, state):
            return self._aside(text, heard, state)
        if heard.intent == "no" and heard.source in ("negation", "exact", "rules"):
            state.end_skill()
            state.offer = None
            return say.one(state, "game_over")
        if heard.intent == "more" and heard.source != "semantic":
            state.act("game_turn")
            return games.reask(say, self.pack, state)
        sure = heard.source != "semantic" or heard.score >= SURE_SWITCH
        if heard.intent in SWITCH_INTENTS and sure:
            return None
        answer = games.answer(say, self.pack, state, text, set(heard.keywords))
        if answer is not None:
            state.act("game_turn")
        return answer

    def _aside(self, text: str, heard: Understanding, state: DialogueState) -> str:
        """Answer a question asked inside a game; the game goes on after it."""
        kept = (state.skill, state.item, state.score, state.round, state.position,
                state.last_kind)
        answer = self._skill(text, heard, state, False)
        (state.skill, state.item, state.score, state.round, state.position,
         state.last_kind) = kept
        state.offer = None
        return answer

    def _skill(self, text: str, heard: Understanding, state: DialogueState,
               listening: bool) -> str:
        intent = heard.intent
        if reading.unsure(heard):
            return self._unsure(text, heard, state, listening)
        if intent == "child_name":
            return self._learn_name(text, state)
        if intent in GAME_INTENTS:
            return self._start_game(GAME_INTENTS[intent], state)
        if intent in CONTENT_KINDS:
            return self._give(intent, state)
        if intent == "game":
            state.end_skill()
            state.offer = "animal_sounds"
            return self._speech.one(state, "game_menu")
        if intent == "fact":
            answer = answer_by_keys(self.pack.answers, heard.text)
            return self._answer_question(answer, state) if answer else \
                self._fact(state, _topic(heard.keywords))
        if intent == "answer" and heard.answer is not None:
            if not reading.follows_topic(text, state) and \
                    _near_answer(heard.answer, heard.text):  # "do octopuses dream": not its arms
                return self._unsure(text, heard, state, listening)
            return self._answer_question(heard.answer, state)
        if intent == "more":
            return self._more(state)
        return self._social(heard, state, listening)

    def _social(self, heard: Understanding, state: DialogueState, listening: bool) -> str:
        say = self._speech
        intent = heard.intent
        if intent == "yes" and state.offer:
            return self._take_offer(state)
        if intent == "no":
            return self._decline(heard, state)
        state.offer = None
        if intent.startswith("persona.") and intent[8:] in _PERSONA:
            return say.one(state, "persona", intent[8:])
        if intent.startswith("feel_") and intent[5:] in _FEELINGS:
            state.offer = _FEELING_OFFERS.get(intent[5:])
            return say.one(state, "feelings", intent[5:])
        if intent == "feelings_talk":
            return say.one(state, "feelings", "talk")
        if intent == "news":
            state.listening = True
            return say.one(state, "news")
        if intent == "out_of_scope":  # an added skill may know the answer
            return self._unsure(heard.text, heard, state, listening)
        if intent in _SIMPLE:
            return say.one(state, intent)
        if intent in ("greeting", "thanks", "bye"):
            return say.one(state, intent, name=self._name_suffix(state))
        if intent == "yes":  # nothing was offered: "ok whatever" is not a cheer
            return say.one(state, "yes_nothing" if _CHEER.match(heard.text) else "acknowledge")
        if intent == "give_up":
            return say.one(state, "no_thanks")
        return self._unsure(heard.text, heard, state, listening)

    def _unsure(self, text: str, heard: Understanding, state: DialogueState,
                listening: bool) -> str:
        """Extra skills first; then an honest answer, never a confident guess."""
        for skill in self.skills:
            reply = skill(text, heard, state)
            if reply is not None:
                return reply
        state.offer = None
        if reading.asks(text):
            return self._speech.one(state, "out_of_scope")
        if listening:
            return self._speech.one(state, "listening")
        if not set(text.split()) & self.understander.vocabulary:  # no word it knows
            return self._speech.one(state, "fallback")
        return self._context.low(state)

    def _take_offer(self, state: DialogueState) -> str:
        offer, state.offer = state.offer, None
        if offer in games.GAMES:
            return self._start_game(offer, state)
        if offer == "more":
            return self._more(state)
        if offer == "game":
            state.offer = "animal_sounds"
            return self._speech.one(state, "game_menu")
        return self._give(offer or "story", state)

    def _decline(self, heard: Understanding, state: DialogueState) -> str:
        declined = heard.declined
        state.offer = None
        if state.skill is not None and (declined is None or declined in ("story", "game")):
            state.end_skill()
        if declined in DECLINABLE:
            return self._speech.one(state, "decline", what=declined)
        return self._speech.one(state, "no_thanks")

    def _start_game(self, game: str, state: DialogueState) -> str:
        state.last_kind, state.last_game = "game", game
        state.act(f"game:{game}")
        return games.start(self._speech, self.pack, state, game)

    def _give(self, kind: str, state: DialogueState) -> str:
        """Start a skill or hand out one piece of content of ``kind``."""
        say = self._speech
        pack = self.pack
        hint, state.story_hint = state.story_hint, None
        state.end_skill()
        state.last_kind = kind
        state.act(kind)
        if kind == "story":
            state.skill, state.story_id, state.position = "story", self._story_id(state, hint), 0
            return self._story_part(state)
        if kind == "bedtime":
            state.skill, state.position = "bedtime", 0
            return self._bedtime_step(state)
        if kind == "joke":
            joke = pack.jokes[state.pick("joke", len(pack.jokes))]
            return self._item(state, say.joke(state, joke))
        if kind == "riddle":
            state.skill = "riddle"
            state.item = state.pick("riddle", len(pack.riddles))
            return say.riddle_question(state, pack.riddles[state.item])
        if kind == "song":
            song = pack.songs[state.pick("song", len(pack.songs))]
            return self._item(state, say.song(state, song))
        if kind == "fact":
            return self._fact(state, state.fact_topic)
        return self._give("story", state)

    def _story_id(self, state: DialogueState, hint: str | None) -> str:
        stories = self.pack.stories
        about = [i for i, s in enumerate(stories)
                 if hint and hint in f"{s.title} {s.parts[0]}".lower()]
        return stories[state.pick("story", len(stories), about or None)].id

    @staticmethod
    def _item(state: DialogueState, text: str) -> str:
        state.last_item = text
        return text

    def _more(self, state: DialogueState) -> str:
        if state.skill == "story":
            return self._story_part(state)
        if state.skill == "bedtime":
            return self._bedtime_step(state)
        if state.last_kind == "game" and state.last_game:
            return self._start_game(state.last_game, state)
        if state.last_kind == "answer":
            return self._more_on_topic(state)
        return self._give(state.last_kind or "story", state)

    def _story_part(self, state: DialogueState) -> str:
        state.act("story")
        story = next(s for s in self.pack.stories if s.id == state.story_id)
        index = state.position
        state.position += 1
        last = state.position >= len(story.parts)
        if last:
            state.end_skill()
            state.offer = None
        else:
            state.offer = "more"
        return self._item(state, self._speech.story_part(state, story, index))

    def _bedtime_step(self, state: DialogueState) -> str:
        state.act("bedtime")
        steps = self._speech.variants("bedtime")
        step = steps[min(state.position, len(steps) - 1)]
        state.position += 1
        if state.position >= len(steps):
            state.end_skill()
        state.offer = "more" if state.skill == "bedtime" else None
        return step

    def _fact(self, state: DialogueState, topic: str | None) -> str:
        state.act("fact")
        facts = self.pack.facts
        choices = [i for i, f in enumerate(facts) if topic is None or f.topic == topic]
        index = state.pick("fact", len(facts), choices or None)
        state.end_skill()
        state.last_kind, state.fact_topic = "fact", topic if choices else None
        return self._item(state, self._speech.fact(state, facts[index]))

    def _answer_question(self, answer: Answer, state: DialogueState) -> str:
        state.end_skill()
        state.last_kind, state.fact_topic = "answer", answer.topic
        state.memory.topic = " ".join(answer.keys[0]) if answer.keys else None
        state.act(f"answer:{answer.id}")
        state.used.setdefault("answer", set()).add(self.pack.answers.index(answer))
        intro = self._speech.one(state, "answer_intro")
        return self._item(state, fit(answer.text, intro))

    def _more_on_topic(self, state: DialogueState) -> str:
        used = state.used.setdefault("answer", set())
        fresh = [a for i, a in enumerate(self.pack.answers)
                 if a.topic == state.fact_topic and i not in used]
        if fresh:
            return self._answer_question(state.rng.choice(fresh), state)
        if state.fact_topic in _TOPICS:
            return self._fact(state, state.fact_topic)
        state.last_kind = "fact"
        return self._speech.one(state, "more_topic_done")

    def _learn_name(self, text: str, state: DialogueState) -> str:
        words = self.understander.after("child_name", text).split()
        first = words[0] if words else ""
        if (state.privacy.name and 2 <= len(first) <= 20 and set(first) <= _NAME_CHARS
                and first not in self._not_names
                and (self.name_check is None or self.name_check(first.capitalize()))):
            state.child_name = first.capitalize()
            return self._speech.one(state, "name_kept", first=state.child_name)
        return self._speech.one(state, "name_not_kept")

    def _name_suffix(self, state: DialogueState) -> str:
        return f", {state.child_name}" if state.privacy.name and state.child_name else ""

    def all_replies(self) -> Iterator[str]:
        """Every reply this engine can produce (the child's name shown as ``Sam``)."""
        say = self._speech
        pack = self.pack
        names = ("", f", {SAMPLE_NAME}")
        for key in ("greeting", "thanks", "bye"):
            for name in names:
                yield from say.every(key, name=name)
        yield from say.every("name_kept", first=SAMPLE_NAME)
        for key in ("name_not_kept", "stop", "repeat_nothing", "yes_nothing", "no_thanks",
                    "fallback", "game_menu", "bedtime", "news", "listening", "game_over",
                    "more_topic_done", *_SIMPLE):
            yield from say.every(key)
        for what in DECLINABLE:
            yield from say.every("decline", what=what)
        for topic in _PERSONA:
            yield from say.every("persona", topic)
        for feeling in (*_FEELINGS, "talk"):
            yield from say.every("feelings", feeling)
        for category in ESCALATION_ORDER:
            yield from say.every(*REPLIES[category])
        for category in BLOCK_ORDER:
            yield from say.every(*REPLIES[category])
        yield from say.every(*BLOCK_FALLBACK)
        yield from every_context_reply(say, SAMPLE_NAME)
        yield from self._every_content()
        yield from games.every(say, pack)
        yield from self.extras.every_reply()

    def _every_content(self) -> Iterator[str]:
        say = self._speech
        pack = self.pack
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
        for answer in pack.answers:
            for intro in say.every("answer_intro"):
                yield fit(answer.text, intro)


def _near_answer(answer: Answer, text: str) -> bool:
    """A question that names only the answer's subject and asks something it never says."""
    return bool(QUESTION.search(text)) and _key_size(answer.keys, text) <= 1 and \
        says_less(answer.text, answer.asks, answer.keys, words_of(text))


def _first(order: tuple[str, ...], categories: tuple[str, ...], default: str) -> str:
    return next((c for c in order if c in categories), default)


def _topic(keywords: frozenset[str]) -> str | None:
    for topic in _TOPICS:
        if f"topic_{topic}" in keywords:
            return topic
    return None


__all__ = ["DialogueEngine", "DialogueState", "MAX_WORDS", "fit"]
