"""Per-conversation dialogue state: kept in memory only, never stored or synced."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

SPOKEN_KINDS = {"mummy": "mum", "mommy": "mom", "doggy": "dog", "kitty": "cat"}
"""How the bear says a kind the child said in baby words."""


@dataclass
class Referent:
    """Someone or something the child talked about: "my dog rex", "my sister"."""

    kind: str
    """What it is ("dog", "sister", "friend")."""
    name: str | None = None
    """Its name as the child said it, capitalised (never the child's own name)."""
    pronoun: str | None = None
    """"he" or "she" once known."""
    gone: bool = False
    """The child said it died."""

    @property
    def spoken(self) -> str:
        """How the bear says it: the name, else "your dog"."""
        return self.name or f"your {SPOKEN_KINDS.get(self.kind, self.kind)}"


@dataclass
class Memory:
    """What the child just talked about, for "he", "she", "it", "that"."""

    referents: list[Referent] = field(default_factory=list)
    """Pets, family and friends mentioned, most recent last (a few only)."""
    topic: str | None = None
    """Words of the last thing the bear answered about ("volcano"), for "why does it"."""
    share_turns: int = 0
    """Turns left in which "should i send it" still means sharing with a stranger."""
    secret_asked: bool = False
    """The bear just answered "can you keep a secret"."""


@dataclass(frozen=True)
class Privacy:
    """What the bear may truthfully say about keeping the talk: the consent in force."""

    keep: bool = False
    """A parent allowed keeping the turns (encrypted, on the bear)."""
    sync: bool = False
    """Kept turns go to the family's parent app."""
    name: bool = False
    """A parent allowed the bear to use the child's first name."""


@dataclass
class DialogueState:
    """Where one conversation is: the skill in progress, scores, what was said last."""

    skill: str | None = None
    """Skill in progress: "story", "bedtime", "riddle", "animal_sounds", "counting",
    "would_you_rather", or None."""
    last_kind: str | None = None
    """Kind of the last content given ("joke", "fact", "song"...), for "tell me more"."""
    fact_topic: str | None = None
    """Topic of the last fact, so "more" stays on it."""
    story_id: str | None = None
    """Story being told."""
    position: int = 0
    """Next part of the story or bedtime wind-down; next number in counting."""
    item: int = -1
    """Index of the riddle or quiz question being asked."""
    score: int = 0
    """Right answers in the current game."""
    round: int = 0
    """Questions asked in the current game."""
    offer: str | None = None
    """What the bear last offered, taken up by a "yes"."""
    last_reply: str | None = None
    """What the bear said last (for "say that again")."""
    last_item: str | None = None
    """The last joke, song, story part, fact or answer said (for "again": the same one)."""
    last_game: str | None = None
    """The last game played, so "keep playing" after it ends plays it again."""
    listening: bool = False
    """The bear just asked the child to tell it more: a plain statement next is an answer."""
    story_hint: str | None = None
    """A word the offered story should be about ("rabbit")."""
    child_name: str | None = None
    """The child's first name, kept only when the parent allowed it."""
    quiet: bool = False
    """The child asked the bear to stop; it answers only when spoken to again."""
    turns: int = 0
    """Replies given so far."""
    used: dict[str, set[int]] = field(default_factory=dict)
    """Indexes of content already given, per kind, so nothing repeats until all are used."""
    rng: random.Random = field(default_factory=random.Random, repr=False)
    """Random source for variety (seed it for reproducible tests)."""
    memory: Memory = field(default_factory=Memory)
    """What the child just talked about (in memory only, this conversation only)."""
    alert: str | None = None
    """A safety category the last reply wants a parent alerted about ("lures"), or None."""
    privacy: Privacy = field(default_factory=Privacy)
    """The consent in force (set by the conversation each turn), for honest answers."""
    acts: list[str] = field(default_factory=list)
    """What the last reply was made of: phrase sets ("feelings.sad") and skills ("story",
    "answer:volcano", "game:counting"), for measuring and for tests."""

    def act(self, name: str) -> None:
        """Note that this turn's reply used ``name`` (a phrase set or skill)."""
        self.acts.append(name)

    def pick(self, kind: str, count: int, choices: list[int] | None = None) -> int:
        """An index of ``kind`` content not given yet (restarts once all were given)."""
        pool = choices if choices is not None else list(range(count))
        used = self.used.setdefault(kind, set())
        fresh = [i for i in pool if i not in used] or pool
        if len(fresh) == len(pool):
            used.difference_update(pool)
        chosen = self.rng.choice(fresh)
        used.add(chosen)
        return chosen

    def end_skill(self) -> None:
        """Leave the skill in progress."""
        self.skill = None
        self.story_id = None
        self.position = 0
        self.item = -1
        self.score = 0
        self.round = 0
