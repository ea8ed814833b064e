"""Choosing a story by what the child asked for: "a story about a robot", "a detective story",
"a story but not a baby one".

Stories carry the subjects they are about (``about`` in ``stories.json``). A subject the child
names picks a story about it; when none is about it, the bear says so and offers the closest
(by meaning with the sentence model, else the first story of the band) instead of telling
another subject as if it were the one asked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.dialogue.content import Story
from agent.dialogue.knowledge import key_matches, words_of
from agent.dialogue.semantic import Encoder

_ABOUT = re.compile(r"\bstor(?:y|ies) (?:about|with|of|on|for) (?:a |an |the |some |my )?"
                    r"([a-z]+(?: [a-z]+)?)")
_BEFORE = re.compile(r"\b(?:a|an|the|another|one|some|your) ([a-z]+) stor(?:y|ies)\b")
_OLDER = re.compile(
    r"\bnot (?:a |too )?(?:baby|babyish|little kid|kiddie|kids)\b|\bgrown ?up stor"
    r"|\b(?:older|big) kids?\b|\bfor my age\b|\b(?:harder|proper|exciting|real) stor"
    r"|\bnot for babies\b|\bim (?:ten|eleven|twelve|nine|10|11|12|9)\b")
NOT_SUBJECTS = frozenset({
    "good", "nice", "new", "other", "another", "different", "short", "long", "little", "big",
    "real", "true", "cool", "fun", "best", "great", "bedtime", "baby", "one", "more", "me",
    "you", "us", "it", "that", "this", "same", "proper", "exciting", "grown", "older",
    "harder", "whole", "next", "last", "first", "please", "quick", "sleepy", "your", "a",
    "kid", "kids", "stories", "story", "tell", "read", "now"})
"""Words before or after "story" that are not a subject."""


@dataclass(frozen=True)
class StoryChoice:
    """What a story request asked for and what the band has."""

    subject: str | None
    """The subject named ("robot"), if any."""
    stories: tuple[Story, ...]
    """The stories that fit (any one may be told); empty when none does."""
    closest: Story | None = None
    """The story to offer instead, when none is about the subject."""


def subject_of(text: str) -> str | None:
    """The subject a story request names ("tell me a story about a robot" -> "robot")."""
    cleaned = " ".join(words_of(text))
    for pattern in (_ABOUT, _BEFORE):
        match = pattern.search(cleaned)
        if match:
            words = [w for w in match.group(1).split() if w not in NOT_SUBJECTS]
            if words:
                return words[0]
    return None


def wants_older(text: str) -> bool:
    """Whether the child asked for a story that is not babyish."""
    return bool(_OLDER.search(" ".join(words_of(text))))


def about(story: Story, subject: str) -> bool:
    """Whether ``story`` is about ``subject`` (its tags or title words, plurals allowed)."""
    tags = (*story.about, *words_of(story.title))
    return any(key_matches(tag, subject) or key_matches(subject, tag) for tag in tags)


def choose(stories: tuple[Story, ...], text: str,
           embedder: Encoder | None = None) -> StoryChoice | None:
    """The story ``text`` asks for, or None when it names no subject and wants no older one."""
    subject = subject_of(text)
    pool = older(stories) if wants_older(text) else stories
    if subject is None:
        return StoryChoice(None, pool) if pool is not stories else None
    fitting = tuple(s for s in pool if about(s, subject)) or tuple(
        s for s in stories if about(s, subject))
    if fitting:
        return StoryChoice(subject, fitting)
    return StoryChoice(subject, (), closest(pool or stories, subject, embedder))


def older(stories: tuple[Story, ...]) -> tuple[Story, ...]:
    """Stories written for the oldest band only (falling back to all when there are none)."""
    only_older = tuple(s for s in stories if set(s.ages) == {"9-12"})
    return only_older or stories


def closest(stories: tuple[Story, ...], subject: str, embedder: Encoder | None) -> Story:
    """The story nearest in meaning to ``subject`` (the first one without a model)."""
    if embedder is None or len(stories) < 2:
        return stories[0]
    texts = [f"{s.title}. {' '.join(s.about)}" for s in stories]
    vectors = embedder.encode([subject, *texts])
    scores = vectors[1:] @ vectors[0]
    return stories[int(scores.argmax())]
