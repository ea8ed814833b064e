"""What the child means: one intent per utterance, by rules and, with the model, by meaning.

Stages, first decisive one wins:

1. **Clean up** the recognizer's words: lower case, no punctuation, known near-misses
   ("tory", "stowy" -> "story").
2. **Negation**: "don't stop playing" continues; "i dont want a song" declines the song.
3. **Exact example**: the cleaned text is one of the intent examples.
4. **Meaning** (with the sentence model): the nearest example among every intent's
   phrasings and every answer's questions, accepted when its cosine reaches
   :data:`ACCEPT` and beats every other kind of answer by :data:`MARGIN`.
5. **Keyword rules** (``intents.json``): whole-word phrases, one intent by :data:`PRIORITY`.
6. **Weaker meaning**: a nearest example above :data:`WEAK` when no rule fired.
7. **Answer keywords** (``answers.json`` ``keys``), then **a question we cannot answer**
   (``out_of_scope``: an honest "I don't know"), else ``fallback``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agent.dialogue.content import CONTENT_DIR, Answer, ContentPack
from agent.dialogue.intents import IntentMatcher, clean
from agent.dialogue.semantic import Encoder, ExemplarIndex, Nearest

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

ACCEPT = 0.62
"""Cosine an example must reach to decide by meaning ahead of the keyword rules."""
MARGIN = 0.03
"""How much nearer than any other kind of answer the best example must be."""
WEAK = 0.50
"""Cosine that still decides by meaning when no keyword rule fired."""
VECTOR_CACHE = 2048
"""Most primed utterance vectors kept (``prime``)."""
SHIPPED_VECTORS = CONTENT_DIR / "exemplar_vectors.npz"
"""Vectors of the built-in examples (``scripts/make-dialogue-vectors``), so none are computed."""
ASKED_FOR = frozenset({"story", "joke", "riddle", "song", "game_animals", "game_counting",
                       "game_wyr"})
"""Kinds asked for by name: "a story about a cat" is a story, not an answer about cats."""
FIRM_RULES = frozenset({"stop"})
"""Keyword intents that win over meaning ("go away" is a stop, however rude it sounds)."""
PRIORITY = (
    "stop", "child_name", "grief", "hurt", "ill", "repeat", "game_animals", "game_counting",
    "game_wyr", "riddle", "joke", "story", "song", "bedtime", "unkind", "affection",
    "persona.colour", "persona.food", "persona.age", "persona.friends", "persona.real",
    "persona.sleep", "persona.animal", "persona.home", "persona.hobby", "bear_name",
    "capabilities", "how_are_you", "game", "more", "fact", "feel_scared", "feel_sad",
    "feel_nervous", "feel_angry", "feel_tired", "feel_bored", "feel_proud", "feel_excited",
    "feel_happy", "feel_silly", "feel_calm", "feelings_talk", "news", "apology", "greeting",
    "thanks", "bye", "no", "yes", "acknowledge", "give_up",
)
"""Which keyword intent wins when several phrases occur, most specific first."""
NEAR_MISSES = {
    "tory": "story", "stowy": "story", "storey": "story", "stawy": "story", "stoy": "story",
    "stori": "story", "storie": "story", "stowies": "stories", "tories": "stories",
    "joak": "joke", "jok": "joke", "jokey": "joke",
    "sowng": "song", "soong": "song",
    "ridle": "riddle", "riddel": "riddle", "widdle": "riddle", "ridel": "riddle",
    "gaim": "game", "gayme": "game", "agen": "again", "agin": "again",
    "favrit": "favourite", "favorit": "favorite", "favourit": "favourite", "colur": "colour",
    "dinosaw": "dinosaur", "dinosaws": "dinosaurs", "dinasaur": "dinosaur",
    "dinasaurs": "dinosaurs", "teddie": "teddy",
}
"""Words a speech recognizer (or a small child) says instead of the one meant."""
_KINDS = ("story", "joke", "riddle", "song", "game", "fact")
_KIND_WORDS = {"stories": "story", "jokes": "joke", "riddles": "riddle", "songs": "song",
               "sing": "song", "singing": "song", "games": "game", "play": "game",
               "playing": "game", "facts": "fact", "music": "song"}
_CONTINUE = re.compile(r"\b(?:don't|dont|do not|never|no) (?:stop|end|finish|quit)\b")
_DECLINE = re.compile(
    r"\b(?:i )?(?:don't|dont|do not|didn't|didnt) (?:want|wanna|feel like)\b"
    r"|\b(?:don't|dont|do not|didn't|didnt) like (?:this|that|the|a|an|your|it) ?(?:story"
    r"|joke|riddle|song|game|one)\b|\b(?:don't|dont|do not) (?:like|want) (?:any )?(?:stories"
    r"|jokes|riddles|songs|games|facts)\b|^not that (?:one )?again\b"
    r"|^no (?:more|way)\b|^(?:no|nope|nah) (?:not|i|thanks|thank)\b"
    r"|\bnot (?:a|another|that|this) (?:one|story|joke|riddle|song|game|fact)\b"
    r"|\bno more (?:story|stories|joke|jokes|song|songs|games|game|playing)\b"
    r"|\b(?:stop|quit) (?:the|this) game\b|\bi'?m done\b")
QUESTION = re.compile(
    r"^(?:why|what|whats|what's|how|hows|how's|where|wheres|where's|when|who|whos|who's"
    r"|which|is|are|was|were|do|does|did|can|could|will|would|should|has|have)\b"
    r"|^(?:tell me|teach me) (?:about|how|why|what)\b|^(?:i )?wonder\b")


@dataclass(frozen=True)
class Understanding:
    """What one utterance means to the bear."""

    intent: str
    """The intent ("story", "persona.colour", "answer", "out_of_scope", "fallback"...)."""
    source: str
    """Which stage decided: "negation", "exact", "semantic", "rules", "keys", "question",
    "none"."""
    score: float = 0.0
    """Cosine of the nearest example when meaning decided."""
    answer: Answer | None = None
    """The answer, when the intent is "answer"."""
    declined: str | None = None
    """What the child said no to ("song"), when the intent is "no"."""
    keywords: frozenset[str] = field(default_factory=frozenset)
    """Every keyword intent found (topics, "give_up"...), whatever decided."""
    example: str = ""
    """The nearest example phrase (semantic decisions), for explaining."""
    text: str = ""
    """The cleaned text the decision was made on."""


class Understander:
    """Intent matching for one content pack, with or without the sentence model."""

    def __init__(self, pack: ContentPack, embedder: Encoder | None = None,
                 cache_dir: Path | None = None) -> None:
        self._rules = IntentMatcher(pack.intents)
        self._answers = {a.id: a for a in pack.answers}
        self._exact = _exact_table(pack)
        self._vocabulary = _vocabulary(pack)
        self._index: ExemplarIndex | None = None
        self._vectors: dict[str, np.ndarray] = {}
        if embedder is not None:
            self._index = ExemplarIndex(embedder, _examples(pack), group=_group,
                                        cache_dir=cache_dir, shipped=SHIPPED_VECTORS)

    @property
    def vocabulary(self) -> frozenset[str]:
        """Every word of the pack's examples and keyword phrases."""
        return self._vocabulary

    @property
    def semantic(self) -> bool:
        """Whether meaning is used (the model is loaded)."""
        return self._index is not None

    def prime(self, texts: Iterable[str]) -> None:
        """Encode many texts in one batch ahead of ``understand`` (for measuring sets)."""
        if self._index is None:
            return
        cleaned = sorted({self.normalise(t) for t in texts} - set(self._vectors))
        if len(self._vectors) + len(cleaned) > VECTOR_CACHE:
            self._vectors.clear()
        for start in range(0, len(cleaned), VECTOR_CACHE):
            chunk = cleaned[start:start + VECTOR_CACHE]
            self._vectors.update(zip(chunk, self._index.encoder.encode(chunk), strict=True))

    def normalise(self, text: str) -> str:
        """Cleaned text with known recognizer near-misses put right."""
        words = clean(text).split()
        return " ".join(w if w in self._vocabulary else NEAR_MISSES.get(w, w) for w in words)

    def rules(self, text: str) -> set[str]:
        """Every keyword intent in ``text`` (after near-miss correction)."""
        return self._rules.find(self.normalise(text))

    def after(self, intent: str, text: str) -> str:
        """The cleaned text after the first phrase of keyword intent ``intent``."""
        return self._rules.after(intent, self.normalise(text))

    def understand(self, text: str) -> Understanding:
        """The one intent ``text`` most likely means."""
        cleaned = self.normalise(text)
        keywords = frozenset(self._rules.find(cleaned))
        if not cleaned:
            return Understanding("fallback", "none", keywords=keywords)
        early = _negation(cleaned, keywords) or self._exact_match(cleaned, keywords)
        if early is not None:
            return early
        nearest = self._nearest(cleaned)
        rule = next((i for i in PRIORITY if i in keywords), None)
        if rule in FIRM_RULES:
            return Understanding(rule, "rules", keywords=keywords, text=cleaned)
        if nearest is not None and nearest.score >= ACCEPT and nearest.margin >= MARGIN \
                and not (rule in ASKED_FOR and nearest.label.startswith("answer:")):
            return self._from_nearest(nearest, cleaned, keywords)
        if rule is not None:
            return Understanding(rule, "rules", keywords=keywords, text=cleaned)
        if nearest is not None and nearest.score >= WEAK:
            return self._from_nearest(nearest, cleaned, keywords)
        return self._last_resort(cleaned, keywords)

    def _exact_match(self, cleaned: str, keywords: frozenset[str]) -> Understanding | None:
        label = self._exact.get(cleaned)
        if label is None:
            return None
        return self._labelled(label, "exact", 1.0, cleaned, keywords, cleaned)

    def _nearest(self, cleaned: str) -> Nearest | None:
        if self._index is None:
            return None
        vector = self._vectors.get(cleaned)
        if vector is None:
            vector = self._index.encode(cleaned)
        return self._index.nearest(vector)

    def _from_nearest(self, nearest: Nearest, cleaned: str,
                      keywords: frozenset[str]) -> Understanding:
        return self._labelled(nearest.label, "semantic", nearest.score, cleaned, keywords,
                              nearest.example)

    def _labelled(self, label: str, source: str, score: float, cleaned: str,
                  keywords: frozenset[str], example: str) -> Understanding:
        if label.startswith("answer:"):
            return Understanding("answer", source, score, self._answers[label[7:]],
                                 keywords=keywords, example=example, text=cleaned)
        return Understanding(label, source, score, keywords=keywords, example=example,
                             text=cleaned)

    def _last_resort(self, cleaned: str, keywords: frozenset[str]) -> Understanding:
        answer = answer_by_keys(self._answers.values(), cleaned)
        if answer is not None:
            return Understanding("answer", "keys", answer=answer, keywords=keywords,
                                 text=cleaned)
        if QUESTION.search(cleaned):
            return Understanding("out_of_scope", "question", keywords=keywords, text=cleaned)
        return Understanding("fallback", "none", keywords=keywords, text=cleaned)


