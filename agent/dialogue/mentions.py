"""Who the child is talking about: pets, family and friends, with names, for "he" and "she".

``note`` reads one (cleaned, redacted) line into :class:`~agent.dialogue.state.Memory`;
``resolve`` finds who a pronoun or a name in a line means. Only names the child gives for
others are kept here, in memory, for this conversation; the child's own name is
``DialogueState.child_name`` and needs the parent's ``name`` consent.
"""

from __future__ import annotations

import re

from agent.dialogue.state import Memory, Referent

MAX_REFERENTS = 6
"""Most referents remembered (the oldest is forgotten first)."""
PETS = frozenset({"dog", "puppy", "doggy", "cat", "kitten", "kitty", "rabbit", "bunny",
                  "hamster", "fish", "goldfish", "pony", "horse", "guinea pig", "bird",
                  "parrot", "tortoise", "turtle", "pet", "budgie", "mouse", "snake"})
SHE = frozenset({"sister", "mum", "mom", "mummy", "mommy", "mother", "grandma", "granny",
                 "nana", "nan", "gran", "auntie", "aunt", "cousin girl", "girlfriend"})
HE = frozenset({"brother", "dad", "daddy", "father", "grandpa", "grandad", "granddad",
                "uncle", "boyfriend"})
PEOPLE = SHE | HE | {"friend", "best friend", "cousin", "teacher", "baby", "neighbour"}
KINDS = PETS | PEOPLE
_KIND = "|".join(sorted((re.escape(k) for k in KINDS), key=len, reverse=True))
NOT_NAMES = frozenset({
    "name", "called", "is", "was", "a", "an", "the", "my", "and", "too", "he", "she", "it",
    "very", "really", "so", "not", "big", "little", "small", "new", "old", "nice", "good",
    "bad", "sad", "happy", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "two", "one", "here", "there", "home", "at", "in", "on", "with", "to", "today", "now",
    "playing", "plays", "died", "dead", "sick", "ill", "poorly", "fluffy", "brown", "black",
    "white", "soft", "mean", "funny", "cute", "naughty", "also", "just", "always", "never"})
_OWN = re.compile(rf"\b(?:my|our|a|an|new) (?:new |little |big |baby |pet |best )?({_KIND})s?\b")
_OWN_NAMED = re.compile(
    rf"\b(?:my|our|a|an) (?:new |little |big |pet |best )?({_KIND}) (?:is |was |s )?"
    rf"(?:called|named) ([a-z]+)\b|\bmy (?:best )?(friend|cousin) ([a-z]+)\b")
_NAMED = re.compile(
    r"\b(?:(?:he|she|it)(?: is| s| was)?|hes|shes|its|(?:his|her|its) name(?: is| was| s)?"
    r"|(?:his|her|its) names) (?:called |named )?([a-z]+)\b")
_NAMED_NEEDS = re.compile(r"\b(?:called|named|name)\b")
_GONE = re.compile(r"\b(?:died|dead|passed away|went to heaven|put to sleep)\b")
_HE = re.compile(r"\b(?:he|him|his|hes|he's)\b")
_SHE = re.compile(r"\b(?:she|her|hers|shes|she's)\b")
_IT = re.compile(r"\b(?:it|its|it's)\b")


def note(memory: Memory, cleaned: str) -> Referent | None:
    """Read ``cleaned`` into ``memory``; the referent it introduced or named, if any."""
    named = _OWN_NAMED.search(cleaned)
    if named:
        name = named.group(2) or named.group(4)
        given = name if _is_name(name) else None
        referent, fresh = _add(memory, named.group(1) or named.group(3), given, cleaned)
        return referent if fresh or given else None
    own = _OWN.search(cleaned)
    if own:
        referent, fresh = _add(memory, singular(own.group(1)), None, cleaned)
        return referent if fresh else None
    plain = _NAMED.search(cleaned)
    if plain and _NAMED_NEEDS.search(cleaned) and _is_name(plain.group(1)):
        found = resolve(memory, cleaned) or _newest(memory)
        referent = found if found is not None else _add(memory, "friend", None, cleaned)[0]
        referent.name = plain.group(1).capitalize()
        _note_pronoun(referent, cleaned)
        return referent
    mentioned = resolve(memory, cleaned)
    if mentioned is not None:
        _note_pronoun(mentioned, cleaned)
        mentioned.gone = mentioned.gone or bool(_GONE.search(cleaned))
    return None


