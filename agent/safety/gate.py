"""The safety gate for content packs: every line a pack can make the bear say must pass.

``gate_pack(directory)`` builds the dialogue engine over the pack for every age band, runs
every text it can produce (``all_replies``) through ``check_output``, and checks that every
escalation reply points the child to a trusted grown-up. The first failure refuses the whole
pack, naming the line (``PackRefusedError``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path

from agent.safety.errors import PackRefusedError
from agent.safety.filter import SafetyFilter

logger = logging.getLogger(__name__)

TRUSTED_GROWN_UP = re.compile(
    r"\b(grown[- ]?ups?|adults?|parents?|mum|mummy|mom|mommy|dad|daddy|teacher|"
    r"someone you trust|somebody you trust|trusted)\b", re.IGNORECASE)
"""An escalation reply must name someone like this."""
PRIME_CHUNK = 1024
"""Replies embedded together before they are judged (within the stage's vector cache)."""


def check_replies(replies: Iterable[str], safety: SafetyFilter, where: str = "") -> int:
    """Run each reply through ``check_output``; raise on the first that is not allowed.

    Returns how many replies were checked.
    """
    count = 0
    for reply in replies:
        count += 1
        verdict = safety.check_output(reply)
        if not verdict.allowed:
            raise PackRefusedError(
                f"content pack refused{where}: the line {reply!r} fails the safety check "
                f"({', '.join(verdict.categories)}, stage {verdict.stage}) — "
                "rewrite or remove it and sign the pack again")
    return count


def check_escalations(replies: Iterable[str], where: str = "") -> None:
    """Every escalation reply must point to a trusted grown-up."""
    for reply in replies:
        if not TRUSTED_GROWN_UP.search(reply):
            raise PackRefusedError(
                f"content pack refused{where}: the escalation reply {reply!r} does not point "
                "the child to a trusted grown-up — add one (\"tell a grown-up you trust\")")


def gate_pack(directory: Path, safety: SafetyFilter) -> int:
    """Check the pack in ``directory`` for every age band; returns the lines checked."""
    from agent.dialogue import AGE_BANDS, DialogueEngine
    from agent.dialogue.content import load_pack

    _forget_packs(load_pack)  # a staging folder reuses its path: never judge a stale pack
    checked = 0
    judged: set[str] = set()  # the bands share most lines: each distinct line is judged once
    for band in AGE_BANDS:
        engine = DialogueEngine(band, remember_name=True, content_dir=Path(directory))
        where = f" (age band {band})"
        replies = [r for r in dict.fromkeys(engine.all_replies()) if r not in judged]
        _prime(safety, replies)
        checked += check_replies(replies, safety, where)
        judged.update(replies)
        check_escalations(escalation_replies(engine), where)
    _forget_packs(load_pack)
    logger.info("content pack passed the safety gate: %d lines", checked)
    return checked


def _prime(safety: SafetyFilter, replies: list[str]) -> None:
    """Embed the replies in batches first: one forward pass per line is many times slower."""
    semantic = safety.semantic
    if semantic is None:
        return
    for start in range(0, len(replies), PRIME_CHUNK):
        semantic.prime(replies[start:start + PRIME_CHUNK], "output")


def _forget_packs(load_pack) -> None:
    clear = getattr(load_pack, "cache_clear", None)
    if callable(clear):
        clear()


def escalation_replies(engine) -> Iterable[str]:
    """The replies the engine gives to a wellbeing escalation, every category."""
    own = getattr(engine, "escalation_replies", None)
    if callable(own):
        yield from own()
        return
    from agent.safety.categories import ESCALATION_ORDER, REPLIES

    for category in ESCALATION_ORDER:
        yield from engine._speech.every(*REPLIES[category])
