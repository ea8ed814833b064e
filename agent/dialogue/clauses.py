"""Run-on lines split into clauses: "owl ok stop the quiz how do volcanoes erupt".

A recogniser gives no punctuation, so a new clause starts at a sentence mark when there is
one, and otherwise before "ok", "actually", "wait", a new request ("i want", "let's") or a
question word that does not continue the sentence before it ("i know how" does).
The engine answers the last clause that asks for something; a "stop" earlier in the line
only ends the game in progress.
"""

from __future__ import annotations

import re

_MARKS = re.compile(r"\s*[.!?;]+\s*")
_STARTERS = frozenset({"ok", "okay", "actually", "wait", "anyway", "oh wait"})
_REQUESTS = (("i", "want"), ("i", "wanna"), ("lets",), ("let's",), ("can", "we"))
_QUESTIONS = frozenset({"how", "why", "whats", "what's", "where", "what"})
_CONTINUES = frozenset({
    "know", "about", "me", "you", "is", "and", "or", "that", "wonder", "say", "ask", "asked",
    "see", "tell", "to", "of", "like", "from", "guess", "remember", "matter", "no", "not",
    "dont", "don't", "idea", "sure", "learn", "show", "teach", "forgot", "care", "for", "on",
    "mind", "said", "hear", "heard", "understand", "was", "somehow", "explain"})
_FILLERS = frozenset({"ok", "okay", "um", "umm", "er", "so", "well", "wait", "actually",
                      "teddy", "please", "anyway", "hmm", "oh"})


def split(text: str) -> list[str]:
    """The clauses of ``text`` in order (one when it is a single sentence)."""
    clauses: list[str] = []
    for sentence in _MARKS.split(text.lower()):
        clauses.extend(_split_words(sentence.split()))
    return [c for c in clauses if c]


def _split_words(words: list[str]) -> list[str]:
    clauses: list[list[str]] = [[]]
    for index, word in enumerate(words):
        if index > 0 and _starts_clause(words, index):
            clauses.append([])
        clauses[-1].append(word)
    return [" ".join(c) for c in clauses if c]


def _starts_clause(words: list[str], index: int) -> bool:
    word, before = words[index], words[index - 1]
    if word in _STARTERS and before not in ("its", "it's", "is", "was", "feel", "be", "im"):
        return True
    if any(tuple(words[index:index + len(r)]) == r for r in _REQUESTS):
        return before not in ("dont", "don't", "not", "and", "if", "what", "because")
    return word in _QUESTIONS and before not in _CONTINUES and index >= 1 and \
        before not in _QUESTIONS


def is_filler(clause: str) -> bool:
    """Whether a clause carries no request of its own ("ok", "teddy", "um")."""
    words = clause.split()
    return not words or all(w in _FILLERS for w in words)
