"""What the bear just offered, read from its own question, so a "yes" takes it up.

"Shall I tell you a story about a little rabbit?" offers a story (about a rabbit); "Want a
joke, a riddle or a fun fact?" offers the first thing named: a child who says "yes" gets
something, never the same menu again.
"""

from __future__ import annotations

import re

_OFFERS = (
    ("animal sounds", "animal_sounds"), ("animal quiz", "animal_sounds"),
    ("would you rather", "would_you_rather"), ("story", "story"), ("stories", "story"),
    ("song", "song"), ("sing", "song"), ("joke", "joke"), ("riddle", "riddle"),
    ("fun fact", "fact"), ("fact", "fact"), ("wind down", "bedtime"), ("sleepy story", "story"),
    ("game", "game"), ("play", "game"),
)
_STATED = re.compile(r"\bif you (?:want|would like|'d like|fancy)\b|\bjust ask for\b")
"""An offer made without a question ("I'm here if you want a story or a game.")."""
_ABOUT = re.compile(r"\babout (?:a |an |the )?(?:little |big )?([a-z]+)")


def offer_in(question: str) -> tuple[str | None, str | None]:
    """The offer in the bear's ``question`` and what a story should be about, if any."""
    lowered = question.lower()
    found = [(m.start(), kind) for word, kind in _OFFERS
             for m in re.finditer(rf"\b{word}\b", lowered)]
    if not found:
        return None, None
    specific = [f for f in found if f[1] != "game"]  # "play animal sounds" offers that game
    kind = min(specific or found)[1]
    about = _ABOUT.search(lowered) if kind == "story" else None
    return kind, about.group(1) if about else None


def makes_offer(reply: str) -> bool:
    """Whether the bear's ``reply`` may offer something: a question, or a stated offer
    ("I'm here if you want a story or a game."), so the child's "yes" takes it up."""
    return reply.rstrip().endswith("?") or bool(_STATED.search(reply.lower()))
