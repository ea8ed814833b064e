"""Composing replies from the content pack, the same way for ``reply`` and ``all_replies``.

Every composer takes the variants it joins as arguments; ``one`` picks them at random for a
turn, ``every_*`` walks all of them. Replies stay short: at most :data:`MAX_WORDS` words,
which espeak-ng says in under nine seconds at its default 175 words a minute.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from agent.dialogue.content import ContentPack, Fact, Joke, Song, Story
from agent.dialogue.state import DialogueState

MAX_WORDS = 25
"""Most words in one reply: under 9 seconds at espeak-ng's 175 words a minute."""


def fit(body: str, prefix: str = "", suffix: str = "") -> str:
    """``prefix body suffix``, dropping the suffix, then the prefix, to stay short."""
    for parts in ((prefix, body, suffix), (prefix, body), (body, suffix), (body,)):
        text = " ".join(p for p in parts if p)
        if len(text.split()) <= MAX_WORDS:
            return text
    return body


class Speech:
    """Phrase templates and composers for one content pack."""

    def __init__(self, pack: ContentPack) -> None:
        self.pack = pack
        """The content pack the phrases come from."""

    def variants(self, key: str, *path: str) -> tuple[str, ...]:
        """The raw variants of a phrase for the pack's age band."""
        return self.pack.phrase_variants(key, *path)

    def one(self, state: DialogueState, key: str, *path: str, **fields: object) -> str:
        """One variant of a phrase, filled in, chosen by the state's random source."""
        state.act(".".join((key, *path)))
        variants = self.variants(key, *path)
        text = state.rng.choice(variants).format(**fields)
        if text == state.last_reply and len(variants) > 1:  # never the same words twice running
            text = state.rng.choice([v for v in variants
                                     if v.format(**fields) != text] or variants).format(**fields)
        return text

    def every(self, key: str, *path: str, **fields: object) -> Iterator[str]:
        """Every variant of a phrase, filled in."""
        for variant in self.variants(key, *path):
            yield variant.format(**fields)

    # Stories ------------------------------------------------------------------------
    def story_part(self, state: DialogueState, story: Story, index: int) -> str:
        """Part ``index`` of ``story`` with its intro or continuation prompt."""
        intro = self.one(state, "story_intro", title=story.title)
        prompt = self.one(state, "more_prompt")
        return self._story(story, index, intro, prompt)

    def every_story_part(self, story: Story, index: int) -> Iterator[str]:
        """Every way part ``index`` of ``story`` can be said."""
        intros = list(self.every("story_intro", title=story.title))
        for intro, prompt in itertools.product(intros, self.every("more_prompt")):
            yield self._story(story, index, intro, prompt)

    def _story(self, story: Story, index: int, intro: str, prompt: str) -> str:
        last = index == len(story.parts) - 1
        suffix = self.variants("the_end")[0] if last else prompt
        return fit(story.parts[index], intro if index == 0 else "", suffix)

    # Jokes and riddles ----------------------------------------------------------------
    def joke(self, state: DialogueState, joke: Joke) -> str:
        """A joke, set-up and punch line."""
        return fit(f"{joke.question} {joke.answer}", self.one(state, "joke_intro"))

    def every_joke(self, joke: Joke) -> Iterator[str]:
        """Every way a joke can be told."""
        for intro in self.every("joke_intro"):
            yield fit(f"{joke.question} {joke.answer}", intro)

    def riddle_question(self, state: DialogueState, riddle: Joke) -> str:
        """Asking a riddle."""
        return fit(riddle.question, self.one(state, "riddle_intro"))

    def riddle_answer(self, state: DialogueState, riddle: Joke, right: bool) -> str:
        """Answering a riddle after the child's guess."""
        return fit(riddle.answer, self.one(state, "riddle_right" if right else "riddle_reveal"))

    def every_riddle(self, riddle: Joke) -> Iterator[str]:
        """Every way a riddle can be asked and answered."""
        for intro in self.every("riddle_intro"):
            yield fit(riddle.question, intro)
        for key in ("riddle_right", "riddle_reveal"):
            for lead in self.every(key):
                yield fit(riddle.answer, lead)

    # Songs and facts --------------------------------------------------------------------
    def song(self, state: DialogueState, song: Song) -> str:
        """A song with its title when there is room."""
        return fit(song.text, self.one(state, "song_intro", title=song.title))

    def every_song(self, song: Song) -> Iterator[str]:
        """Every way a song can be sung."""
        for intro in self.every("song_intro", title=song.title):
            yield fit(song.text, intro)

    def fact(self, state: DialogueState, fact: Fact) -> str:
        """A fact with a lead-in."""
        return fit(fact.text, self.one(state, "fact_intro"))

    def every_fact(self, fact: Fact) -> Iterator[str]:
        """Every way a fact can be given."""
        for intro in self.every("fact_intro"):
            yield fit(fact.text, intro)
