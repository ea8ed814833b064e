"""The content pack: stories, jokes, riddles, songs, facts, games and phrases, as data.

Everything the bear can say lives in ``content/*.json`` beside this code. This module
reads it once, checks its shape, and hands out what suits one age band.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from agent.dialogue.errors import ContentError

CONTENT_DIR = Path(__file__).with_name("content")
"""Where the packaged content lives."""
AGE_BANDS = ("3-5", "6-8", "9-12")
"""The age bands the content is written for."""
ALL_BANDS = "all"
"""Key of the default variant list in a per-band phrase."""


@dataclass(frozen=True)
class Story:
    """A short story told one part per reply."""

    id: str
    """Stable identifier."""
    title: str
    """Title, said before the first part."""
    parts: tuple[str, ...]
    """The parts, in order."""
    about: tuple[str, ...] = ()
    """Subjects a child may ask for ("robot", "space"), for choosing a story by subject."""
    ages: tuple[str, ...] = AGE_BANDS
    """The age bands the story was written for."""


@dataclass(frozen=True)
class Joke:
    """A joke told in one go, or a riddle asked and answered on the next turn."""

    question: str
    """The set-up or riddle."""
    answer: str
    """The punch line or solution."""
    accept: tuple[str, ...] = ()
    """Words that count as a right guess (riddles only)."""


@dataclass(frozen=True)
class Song:
    """A short original song or rhyme."""

    title: str
    """Title, said before the verse."""
    text: str
    """The verse."""


@dataclass(frozen=True)
class Fact:
    """A true, short fact."""

    topic: str
    """``animals``, ``space`` or ``nature``."""
    text: str
    """The fact."""


@dataclass(frozen=True)
class AnimalSound:
    """One question of the animal sounds quiz."""

    sound: str
    """What the bear says, e.g. "moo"."""
    animal: str
    """The answer with its article, e.g. "a cow"."""
    accept: tuple[str, ...]
    """Words that count as right."""


@dataclass(frozen=True)
class Answer:
    """A short, true answer to a question children ask."""

    id: str
    """Stable identifier."""
    topic: str
    """Subject ("space", "dinosaurs"...), so "tell me more" stays on it."""
    asks: tuple[str, ...]
    """Example questions it answers (matched by meaning)."""
    keys: tuple[tuple[str, ...], ...]
    """Keyword sets: without the model, every word of one set must start a word of the text."""
    text: str
    """The answer."""


@dataclass(frozen=True)
class ContentPack:
    """Everything the bear can say for one age band."""

    age_band: str
    """The band this pack was cut for."""
    stories: tuple[Story, ...]
    """Stories for the band."""
    jokes: tuple[Joke, ...]
    """Jokes for the band."""
    riddles: tuple[Joke, ...]
    """Riddles for the band."""
    songs: tuple[Song, ...]
    """Songs and rhymes for the band."""
    facts: tuple[Fact, ...]
    """Facts for the band."""
    animal_sounds: tuple[AnimalSound, ...]
    """Animal sounds quiz questions."""
    would_you_rather: tuple[str, ...]
    """Would-you-rather questions for the band."""
    reactions: tuple[str, ...]
    """What the bear says after a would-you-rather answer."""
    counting_step: int
    """Counting game: the step between numbers."""
    counting_target: int
    """Counting game: the number to reach."""
    rounds: int
    """Questions per quiz game."""
    phrases: dict[str, Any]
    """Phrase templates (see ``phrases.json``), not yet cut for the band."""
    intents: dict[str, tuple[str, ...]]
    """Intent name -> phrases that signal it."""
    exemplars: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Intent name -> example phrasings, matched by meaning (``exemplars.json``)."""
    answers: tuple[Answer, ...] = ()
    """Answers to children's questions for the band (``answers.json``)."""

    def phrase_variants(self, key: str, *path: str) -> tuple[str, ...]:
        """The variants of phrase ``key`` (then ``path`` inside it) for this band."""
        node: Any = self.phrases
        for part in (key, *path):
            if not isinstance(node, dict) or part not in node:
                raise ContentError(f"content pack has no phrase {'.'.join((key, *path))!r} — "
                                   f"add it to {CONTENT_DIR / 'phrases.json'}")
            node = node[part]
        if isinstance(node, dict):
            node = node.get(self.age_band, node.get(ALL_BANDS))
        if not node or not isinstance(node, list):
            raise ContentError(f"phrase {'.'.join((key, *path))!r} has no variants for age "
                               f"band {self.age_band} — add them or an 'all' list")
        return tuple(node)


