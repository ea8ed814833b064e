"""Answers that come from the conversation so far, tried before intent matching.

The child's name and who they talked about (:mod:`agent.dialogue.mentions`), honest answers
about keeping the talk (:mod:`agent.dialogue.honesty`), secrets, never sharing with a
stranger from a game, a child who wants to talk, and "he"/"she" statements about someone
just mentioned. Each is a narrow pattern that a sentence model would blur: "teddy do you
have a mom" is about the bear's family, not a story.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from agent.dialogue import clauses, honesty, mentions
from agent.dialogue.negation import FEELINGS
from agent.dialogue.numbers import parse_number
from agent.dialogue.speech import Speech
from agent.dialogue.state import DialogueState, Referent

CONTEXT_PHRASES = {
    "name_recall": ("child", "other", "missed"), "name_unknown": ("not_kept", "not_told", "other"),
    "secret": ("ask", "good"), "share_never": ("first", "again"),
    "talk": ("want", "about", "missed"), "tell_more": ("named", "about", "like", "ask", "low"),
    "negated": ("scary",),
}
"""Phrase sets (and their parts) only this module says."""

_CHILD_NAME = re.compile(
    r"\b(?:my name is|my names|my name's|im called|i'm called|i am called|call me|its me"
    r"|it's me)\s+([a-z]+)\b|^(?:hi |hello |hey )?(?:im|i'm|i am) ([a-z]+)$")
_ASK_CHILD_NAME = re.compile(
    r"\b(?:what(?:s| is|'s) my name|do you (?:know|remember) my name|say my name|who am i"
    r"|what am i called)\b")
_ASK_OTHER = re.compile(
    r"\bwhat(?:s| is|'s) (?:my|our) ([a-z]+?)(?:s|'s)? (?:name|called)\b"
    r"|\bwhat(?:s| is|'s) (?:his|her) name\b|\bwhat(?:s| is|'s) (?:he|she) called\b"
    r"|\b(?:do|did) you (?:still )?(?:remember|know) (?:my |our )?([a-z]+)\b")
_FAMILY = re.compile(
    r"\b(?:do|have) (?:you|u) (?:have|got|got a|have got) (?:a |an |any )?(?:mum|mom|mummy"
    r"|mommy|mother|dad|daddy|father|brothers?|sisters?|family|grandma|granny|grandpa"
    r"|parents|baby|cousins?)\b")
_KIND = re.compile(
    r"\b(?:do you think|am i|you think|think im|think i'm|think i am) (?:i'm |im |i am )?"
    r"(?:really |so |too )?(?:weird|stupid|ugly|dumb|annoying|strange|boring|a baby|fat"
    r"|a loser|bad at everything)\b")
_TALK = re.compile(
    r"^(?:(?:i|i'd) (?:just |only |really )?(?:want|wanna|want to|like to|need to)"
    r"|can we (?:just )?|could we (?:just )?|lets (?:just )?|let's (?:just )?)"
    r"(?: to)? talk\b(?! about (?:it|that) anymore)")
_ASK = re.compile(r"^(?:teddy |hey teddy )?(?:can i|could i|i need to|i want to|may i|can i just)"
                  r" ask (?:you )?(?:something|a question|you)?")
_REDACTED_NAME = re.compile(r"\b(?:called|named|name is|name was|names) name\b")
_VOCATIVE = re.compile(r"^(?:hey |hi |oh |um |yo )?(?:teddy|bear|teddy bear|mr bear)$")
_LIKES = re.compile(r"^(?:do|did|would) you (?:like|love) ([a-z]+)")
_LEAD = r"^(?:(?:teddy|hey|oh|well|but|and|so|um) )*"
_REMARK = re.compile(
    _LEAD + r"(?:you're|youre|you are|ur|u r|your|you) (?:so |very |really |kinda |kind of "
    r"|a bit |a little |such a |such |the |just |too |like |totally |super |an |a |soo+ )*"
    r"([a-z]+)(?: (?:teddy|bear|too|sometimes|now|today|lol))*$")
"""A whole line that is a remark about the bear ("youre funny", "you're kinda babyish")."""
COMPLIMENTS = frozenset({
    "funny", "cool", "nice", "kind", "best", "awesome", "great", "cute", "soft", "fluffy",
    "clever", "smart", "lovely", "amazing", "brilliant", "good", "sweet", "wonderful", "fun",
    "hilarious", "cuddly", "silly", "cuddliest", "greatest", "coolest", "funniest", "epic"})
"""Remarks about the bear that are kind: answered with warmth, never with a joke."""
INSULTS = frozenset({
    "babyish", "baby", "stupid", "dumb", "boring", "annoying", "weird", "mean", "rubbish",
    "lame", "useless", "childish", "cringe", "bad", "horrible", "ugly", "slow", "wrong", "old",
    "worst", "smelly", "naughty", "pointless"})
"""Remarks about the bear that are unkind: answered kindly, never scored as a game answer."""
_BEAR_REAL = re.compile(
    _LEAD + r"(?:how do you know (?:all |so much|everything|that|this|these|stuff|so many|all "
    r"this)|are you (?:even |really |actually |a )?(?:real|alive)\b|how do you (?:talk|work"
    r"|think|know things)\b|who made you\b)")
_WHY_LIKE = re.compile(_LEAD + r"why do (?:you|u) (?:like|love|want|pick|choose|prefer)\b")
_STAY = re.compile(r"\b(?:will|can|would|could) (?:you|u) (?:stay|be) (?:here )?(?:with|next to)"
                   r" me\b|^(?:please )?stay with me\b|\b(?:dont|don't) leave me\b")
_BETTER = re.compile(
    r"^(?:(?:but|and|ok|okay|well) )*(?:i|im|i'm|i am|i feel|i'm feeling|im feeling|i am "
    r"feeling|feeling|i feel a|i think im|i think i'm) (?:a bit |a little |much |lots |loads "
    r"|way |feeling )?(?:better|ok|okay|fine|alright|all right)(?: now| again| thanks"
    r"| thank you| teddy)*$")
_OTHER_DIES = re.compile(
    r"^(?:(?:i think|i'm scared|im scared|i am scared|im worried|i'm worried|i am worried|what if"
    r"|will|is) )?(?:that )?(?:she|he|they|my (?:[a-z]+)|grandma|grandpa|granny|nana|mum|mom"
    r"|dad) (?:is |s |are )?(?:going to|gonna|will|might|could) (?:die|be dead)\b")
"""Worry that someone else will die: comfort, not the self-harm script."""
_SELF = re.compile(r"\b(?:myself|kill me|hurt me|i want to die|i wanna die|me die)\b")
_MISS = re.compile(r"^(?:i |and i |but i )(?:really |still |just )?miss (?:him|her|them|my \w+|\w+)"
                   r"(?: so much| a lot| loads)?$")
"""Missing someone the child talked about: listened to, not sent off to find a grown-up."""
_UNKIND_TO_ME = re.compile(
    r"\b(?:said|says|told me) (?:i|im|i'm|that i|that im) (?:cant|can't|cannot|not allowed"
    r"|am not|m not|is not|smell|stupid|ugly|weird|a baby|dumb|fat|bad)"
    r"|\b(?:wont|won't|doesnt|doesn't|didnt|didn't) (?:let me|play with me|want"
    r" me|like me|talk to me|sit with me)\b|\b(?:laughed|laughs|laughing) at me\b"
    r"|\b(?:left|leaves|leave) me out\b|\b(?:called|calls) me (?:names|a )"
    r"|\b(?:was|is|were|are) (?:mean|horrible|nasty) to me\b|\bignored me\b")
"""Someone the child talked about treated them unkindly: heard, not just "tell me more"."""
_DISCLOSED = re.compile(
    r"\b(?:secrets?|touch\w*|hurts?|hurting|hit|hits|hitting|kiss\w*|said|says|told|tells"
    r"|promise\w*|(?:dont|don't|not) tell|scared|afraid|frightened|private|naked|photos?"
    r"|pictures?|pics?|meet|come over|address|alone)\b")
"""Words that may carry a disclosure or a lure: a line with one is never softened."""
SOFTER = frozenset({"secrets", "lures", "distress", "self_harm"})
"""Escalations whose script a narrow reading of the whole line may replace with a truer
answer (the parent's alert is the filter's, and is raised all the same)."""
_QUESTION = re.compile(r"^(?:why|what|whats|how|where|when|who|which|is|are|was|were|do|does"
                       r"|did|can|could|will|would|should|shall)\b")


class ContextAnswers:
    """Context-dependent answers over one pack's phrases."""

    def __init__(self, speech: Speech, vocabulary: frozenset[str],
                 name_check: Callable[[str], bool] | None = None) -> None:
        self._say = speech
        self._vocabulary = vocabulary
        self._name_check = name_check
        """Whether a name may be kept and said (both safety checks); None: any name."""

    def first(self, cleaned: str, state: DialogueState, introduced: Referent | None) -> str | None:
        """An answer that only the conversation's context gives, or None."""
        for answer in (self._safety, self._names, self._keeping, self._about_bear):
            reply = answer(cleaned, state)
            if reply is not None:
                return reply
        if _UNKIND_TO_ME.search(cleaned) and not _QUESTION.search(cleaned):
            state.listening = True  # "she said i cant sit with them": heard, not a game
            return self._say.one(state, "feelings", "treated_unkindly")
        if introduced is None or _QUESTION.search(cleaned) or state.skill is not None:
            return None
        if introduced.name and introduced.name.lower() in cleaned.split():
            key = ("talk", "missed") if introduced.gone else ("tell_more", "named")
            return self._say.one(state, *key, who=introduced.name)
        if _REDACTED_NAME.search(cleaned):  # "my sister is called [name]": not kept
            return self._say.one(state, "tell_more", "about", who=introduced.spoken)
        return None

    def escalated(self, cleaned: str, category: str, state: DialogueState) -> str | None:
        """A truer answer than ``category``'s script when the whole line plainly means less:
        a question about keeping the talk, "i will tell my mum", missing someone the child
        talked about, worry that someone else will die. None: the script stands."""
        if category not in SOFTER or len(cleaned.split()) > 9 or _SELF.search(cleaned) \
                or _DISCLOSED.search(cleaned) or len(clauses.split(cleaned)) > 1:
            return None  # anything that could be a disclosure keeps the script
        if category != "self_harm":
            question = honesty.about_keeping(cleaned)
            if question is not None and not honesty.asks_to_share(cleaned, False):
                return self._say.one(state, "honesty", question,
                                     honesty.privacy_key(state.privacy))
        if category in ("secrets", "lures"):
            return self._say.one(state, "praise") if honesty.tells_grown_up(cleaned) else None
        if _OTHER_DIES.search(cleaned):
            return self._say.one(state, "escalate", "distress")
        referent = mentions.resolve(state.memory, cleaned)
        if category == "distress" and referent is not None and _MISS.match(cleaned):
            state.listening = True
            return self._say.one(state, "talk", "missed", who=referent.spoken)
        return None

    def _safety(self, cleaned: str, state: DialogueState) -> str | None:
        memory = state.memory
        following = memory.share_turns > 0
        if honesty.asks_to_share(cleaned, following):
            if not following:
                state.alert = honesty.SHARE_CATEGORY
            memory.share_turns = honesty.SHARE_FOLLOW_TURNS + 1
            return self._say.one(state, "share_never", "again" if following else "first")
        if honesty.tells_grown_up(cleaned):
            return self._say.one(state, "praise")
        secret_asked, memory.secret_asked = memory.secret_asked, False
        if honesty.asks_secret(cleaned):
            memory.secret_asked = True
            return self._say.one(state, "secret", "ask")
        if secret_asked and honesty.good_secret(cleaned) and not _QUESTION.search(cleaned):
            return self._say.one(state, "secret", "good")
        return None

    def _names(self, cleaned: str, state: DialogueState) -> str | None:
        if _ASK_CHILD_NAME.search(cleaned):
            if not state.privacy.name:
                return self._say.one(state, "name_unknown", "not_kept")
            if state.child_name is None:
                return self._say.one(state, "name_unknown", "not_told")
            return self._say.one(state, "name_recall", "child", first=state.child_name)
        told = _CHILD_NAME.search(cleaned)
        if told:
            return self._learn(told.group(1) or told.group(2), state, bool(told.group(1)))
        asked = _ASK_OTHER.search(cleaned)
        if asked:
            return self._recall(asked.group(1) or asked.group(2), cleaned, state)
        return None

    def _learn(self, word: str, state: DialogueState, said_name: bool) -> str | None:
        if not said_name and (word in self._vocabulary or word in mentions.KINDS
                              or word in FEELINGS or parse_number(word) is not None
                              or word in mentions.NOT_NAMES):
            return None
        if not _looks_like_name(word):
            return self._say.one(state, "name_not_kept")
        if not state.privacy.name:
            return self._say.one(state, "name_not_kept")
        if self._name_check is not None and not self._name_check(word.capitalize()):
            return self._say.one(state, "name_not_kept")  # never kept, never said
        state.child_name = word.capitalize()
        return self._say.one(state, "name_kept", first=state.child_name)

    def _recall(self, word: str | None, cleaned: str, state: DialogueState) -> str | None:
        memory = state.memory
        referent = mentions.by_kind(memory, mentions.singular(word)) if word else None
        if referent is None:
            referent = mentions.resolve(memory, cleaned)
        if referent is None:
            known = word in mentions.KINDS or mentions.singular(word or "") in mentions.KINDS
            return self._say.one(state, "name_unknown", "other") if known else None
        if referent.name is None:
            return self._say.one(state, "name_unknown", "other")
        key = "missed" if referent.gone else "other"
        return self._say.one(state, "name_recall", key, who=referent.name)

    def _keeping(self, cleaned: str, state: DialogueState) -> str | None:
        question = honesty.about_keeping(cleaned)
        if question is None:
            return None
        return self._say.one(state, "honesty", question, honesty.privacy_key(state.privacy))

    def _about_bear(self, cleaned: str, state: DialogueState) -> str | None:
        say = self._say
        remark = _REMARK.match(cleaned)
        if remark and remark.group(1) in COMPLIMENTS | INSULTS:  # about the bear, not a request
            return say.one(state, "affection" if remark.group(1) in COMPLIMENTS else "unkind")
        for pattern, part in ((_BEAR_REAL, "real"), (_WHY_LIKE, "why_like"), (_STAY, "stay")):
            if pattern.search(cleaned):
                return say.one(state, "persona", part)
        if _BETTER.match(cleaned):
            state.listening = True
            return say.one(state, "feelings", "better")
        if _FAMILY.search(cleaned):
            return say.one(state, "persona", "family")
        if _KIND.search(cleaned):
            return say.one(state, "kind")
        if _TALK.search(cleaned):
            state.listening = True
            referent = mentions.resolve(state.memory, cleaned)
            if referent is not None and " about " in cleaned:
                return say.one(state, "talk", "about", who=referent.spoken)
            return say.one(state, "talk", "want")
        if _ASK.search(cleaned):
            return say.one(state, "tell_more", "ask")
        if _VOCATIVE.match(cleaned):
            return say.one(state, "greeting", name="")
        return None

    def about(self, cleaned: str, state: DialogueState) -> str | None:
        """A statement or "do you like" question about someone just mentioned."""
        referent = mentions.resolve(state.memory, cleaned)
        if referent is None:
            return None
        if _LIKES.search(cleaned):
            return self._say.one(state, "tell_more", "like", who=referent.spoken)
        if _QUESTION.search(cleaned):
            return None
        if referent.gone:
            return self._say.one(state, "talk", "missed", who=referent.spoken)
        return self._say.one(state, "tell_more", "about", who=referent.spoken)

    def low(self, state: DialogueState) -> str:
        """An honest "tell me more" when the bear is not sure what the child meant."""
        return self._say.one(state, "tell_more", "low")


