"""The knowledge pack: checked facts for ages 9-12, found by keywords and, with the model, by
meaning ("how far is the moon", "who invented the telephone", "whats the capital of japan").

Each fact in ``content/knowledge.json`` carries its topic, example questions (``ask``), keyword
sets (``keys``), the answer and the source it was checked against. A question is answered
only when one keyword set is wholly present, or when the nearest example question is very
close in meaning *and* its fact's keywords partly appear; otherwise nothing matches and the
bear says it does not know (:func:`asks_for_knowledge` tells a knowledge question apart).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from agent.dialogue.content import AGE_BANDS, CONTENT_DIR, _read_optional
from agent.dialogue.errors import ContentError
from agent.dialogue.semantic import Encoder, ExemplarIndex

logger = logging.getLogger(__name__)

KNOWLEDGE_FILE = "knowledge.json"
"""The knowledge pack's file in the content directory."""
SHIPPED_VECTORS = CONTENT_DIR / "knowledge_vectors.npz"
"""Vectors of the built-in example questions (``scripts/make-knowledge-vectors``)."""
DEFAULT_AGES = ("9-12",)
"""Bands a fact is for when it names none."""
TOPICS = ("space", "animals", "body", "earth", "countries", "inventions", "history")
"""The topics a fact may have."""
MEANING = 0.78
"""Cosine the nearest example question must reach to answer by meaning."""
_WORD = re.compile(r"[a-z0-9]+")
_DOMAIN = re.compile(
    r"\b(?:capital|planet|planets|moon|sun|star|stars|space|galaxy|invent|invented|inventor"
    r"|discover|discovered|country|countries|continent|ocean|river|mountain|desert|animal"
    r"|animals|bone|bones|body|dinosaur|dinosaurs|history|war|king|queen|president|city"
    r"|biggest|smallest|tallest|fastest|longest|largest|highest|deepest|oldest|first)\b")
_QUESTION = re.compile(
    r"^(?:(?:hey |ok |so |teddy |please |um )*)(?:why|what|whats|how|hows|where|wheres|when"
    r"|who|whos|which|is|are|was|were|do|does|did|can|could|tell me about|tell me|do you know"
    r"|i wonder|name)\b")


@dataclass(frozen=True)
class KnownFact:
    """One checked fact and how it is asked for."""

    id: str
    """Stable identifier."""
    topic: str
    """One of :data:`TOPICS`."""
    asks: tuple[str, ...]
    """Example questions (matched by meaning)."""
    keys: tuple[tuple[str, ...], ...]
    """Keyword sets; one wholly present in a question answers it."""
    text: str
    """The answer, as the bear says it."""
    source: str
    """Where a maintainer can check it ("Encyclopaedia Britannica: Blue whale")."""


def words_of(text: str) -> list[str]:
    """Lower-case words of ``text`` with apostrophes dropped ("what's" -> "whats")."""
    return _WORD.findall(text.lower().replace("\u2019", "'").replace("'", ""))


def key_matches(key: str, word: str) -> bool:
    """Whether keyword ``key`` matches ``word``: ``key*`` any word it starts, else the word
    itself or its plural."""
    if key.endswith("*"):
        return word.startswith(key[:-1])
    return word in (key, key + "s", key + "es") or (
        key.endswith("y") and word == key[:-1] + "ies")


def asks_for_knowledge(text: str) -> bool:
    """Whether ``text`` is a question about the kind of thing the knowledge pack covers."""
    cleaned = " ".join(words_of(text))
    return bool(_QUESTION.search(cleaned) and _DOMAIN.search(cleaned))


def is_question(text: str) -> bool:
    """Whether ``text`` reads as a question or a request to be told something."""
    return bool(_QUESTION.search(" ".join(words_of(text))))