def _read(directory: Path, name: str) -> dict[str, Any]:
    path = directory / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ContentError(f"content file {path} is missing — restore the content pack") from None
    except json.JSONDecodeError as exc:
        raise ContentError(f"content file {path} is not valid JSON: {exc}") from None


def _read_optional(directory: Path, name: str) -> dict[str, Any]:
    """A file added after the first packs: an installed pack without it uses the built-in one."""
    return _read(directory if (directory / name).exists() else CONTENT_DIR, name)


def _answers(band: str, data: dict[str, Any]) -> tuple[Answer, ...]:
    return tuple(Answer(a["id"], a["topic"], tuple(a["ask"]), tuple(tuple(k) for k in a["keys"]),
                        a["text"]) for a in _for(band, data["answers"]))


def _for(band: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for item in items if band in item.get("ages", AGE_BANDS)]


@lru_cache(maxsize=8)
def load_pack(age_band: str = "6-8", directory: Path = CONTENT_DIR) -> ContentPack:
    """Read the content pack and cut it for ``age_band`` (cached)."""
    if age_band not in AGE_BANDS:
        raise ContentError(f"age band {age_band!r} is not one of {', '.join(AGE_BANDS)} — "
                           "set dialogue.age_band to one of them")
    stories = _read(directory, "stories.json")["stories"]
    jokes = _read(directory, "jokes.json")
    songs = _read(directory, "songs.json")["songs"]
    facts = _read(directory, "facts.json")["facts"]
    games = _read(directory, "games.json")
    counting = games["counting"][age_band]
    pack = ContentPack(
        age_band=age_band,
        stories=tuple(Story(s["id"], s["title"], tuple(s["parts"]), tuple(s.get("about", ())),
                            tuple(s.get("ages", AGE_BANDS))) for s in _for(age_band, stories)),
        jokes=tuple(Joke(j["q"], j["a"]) for j in _for(age_band, jokes["jokes"])),
        riddles=tuple(Joke(r["q"], r["a"], tuple(r["accept"]))
                      for r in _for(age_band, jokes["riddles"])),
        songs=tuple(Song(s["title"], s["text"]) for s in _for(age_band, songs)),
        facts=tuple(Fact(f["topic"], f["text"]) for f in _for(age_band, facts)),
        animal_sounds=tuple(AnimalSound(a["sound"], a["animal"], tuple(a["accept"]))
                            for a in _for(age_band, games["animal_sounds"])),
        would_you_rather=tuple(w["text"] for w in _for(age_band, games["would_you_rather"])),
        reactions=tuple(games["would_you_rather_reactions"]),
        counting_step=int(counting["step"]),
        counting_target=int(counting["target"]),
        rounds=int(games["rounds"]),
        phrases=_read(directory, "phrases.json"),
        intents={k: tuple(v) for k, v in _read(directory, "intents.json").items()
                 if not k.startswith("_")},
        exemplars={k: tuple(v) for k, v in _read_optional(directory, "exemplars.json").items()
                   if not k.startswith("_")},
        answers=_answers(age_band, _read_optional(directory, "answers.json")),
    )
    _check_not_empty(pack)
    return pack


def _check_not_empty(pack: ContentPack) -> None:
    for name in ("stories", "jokes", "riddles", "songs", "facts", "would_you_rather"):
        if not getattr(pack, name):
            raise ContentError(f"content pack has no {name} for age band {pack.age_band} — "
                               f"add some with \"ages\" including {pack.age_band!r}")
