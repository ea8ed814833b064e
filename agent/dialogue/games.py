"""Games that work by voice alone: animal sounds quiz, counting, would you rather, riddles."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from agent.dialogue.content import ContentPack
from agent.dialogue.intents import clean
from agent.dialogue.numbers import number_word, parse_number
from agent.dialogue.speech import Speech, fit
from agent.dialogue.state import DialogueState

GAMES = ("riddle", "animal_sounds", "counting", "would_you_rather")
"""Skills that take the child's next words as an answer."""


def start(say: Speech, pack: ContentPack, state: DialogueState, game: str) -> str:
    """Start ``game`` and ask its first question."""
    state.end_skill()
    state.offer = None
    state.skill = game
    if game == "animal_sounds":
        state.item = state.pick("animal", len(pack.animal_sounds))
        question = say.one(state, "animal_question", sound=pack.animal_sounds[state.item].sound)
        return fit(question, say.one(state, "animal_start"))
    if game == "counting":
        state.position = 2 * pack.counting_step
        return say.one(state, "count_start", target=number_word(pack.counting_target),
                       number=number_word(pack.counting_step))
    if game == "would_you_rather":
        state.item = state.pick("wyr", len(pack.would_you_rather))
        return fit(pack.would_you_rather[state.item], say.one(state, "wyr_start"))
    raise ValueError(f"unknown game {game!r}")


def answer(say: Speech, pack: ContentPack, state: DialogueState, text: str,
           intents: set[str]) -> str | None:
    """The game's reply to the child's answer, or None when it was no answer at all."""
    if state.skill == "riddle":
        riddle = pack.riddles[state.item]
        words = set(clean(text).split())
        right = any(a in words for a in riddle.accept)
        state.end_skill()
        state.last_kind = "riddle"
        return say.riddle_answer(state, riddle, right)
    if state.skill == "animal_sounds":
        return _animal_answer(say, pack, state, text)
    if state.skill == "counting":
        return _count_answer(say, pack, state, text)
    if state.skill == "would_you_rather":
        return _wyr_answer(say, pack, state)
    return None


def _animal_answer(say: Speech, pack: ContentPack, state: DialogueState, text: str) -> str:
    asked = pack.animal_sounds[state.item]
    words = set(clean(text).split())
    right = bool(words.intersection(asked.accept))
    state.score += int(right)
    state.round += 1
    verdict = say.one(state, "animal_right" if right else "animal_wrong", animal=asked.animal)
    if state.round >= pack.rounds:
        done = say.one(state, "animal_done", score=number_word(state.score),
                        rounds=number_word(pack.rounds))
        state.end_skill()
        state.offer = "animal_sounds"
        return fit(done, verdict)
    state.item = state.pick("animal", len(pack.animal_sounds))
    question = say.one(state, "animal_question", sound=pack.animal_sounds[state.item].sound)
    return fit(question, verdict)


def _count_answer(say: Speech, pack: ContentPack, state: DialogueState, text: str) -> str | None:
    said = parse_number(text, allow_homophones=True)
    if said is None:
        state.end_skill()
        return None
    step, target, expected = pack.counting_step, pack.counting_target, state.position
    if said == expected:
        number = expected + step
        reply_key, fields = "count_next", {}
    else:
        number = expected + step
        reply_key, fields = "count_wrong", {"expected": number_word(expected)}
    if number >= target or expected >= target:
        state.end_skill()
        return say.one(state, "count_done", target=number_word(target))
    state.position = number + step
    return say.one(state, reply_key, number=number_word(number),
                   Number=number_word(number).capitalize(), **fields)


def _wyr_answer(say: Speech, pack: ContentPack, state: DialogueState) -> str:
    reaction = state.rng.choice(pack.reactions)
    state.round += 1
    if state.round >= pack.rounds:
        state.end_skill()
        return fit(say.one(state, "wyr_done"), reaction)
    state.item = state.pick("wyr", len(pack.would_you_rather))
    return fit(pack.would_you_rather[state.item], reaction)


def every(say: Speech, pack: ContentPack) -> Iterator[str]:
    """Every reply the games can produce."""
    yield from _every_reask(say, pack)
    yield from _every_animal(say, pack)
    yield from _every_count(say, pack)
    for question, start_line in itertools.product(pack.would_you_rather, say.every("wyr_start")):
        yield fit(question, start_line)
    for reaction in pack.reactions:
        for question in pack.would_you_rather:
            yield fit(question, reaction)
        for done in say.every("wyr_done"):
            yield fit(done, reaction)


def _every_animal(say: Speech, pack: ContentPack) -> Iterator[str]:
    questions = [q for a in pack.animal_sounds for q in say.every("animal_question", sound=a.sound)]
    for question, start_line in itertools.product(questions, say.every("animal_start")):
        yield fit(question, start_line)
    for asked in pack.animal_sounds:
        verdicts = [*say.every("animal_right", animal=asked.animal),
                    *say.every("animal_wrong", animal=asked.animal)]
        for verdict, question in itertools.product(verdicts, questions):
            yield fit(question, verdict)
        for verdict, score in itertools.product(verdicts, range(pack.rounds + 1)):
            for done in say.every("animal_done", score=number_word(score),
                                  rounds=number_word(pack.rounds)):
                yield fit(done, verdict)


def _every_count(say: Speech, pack: ContentPack) -> Iterator[str]:
    step, target = pack.counting_step, pack.counting_target
    yield from say.every("count_start", target=number_word(target), number=number_word(step))
    yield from say.every("count_done", target=number_word(target))
    for number in range(step, target + 1, step):
        words = {"number": number_word(number), "Number": number_word(number).capitalize()}
        yield from say.every("count_next", **words)
        yield from say.every("count_wrong", expected=number_word(number - step), **words)


def reask(say: Speech, pack: ContentPack, state: DialogueState) -> str:
    """"Keep playing" in the middle of a game: the same game goes on with its question."""
    keep = say.one(state, "keep_playing")
    if state.skill == "riddle":
        return fit(pack.riddles[state.item].question, keep)
    if state.skill == "animal_sounds":
        question = say.one(state, "animal_question", sound=pack.animal_sounds[state.item].sound)
        return fit(question, keep)
    if state.skill == "would_you_rather":
        return fit(pack.would_you_rather[state.item], keep)
    last = number_word(max(0, state.position - pack.counting_step))
    return fit(say.one(state, "count_again", number=last), keep)


def _every_reask(say: Speech, pack: ContentPack) -> Iterator[str]:
    questions = [r.question for r in pack.riddles] + list(pack.would_you_rather)
    questions += [q for a in pack.animal_sounds
                  for q in say.every("animal_question", sound=a.sound)]
    questions += [q for n in range(0, pack.counting_target + 1)
                  for q in say.every("count_again", number=number_word(n))]
    for keep in say.every("keep_playing"):
        for question in questions:
            yield fit(question, keep)
