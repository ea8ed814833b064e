"""Recognise what the child wants from a few whole-word phrases per intent."""

from __future__ import annotations

import re
from collections.abc import Mapping

_NOT_WORD = re.compile(r"[^a-z0-9' ]+")
_SPACES = re.compile(r"\s+")


def clean(text: str) -> str:
    """Lower-case, punctuation to spaces, single-spaced, curly apostrophes straightened."""
    text = text.lower().replace("\u2019", "'")
    return _SPACES.sub(" ", _NOT_WORD.sub(" ", text)).strip()


class IntentMatcher:
    """One compiled pattern per intent; an intent is present when any phrase occurs."""

    def __init__(self, intents: Mapping[str, tuple[str, ...]]) -> None:
        self._patterns = {
            name: re.compile(
                r"(?<![a-z0-9'])(?:"
                + "|".join(re.escape(clean(p)) for p in sorted(phrases, key=len, reverse=True))
                + r")(?![a-z0-9'])"
            )
            for name, phrases in intents.items()
            if phrases
        }

    def find(self, text: str) -> set[str]:
        """Names of the intents present in ``text``."""
        cleaned = clean(text)
        return {name for name, pattern in self._patterns.items() if pattern.search(cleaned)}

    def after(self, intent: str, text: str) -> str:
        """The cleaned text after the first phrase of ``intent`` ("" if absent)."""
        match = self._patterns[intent].search(clean(text))
        return clean(text)[match.end():].strip() if match else ""
