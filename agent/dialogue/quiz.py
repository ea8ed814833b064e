"""A harder quiz for ages 9-12: five questions from ``quiz`` in ``knowledge.json``.

The bear asks; the child answers (a right word from ``accept`` scores); the bear says whether
it was right with the answer, then asks "Next question?". After the fifth it offers the score.
"no" ends the quiz with the score so far. Every text is one phrase with one item filled in,
so ``every_reply`` lists them all for the output check.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from agent.dialogue.errors import ContentError
from agent.dialogue.knowledge import KNOWLEDGE_FILE, words_of
from agent.dialogue.state import DialogueState

SKILL = "quiz"
"""``state.skill`` while a quiz runs."""
ROUNDS = 5
"""Questions in one quiz."""
ASKED, BETWEEN, SCORE_OFFERED = 0, 1, 2
"""``state.position`` in a quiz: an answer is awaited, "next?" was asked, the score offered."""
_START = re.compile(r"\b(?:quiz|quizz|quizzes|test me|trivia)\b")
_GIVE_UP = re.compile(r"\b(?:give up|dont know|no idea|not sure|pass|tell me)\b")


@dataclass(frozen=True)
class Question:
    """One quiz question."""

    question: str
    """What the bear asks."""
    answer: str
    """The answer, as the bear says it."""
    accept: tuple[str, ...]
    """Words or phrases that count as right."""
    source: str
    """Where it was checked."""


def load(data: Mapping[str, Any]) -> tuple[Question, ...]:
    """The quiz questions in a knowledge pack's data (none when it has no ``quiz``)."""
    items = data.get("quiz", [])
    if not isinstance(items, list):
        raise ContentError(f"{KNOWLEDGE_FILE}: 'quiz' must be a list of questions")
    questions = []
    for i, item in enumerate(items):
        if not (isinstance(item, dict) and all(isinstance(item.get(k), str) and item[k]
                                               for k in ("q", "a", "source"))
                and isinstance(item.get("accept"), list) and item["accept"]):
            raise ContentError(f"{KNOWLEDGE_FILE} quiz question {i}: needs 'q', 'a', 'source' "
                               "and a non-empty 'accept' list")
        questions.append(Question(item["q"], item["a"],
                                  tuple(" ".join(words_of(a)) for a in item["accept"]),
                                  item["source"]))
    return tuple(questions)


PHRASES = ("quiz_start", "quiz_right", "quiz_wrong", "quiz_next", "quiz_last", "quiz_score",
           "quiz_over", "quiz_stop")
"""The phrases a quiz needs in ``knowledge.json``."""


def wants_quiz(text: str) -> bool:
    """Whether the child asked for a quiz."""
    return bool(_START.search(" ".join(words_of(text))))


class Quiz:
    """The quiz for one band, phrased with the knowledge pack's phrases."""

    def __init__(self, questions: tuple[Question, ...],
                 phrases: Mapping[str, tuple[str, ...]]) -> None:
        self.questions = questions
        """The questions a quiz draws from."""
        self._phrases = phrases

    def start(self, state: DialogueState) -> str:
        """Begin a quiz: the first question."""
        state.end_skill()
        state.offer = None
        state.skill, state.round, state.score = SKILL, 1, 0
        return self._ask(state, "quiz_start")

    def turn(self, text: str, declined: bool, state: DialogueState) -> str:
        """The child's words during a quiz (``declined``: the engine heard a "no")."""
        if state.position == SCORE_OFFERED or (declined and state.position == BETWEEN):
            return self._finish(state, "quiz_score" if not declined else "quiz_over")
        if declined and state.position == ASKED and not _GIVE_UP.search(" ".join(words_of(text))):
            return self._finish(state, "quiz_over")
        if state.position == BETWEEN:
            state.round += 1
            return self._ask(state, None)
        return self._judge(text, state)

    def _ask(self, state: DialogueState, lead: str | None) -> str:
        state.item = state.pick(SKILL, len(self.questions))
        state.position = ASKED
        question = self.questions[state.item].question
        return self._one(state, lead, question=question) if lead else question

    def _judge(self, text: str, state: DialogueState) -> str:
        question = self.questions[state.item]
        said = f" {' '.join(words_of(text))} "
        right = any(f" {accept} " in said for accept in question.accept)
        state.score += right
        verdict = self._one(state, "quiz_right" if right else "quiz_wrong", answer=question.answer)
        last = state.round >= ROUNDS
        state.position = SCORE_OFFERED if last else BETWEEN
        return f"{verdict} {self._one(state, 'quiz_last' if last else 'quiz_next')}"

    def _finish(self, state: DialogueState, key: str) -> str:
        answered = state.round - (state.position == ASKED)
        if answered < 1:
            key = "quiz_stop"
        text = self._one(state, key, score=str(state.score), rounds=str(answered))
        state.end_skill()
        return text

    def _one(self, state: DialogueState, key: str | None, **fields: str) -> str:
        return state.rng.choice(self._phrases[key or ""]).format(**fields)

    def every_reply(self) -> Iterator[str]:
        """Every text a quiz can say."""
        for question in self.questions:
            yield question.question
            for lead in self._phrases["quiz_start"]:
                yield lead.format(question=question.question)
            for key in ("quiz_right", "quiz_wrong"):
                for verdict in self._phrases[key]:
                    for tail in (*self._phrases["quiz_next"], *self._phrases["quiz_last"]):
                        yield f"{verdict.format(answer=question.answer)} {tail}"
        for rounds in range(1, ROUNDS + 1):
            for score in range(rounds + 1):
                for key in ("quiz_score", "quiz_over"):
                    for text in self._phrases[key]:
                        yield text.format(score=score, rounds=rounds)
        yield from self._phrases["quiz_stop"]
