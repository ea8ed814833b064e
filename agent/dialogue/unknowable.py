"""Questions nobody can answer from a book: the future, and the child's own uncounted things.

"what will i get for christmas", "who will win the world cup next year", "how many hairs are
on my head", "how far is it to my grandmas house": a fact about presents, football, hair or
distance is near the words but does not answer them, so the bear says honestly that it
cannot know rather than answering with a near fact or starting a story.
"""

from __future__ import annotations

import re

_WH = r"(?:what|whats|what's|who|whos|who's|when|where|which|how|how many|how much|will|is|are)"
_FUTURE = re.compile(
    rf"^(?:(?:hey|so|teddy|um|and|but) )*{_WH}\b.*\b(?:will|gonna|going to)\b"
    r"|\b(?:next (?:year|week|month|time)|tomorrow|when i grow up|in the future)\b"
    r"|^(?:will|is it going to|am i going to|is my|are we going to) ")
_FUTURE_WORDS = re.compile(r"\b(?:get|win|bring|buy|happen|be|rain|snow|snowing|raining|come"
                           r"|say|do|give|have|grow|look|marry|live|die)\b")
_MINE = re.compile(
    r"^(?:(?:hey|so|teddy|um|and|but) )*(?:how many|how much|how far|how long|how old|what time"
    r"|whats|what's|what is|where is|wheres|where's|who is|whos|who's)\b.*"
    r"\b(?:my|our|mine|i|me|im)\b")
_COUNTED = re.compile(r"^(?:(?:hey|so|teddy|um|and|but) )*how (?:many|much|far|long|old)\b")
_ABOUT_BEAR_OR_NAME = re.compile(r"\bname\b|\bcalled\b|\byou\b|\byour\b|\bwe\b|\bus\b"
                                 r"|\blets\b|\bnext$|\bnext (?:bit|part|one|page|chapter)\b")
"""Questions about the bear, the child's name, what to do together or what comes next in a
story: answered elsewhere, never declined as unknowable."""
_SCIENCE = re.compile(r"\bif\b|\b(?:body|bones?|teeth|tooth|heart|blood|brain|muscles?|lungs?"
                      r"|skin|eyes?|stomach)\b")


def cannot_know(cleaned: str) -> bool:
    """Whether ``cleaned`` asks about the future or counts the child's own things: questions
    no fact can answer (the child's name and the bear itself are answered elsewhere)."""
    if _ABOUT_BEAR_OR_NAME.search(cleaned) or _SCIENCE.search(cleaned):
        return False
    if _FUTURE.search(cleaned) and _FUTURE_WORDS.search(cleaned) and _asks(cleaned):
        return True
    return bool(_COUNTED.search(cleaned) and _MINE.search(cleaned))


def _asks(cleaned: str) -> bool:
    return bool(re.match(rf"^(?:(?:hey|so|teddy|um|and|but) )*{_WH}\b", cleaned))
