"""Issue 20's dialogue bars on the judged whole conversations (tests/data/judged_conversations/).

The set was written before any of issue 20's tuning and is never tuned on: 302 child lines
in 15 conversations across the three bands, each with its acceptable answers. Bars:
addressed >= 90%, misfires <= 3%, fallbacks <= 5%, follow-ups (name, pronoun, offer,
again, negation) >= 95%. ``scripts/bench-dialogue --judged-only`` prints the same figures
and every misfire. Bars still missed carry the measured figure in a strict xfail.
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
MISSED = {  # scripts/bench-dialogue --judged-only, 2026-12-07, with the trained safety model
    ("model", "misfires"): "measured 0.093 > 0.03 (28/302: 6 need names the filter redacts "
                           "(\"my dog is called [name]\"); the trained safety model escalates "
                           "ordinary lines seen with the turns before them (\"who can see what "
                           "i say\" as secrets, \"why do they hoot\" as bullying, \"i miss "
                           "her\" as distress); the rest the dialogue's and the judge's)",
    ("rules", "misfires"): "measured 0.103 > 0.03 (31/302; the same, plus the dialogue's "
                           "own without the sentence model)",
    ("rules", "addressed"): "measured 0.891 < 0.90 (0.911 before the trained safety model "
                            "landed: its escalations of ordinary lines, above)",
    ("model", "follow_ups"): "measured 0.897 < 0.95 (96/107: 4 need names the filter "
                             "redacts, the others the safety model's escalations)",
    ("rules", "follow_ups"): "measured 0.897 < 0.95 (96/107: 4 need names the filter "
                             "redacts, the others the safety model's escalations)",
}


@lru_cache(maxsize=2)
def judged(mode: str) -> Judgement:
    embedder = require_embedder() if mode == "model" else None
    engines = {(band, name): DialogueEngine(band, remember_name=name, embedder=embedder)
               for band in AGE_BANDS for name in (False, True)}
    return judge(engines, default_filter(), CONVERSATIONS)


def test_the_judged_set_is_big_enough_and_well_formed() -> None:
    lines = [line for c in CONVERSATIONS for line in c.lines]
    assert len(lines) >= 300
    assert len(CONVERSATIONS) >= 12
    assert {c.band for c in CONVERSATIONS} == set(AGE_BANDS)
    assert all(line.acts or line.checks for line in lines)
    tags = {line.tag for line in lines if line.tag}
    assert tags == set(FOLLOW_UPS)
    assert sum(1 for line in lines if line.tag) >= 100


def _cases() -> list[object]:
    cases: list[object] = []
    for mode in ("model", "rules"):
        for bar in ("addressed", "misfires", "fallbacks", "follow_ups"):
            reason = MISSED.get((mode, bar))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            cases.append(pytest.param(mode, bar, marks=marks, id=f"{mode}-{bar}"))
    return cases


@pytest.mark.parametrize(("mode", "bar"), _cases())
def test_judged_conversations_meet_the_bar(mode: str, bar: str) -> None:
    result = judged(mode)
    for where, line, reply, acts in result.misfires:
        print(f"misfire [{where}] {line!r} -> {reply!r} ({acts})")
    value = result.figures[bar]
    print(f"{mode} {bar}: {value:.3f}")
    assert meets(bar, value)
