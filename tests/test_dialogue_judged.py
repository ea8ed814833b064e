"""Issue 20's dialogue bars on the judged whole conversations (tests/data/judged_conversations/).

The set was written before any of issue 20's tuning and is never tuned on: 302 child lines
in 15 conversations across the three bands, each with its acceptable answers. Bars:
addressed >= 90%, misfires <= 3%, fallbacks <= 5%, follow-ups (name, pronoun, offer,
again, negation) >= 95%. ``scripts/bench-dialogue --judged-only`` prints the same figures
and every misfire. Bars still missed carry the measured figure in a strict xfail. The second
set (``second/``, 112 lines in 6 conversations, r3-talk) is held to the same bars.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest
from support.embedder import require_embedder

from agent.dialogue import AGE_BANDS, DialogueEngine
from agent.dialogue.judge import FOLLOW_UPS, Judgement, judge, meets, read_judged
from agent.safety import default_filter

DATA = Path(__file__).parent / "data" / "judged_conversations"
CONVERSATIONS = [c for band in AGE_BANDS for c in read_judged(DATA / f"{band}.txt")]
SECOND = DATA / "second"
SECOND_CONVERSATIONS = [c for band in AGE_BANDS for c in read_judged(SECOND / f"{band}.txt")]
"""The second judged set (r3-talk): written before it was run or tuned against."""
SETS = {"first": CONVERSATIONS, "second": SECOND_CONVERSATIONS}
MISSED = {  # scripts/bench-dialogue --judged-only, 2026-12-07 (merge), trained safety model
    ("first", "model", "misfires"): "measured 0.033 > 0.03 (10/302: 3 follow a sister's name "
                                    "the filter redacts ('my sister is called [name]', 'she is "
                                    "three', 'she took my crayons'); 1 the safety model's "
                                    "escalation ('why do they hoot' as bullying); 3 are right "
                                    "answers from the knowledge pack judged against "
                                    "answers.json ids; 3 the dialogue's ('goodnight teddy' "
                                    "without the name, 'yes' to no offer, 'not now' in a game)",
    ("first", "rules", "misfires"): "measured 0.033 > 0.03 (10/302; the same causes)",
}


@lru_cache(maxsize=4)
def judged(which: str, mode: str) -> Judgement:
    embedder = require_embedder() if mode == "model" else None
    engines = {(band, name): DialogueEngine(band, remember_name=name, embedder=embedder)
               for band in AGE_BANDS for name in (False, True)}
    return judge(engines, default_filter(), SETS[which])


def test_the_judged_set_is_big_enough_and_well_formed() -> None:
    lines = [line for c in CONVERSATIONS for line in c.lines]
    assert len(lines) >= 300
    assert len(CONVERSATIONS) >= 12
    assert {c.band for c in CONVERSATIONS} == set(AGE_BANDS)
    assert all(line.acts or line.checks for line in lines)
    tags = {line.tag for line in lines if line.tag}
    assert tags == set(FOLLOW_UPS)
    assert sum(1 for line in lines if line.tag) >= 100


def test_the_second_judged_set_is_big_enough_and_new() -> None:
    lines = [line for c in SECOND_CONVERSATIONS for line in c.lines]
    assert len(lines) >= 80 and len(SECOND_CONVERSATIONS) >= 4
    assert {c.band for c in SECOND_CONVERSATIONS} == set(AGE_BANDS)
    assert all(line.acts or line.checks for line in lines)
    first = {line.text for c in CONVERSATIONS for line in c.lines}
    shared = [line.text for line in lines if line.text in first]  # "hi teddy", "more", "bye"
    assert len(shared) / len(lines) <= 0.30, shared
    runs = {tuple(line.text for line in c.lines[i:i + 3])
            for c in CONVERSATIONS for i in range(len(c.lines) - 2)}
    assert not any(tuple(line.text for line in c.lines[i:i + 3]) in runs
                   for c in SECOND_CONVERSATIONS for i in range(len(c.lines) - 2))


def _cases() -> list[object]:
    cases: list[object] = []
    for which in SETS:
        for mode in ("model", "rules"):
            for bar in ("addressed", "misfires", "fallbacks", "follow_ups"):
                reason = MISSED.get((which, mode, bar))
                marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
                cases.append(pytest.param(which, mode, bar, marks=marks,
                                          id=f"{which}-{mode}-{bar}"))
    return cases


@pytest.mark.parametrize(("which", "mode", "bar"), _cases())
def test_judged_conversations_meet_the_bar(which: str, mode: str, bar: str) -> None:
    result = judged(which, mode)
    for where, line, reply, acts in result.misfires:
        print(f"misfire [{where}] {line!r} -> {reply!r} ({acts})")
    value = result.figures[bar]
    print(f"{which} set, {mode} {bar}: {value:.3f}")
    assert meets(bar, value)