def resolve(memory: Memory, cleaned: str) -> Referent | None:
    """Who ``cleaned`` is about: a remembered name, kind, "he" or "she"; None if nobody."""
    words = set(cleaned.split())
    for referent in reversed(memory.referents):
        if referent.name and referent.name.lower() in words:
            return referent
    for referent in reversed(memory.referents):
        if referent.kind in words or f"{referent.kind}s" in words:
            return referent
    for pattern, pronoun in ((_HE, "he"), (_SHE, "she")):
        if pattern.search(cleaned):
            found = _by_pronoun(memory, pronoun)
            if found is not None:
                return found
    if _IT.search(cleaned):
        return next((r for r in reversed(memory.referents) if r.kind in PETS
                     and r.pronoun is None), None)
    return None


def by_kind(memory: Memory, kind: str) -> Referent | None:
    """The most recent referent of ``kind`` ("cat", "kitten" for "cat"), if any."""
    for referent in reversed(memory.referents):
        if referent.kind == kind or _family(referent.kind) == _family(kind):
            return referent
    return None


def _by_pronoun(memory: Memory, pronoun: str) -> Referent | None:
    for referent in reversed(memory.referents):
        if referent.pronoun == pronoun:
            return referent
        if referent.pronoun is None and _fits(referent.kind, pronoun):
            referent.pronoun = pronoun
            return referent
    return None


def _fits(kind: str, pronoun: str) -> bool:
    if kind in SHE:
        return pronoun == "she"
    if kind in HE:
        return pronoun == "he"
    return True


def _add(memory: Memory, kind: str, name: str | None, cleaned: str) -> tuple[Referent, bool]:
    """The referent of ``kind`` (and ``name``), made most recent; whether it is new."""
    kind = singular(kind)
    existing = by_kind(memory, kind)
    fresh = existing is None or name is not None and existing.name not in (
        None, name.capitalize())
    if existing is not None and not fresh:
        referent = existing
        memory.referents.remove(existing)
    else:
        referent = Referent(kind, pronoun="she" if kind in SHE else "he" if kind in HE else None)
    if name:
        referent.name = name.capitalize()
    referent.gone = referent.gone or bool(_GONE.search(cleaned))
    memory.referents.append(referent)
    del memory.referents[:-MAX_REFERENTS]
    return referent, fresh


def _note_pronoun(referent: Referent, cleaned: str) -> None:
    if referent.pronoun is None:
        if _HE.search(cleaned):
            referent.pronoun = "he"
        elif _SHE.search(cleaned):
            referent.pronoun = "she"


def _newest(memory: Memory) -> Referent | None:
    return memory.referents[-1] if memory.referents else None


def _is_name(word: str | None) -> bool:
    return bool(word) and word is not None and 2 <= len(word) <= 20 and word.isalpha() \
        and word not in NOT_NAMES and word not in KINDS


def singular(kind: str) -> str:
    """"dogs" -> "dog" for the kinds known."""
    return kind[:-1] if kind.endswith("s") and kind[:-1] in KINDS else kind


def _family(kind: str) -> str:
    return {"puppy": "dog", "doggy": "dog", "kitten": "cat", "kitty": "cat",
            "bunny": "rabbit", "mummy": "mum", "mom": "mum", "mommy": "mum",
            "daddy": "dad", "granny": "grandma", "nana": "grandma", "nan": "grandma",
            "gran": "grandma"}.get(kind, kind)
