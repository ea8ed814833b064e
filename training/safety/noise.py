"""Recogniser noise for children's lines: what a speech recogniser makes of a child's words.

Seeded and deterministic: the same ``random.Random`` gives the same lines. Used by the corpus
builder (training) and, with its own seed, once by the frozen-set writer (the frozen files are
committed and never regenerated for tuning).
"""

from __future__ import annotations

import random
import re

FILLERS = ("um", "uh", "erm", "like", "so", "and", "um um", "hmm", "ok so", "you know")
"""Hesitations a recogniser writes down."""
MISSPELL = {
    "because": ("cause", "cuz", "becos"), "want": ("wanna", "wont"), "going to": ("gonna",),
    "you": ("u", "ya"), "your": ("ur", "you"), "are": ("r",), "mummy": ("mommy", "mum", "mama"),
    "daddy": ("dad", "dada"), "didnt": ("didn", "did not"), "dont": ("don", "do not"),
    "im": ("i am", "am"), "said": ("sed", "say"), "the": ("da", "a"), "them": ("dem",),
    "really": ("rilly", "realy"), "something": ("somethin", "sumthing"), "nothing": ("nuffin",),
    "with": ("wiv", "wif"), "there": ("their", "they"), "people": ("peoples",),
    "tablets": ("tablet", "tablits"), "medicine": ("medsin", "medicin"), "secret": ("secrit",),
    "friend": ("fren", "frend"), "little": ("lil", "littel"), "brother": ("bruvver", "bro"),
    "sister": ("sis", "sista"), "school": ("skool",), "going": ("goin",), "what": ("wot", "wat"),
    "my": ("me", "ma"), "that": ("dat",), "this": ("dis",),
    "kill": ("kil",), "myself": ("meself", "my self"), "promise": ("promis",),
}
"""Word -> how a recogniser or a young speaker may render it."""


def clean(text: str) -> str:
    """Lower case, no punctuation, single spaces: how the recogniser gives a line."""
    text = text.lower().replace("'", "")
    text = re.sub(r"[^a-z0-9 ]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def noisy(text: str, rng: random.Random, strength: int = 2) -> str:
    """``text`` with up to ``strength`` recogniser slips: fillers, misspellings, repeats,
    a dropped short word."""
    words = clean(text).split()
    for _ in range(rng.randint(1, max(1, strength))):
        kind = rng.random()
        if kind < 0.3 and words:
            words.insert(rng.randrange(len(words) + 1), rng.choice(FILLERS))
        elif kind < 0.65:
            joined = " ".join(words)
            keys = [k for k in MISSPELL if re.search(rf"\b{k}\b", joined)]
            if keys:
                key = rng.choice(keys)
                joined = re.sub(rf"\b{key}\b", rng.choice(MISSPELL[key]), joined, count=1)
                words = joined.split()
        elif kind < 0.85 and words:
            i = rng.randrange(len(words))
            words.insert(i, words[i])
        elif len(words) > 5:
            short = [i for i, w in enumerate(words) if w in ("a", "the", "to", "is", "and")]
            if short:
                del words[rng.choice(short)]
    return " ".join(words)


def run_on(first: str, second: str, rng: random.Random) -> str:
    """Two lines said in one breath, the way a child runs them together."""
    glue = rng.choice(("and", "and then", "and um", "but", "also", "so", ""))
    return clean(f"{first} {glue} {second}")