def every_context_reply(say: Speech, sample: str) -> Iterator[str]:
    """Every reply this module can give (names shown as ``sample``, feelings all of them)."""
    for key, parts in CONTEXT_PHRASES.items():
        for part in parts:
            named_only = key == "name_recall" or part == "named"
            for who in (sample,) if named_only else (sample, *spoken_kinds()):
                yield from say.every(key, part, who=who, first=sample)
    for question in honesty.QUESTIONS:
        for privacy in honesty.PRIVACY_KEYS:
            yield from say.every("honesty", question, privacy)
    for feeling in sorted(set(FEELINGS)):
        yield from say.every("negated", "feeling", feeling=feeling)
    for part in ("family", "real", "why_like", "stay"):
        yield from say.every("persona", part)
    yield from say.every("feelings", "better")
    yield from say.every("feelings", "treated_unkindly")
    yield from say.every("affection")
    yield from say.every("unkind")
    yield from say.every("praise")
    yield from say.every("kind")


def spoken_kinds() -> list[str]:
    """Every way the bear names someone the child mentioned without a name ("your dog")."""
    return sorted({Referent(kind).spoken for kind in mentions.KINDS})


def _looks_like_name(word: str) -> bool:
    return 2 <= len(word) <= 20 and word.isalpha() and word not in (
        "name", "teddy", "bear", "not", "called", "the", "and")