def answer_by_keys(answers: Iterable[Answer], cleaned: str) -> Answer | None:
    """The answer whose longest keyword set all starts words of ``cleaned`` (None if none)."""
    words = cleaned.split()
    best, best_size = None, 0
    for answer in answers:
        for keys in answer.keys:
            if len(keys) > best_size and all(any(w.startswith(k) for w in words) for k in keys):
                best, best_size = answer, len(keys)
    return best


def declined_kind(cleaned: str) -> str | None:
    """What kind of thing a declining child named ("song"), if any."""
    for word in cleaned.split():
        kind = word if word in _KINDS else _KIND_WORDS.get(word)
        if kind is not None:
            return kind
    return None


def _negation(cleaned: str, keywords: frozenset[str]) -> Understanding | None:
    if _CONTINUE.search(cleaned):
        return Understanding("more", "negation", keywords=keywords, text=cleaned)
    if _DECLINE.search(cleaned) and "unkind" not in keywords:
        return Understanding("no", "negation", declined=declined_kind(cleaned),
                             keywords=keywords, text=cleaned)
    return None


def examples(pack: ContentPack) -> list[tuple[str, str]]:
    """(label, cleaned phrase) of every example the meaning stage compares with."""
    return _examples(pack)


def _examples(pack: ContentPack) -> list[tuple[str, str]]:
    examples = [(intent, clean(text)) for intent, texts in pack.exemplars.items()
                for text in texts]
    examples += [(f"answer:{a.id}", clean(text)) for a in pack.answers for text in a.asks]
    return examples


def _exact_table(pack: ContentPack) -> dict[str, str]:
    table: dict[str, str] = {}
    for label, text in _examples(pack):
        table.setdefault(text, label)
    return table


def _vocabulary(pack: ContentPack) -> frozenset[str]:
    words = {w for _, text in _examples(pack) for w in text.split()}
    words.update(w for phrases in pack.intents.values() for p in phrases for w in clean(p).split())
    return frozenset(words)


def _group(label: str) -> str:
    """Margin group: all answers are one group (a near tie between two answers is fine)."""
    return "answer" if label.startswith("answer:") else label