class Knowledge:
    """The facts for one age band, found by keywords and (with an encoder) by meaning."""

    def __init__(self, facts: tuple[KnownFact, ...], embedder: Encoder | None = None,
                 cache_dir: Path | None = None) -> None:
        self.facts = facts
        """The band's facts, in file order."""
        self._by_id = {f.id: f for f in facts}
        self._rarity = _rarity(facts)
        self._forms, self._prefixes = _key_index(facts)
        self._index: ExemplarIndex | None = None
        if embedder is not None and facts:
            self._index = ExemplarIndex(embedder, examples(facts), cache_dir=cache_dir,
                                        shipped=SHIPPED_VECTORS)

    def find(self, text: str) -> KnownFact | None:
        """The fact that answers ``text``, or None when none does (a fact found only by its
        subject word that says nothing of what else is asked is a near fact, not an answer:
        "do sharks sleep" is not answered by sharks' bones)."""
        words = words_of(text)
        fact, size = self._by_keys(words)
        if fact is not None and size == 1 and asks_more_than(fact, words):
            logger.debug("knowledge: %s only names the subject; not an answer", fact.id)
            return None
        return fact or self._by_meaning(words)

    def key_size(self, text: str) -> int:
        """Words in the largest keyword set of any fact wholly present in ``text`` (0: none)."""
        return self._by_keys(words_of(text))[1]

    def _by_keys(self, words: list[str]) -> tuple[KnownFact | None, int]:
        """The best fact by keywords: most words in the matched set, then the rarest words
        (a set whose words few facts use is more telling), then most keywords present."""
        best, best_rank = None, (0, 0.0, 0)
        for index in sorted(self._candidates(words)):
            fact = self.facts[index]
            for keys in fact.keys:
                if all(any(key_matches(k, w) for w in words) for k in keys):
                    rarity = sum(self._rarity.get(k, 1.0) for k in keys)
                    rank = (len(keys), rarity, _overlap(fact, words))
                    if rank > best_rank:
                        best, best_rank = fact, rank
        return best, best_rank[0]

    def _candidates(self, words: list[str]) -> set[int]:
        """Indexes of the facts with at least one keyword present (the only ones that can
        match), from the keyword index instead of a scan of every fact."""
        found: set[int] = set()
        for word in words:
            found.update(self._forms.get(word, ()))
            found.update(i for prefix, i in self._prefixes if word.startswith(prefix))
        return found

    def _by_meaning(self, words: list[str]) -> KnownFact | None:
        if self._index is None or not words:
            return None
        nearest = self._index.nearest(self._index.encode(" ".join(words)))
        if nearest is None or nearest.score < MEANING:
            return None
        fact = self._by_id[nearest.label]
        partly = any(sum(any(key_matches(k, w) for w in words) for k in keys) * 2 >= len(keys)
                     for keys in fact.keys)
        logger.debug("knowledge by meaning: %s at %.2f (keywords %s)", fact.id, nearest.score,
                     "partly present" if partly else "absent")
        return fact if partly else None

    def on_topic(self, topic: str, used: set[str]) -> KnownFact | None:
        """A fact on ``topic`` not in ``used`` (for "tell me more"), or None."""
        return next((f for f in self.facts if f.topic == topic and f.id not in used), None)


def examples(facts: tuple[KnownFact, ...]) -> list[tuple[str, str]]:
    """(fact id, cleaned question) of every example question, as the meaning index holds them."""
    return [(f.id, " ".join(words_of(a))) for f in facts for a in f.asks]


ASKED_FILLER = frozenset({
    "what", "whats", "why", "how", "hows", "where", "wheres", "when", "who", "whos", "which",
    "is", "are", "was", "were", "do", "does", "did", "can", "could", "will", "would", "should",
    "a", "an", "the", "of", "to", "in", "on", "at", "for", "about", "with", "from", "and", "or",
    "it", "its", "they", "them", "their", "there", "this", "that", "these", "those", "me", "you",
    "tell", "know", "teddy", "hey", "ok", "so", "um", "please", "i", "wonder", "really", "very",
    "much", "many", "some", "any", "all", "more", "most", "thing", "things", "stuff", "kind",
    "have", "has", "had", "be", "get", "go", "make", "made", "like", "real", "true", "ever",
    "called", "name", "mean", "facts", "fact", "interesting", "cool", "something", "anything",
    "big", "little", "one", "ones", "not", "no", "if", "then", "just", "also", "again", "other"})
"""Words of a question that say nothing about what is asked of its subject."""


def asks_more_than(fact: KnownFact, words: list[str]) -> bool:
    """Whether ``words`` ask something of the fact's subject that the fact never mentions
    ("do sharks sleep": "sleep" is nowhere in the fact about sharks' bones)."""
    return says_less(fact.text, fact.asks, fact.keys, words)


def says_less(text: str, asks: tuple[str, ...], keys: tuple[tuple[str, ...], ...],
              words: list[str]) -> bool:
    """Whether a question of ``words`` asks for something that an answer (its ``text``,
    example questions ``asks`` and keyword sets ``keys``) never mentions."""
    said = {w for line in (text, *asks) for w in words_of(line)}
    said |= {k.rstrip("*") for keyset in keys for k in keyset}
    stems = {w[:4] for w in said if len(w) >= 4} | said
    keyed = {w for w in words if any(key_matches(k, w) or w.startswith(k.rstrip("*"))
                                     for keyset in keys for k in keyset)}
    for word in words:
        if word in ASKED_FILLER or word in keyed or len(word) < 3:
            continue
        if word not in stems and word[:4] not in stems:
            return True
    return False


def _key_index(facts: tuple[KnownFact, ...]) -> tuple[dict[str, set[int]], list[tuple[str, int]]]:
    """Word form -> facts using it as a keyword, and (prefix, fact) for ``word*`` keywords."""
    forms: dict[str, set[int]] = {}
    prefixes: set[tuple[str, int]] = set()
    for index, fact in enumerate(facts):
        for key in {k for keys in fact.keys for k in keys}:
            if key.endswith("*"):
                prefixes.add((key[:-1], index))
                continue
            variants = {key, key + "s", key + "es"}
            if key.endswith("y"):
                variants.add(key[:-1] + "ies")
            for variant in variants:
                forms.setdefault(variant, set()).add(index)
    return forms, sorted(prefixes)


def _rarity(facts: tuple[KnownFact, ...]) -> dict[str, float]:
    """How rare each keyword is across the facts: 1 / the number of facts that use it."""
    users: dict[str, set[str]] = {}
    for fact in facts:
        for keys in fact.keys:
            for key in keys:
                users.setdefault(key, set()).add(fact.id)
    return {key: 1.0 / len(ids) for key, ids in users.items()}


def _overlap(fact: KnownFact, words: list[str]) -> int:
    keys = {k for keyset in fact.keys for k in keyset}
    return sum(1 for w in set(words) if any(key_matches(k, w) for k in keys))


def load_knowledge(age_band: str, directory: Path = CONTENT_DIR) -> tuple[KnownFact, ...]:
    """The checked facts for ``age_band`` from ``knowledge.json``; raises
    :class:`ContentError` naming the fact and field when the file is malformed. The built-in
    pack is read once; an installed one is read afresh (a staging folder reuses its path)."""
    if Path(directory) == CONTENT_DIR:
        return _built_in(age_band)
    return _load(age_band, Path(directory))


@lru_cache(maxsize=4)
def _built_in(age_band: str) -> tuple[KnownFact, ...]:
    return _load(age_band, CONTENT_DIR)


def _load(age_band: str, directory: Path) -> tuple[KnownFact, ...]:
    if age_band not in AGE_BANDS:
        raise ContentError(f"age band {age_band!r} is not one of {', '.join(AGE_BANDS)}")
    data = _read_optional(directory, KNOWLEDGE_FILE)
    items = data.get("facts") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ContentError(f"{KNOWLEDGE_FILE} has no 'facts' list — restore the content pack")
    facts = tuple(_fact(i, item) for i, item in enumerate(items)
                  if age_band in _ages(i, item))
    ids = [f.id for f in facts]
    if len(ids) != len(set(ids)):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise ContentError(f"{KNOWLEDGE_FILE} repeats fact ids {', '.join(twice)} — make them "
                           "unique")
    return facts


def _ages(index: int, item: Any) -> tuple[str, ...]:
    ages = item.get("ages", DEFAULT_AGES) if isinstance(item, dict) else None
    if not isinstance(ages, list | tuple) or not set(ages) <= set(AGE_BANDS):
        raise ContentError(f"{KNOWLEDGE_FILE} fact {index}: 'ages' must list bands from "
                           f"{', '.join(AGE_BANDS)}")
    return tuple(ages)


def _fact(index: int, item: dict[str, Any]) -> KnownFact:
    name = item.get("id", index)
    for field in ("id", "topic", "text", "source"):
        if not isinstance(item.get(field), str) or not item[field].strip():
            raise ContentError(f"{KNOWLEDGE_FILE} fact {name!r}: '{field}' must be a "
                               "non-empty string")
    if item["topic"] not in TOPICS:
        raise ContentError(f"{KNOWLEDGE_FILE} fact {name!r}: topic {item['topic']!r} is not "
                           f"one of {', '.join(TOPICS)}")
    asks, keys = item.get("ask"), item.get("keys")
    if not isinstance(asks, list) or not asks or not all(isinstance(a, str) for a in asks):
        raise ContentError(f"{KNOWLEDGE_FILE} fact {name!r}: 'ask' must list example questions")
    if (not isinstance(keys, list) or not keys or not all(
            isinstance(k, list) and k and all(isinstance(w, str) and w for w in k)
            for k in keys)):
        raise ContentError(f"{KNOWLEDGE_FILE} fact {name!r}: 'keys' must list keyword lists")
    return KnownFact(item["id"], item["topic"], tuple(asks),
                     tuple(tuple(w.lower() for w in k) for k in keys), item["text"],
                     item["source"])
