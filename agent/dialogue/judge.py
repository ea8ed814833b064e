"""Judging whole conversations line by line (issue 20): addressed, misfires, fallbacks.

The judged set (``tests/data/judged_conversations/<band>.txt``, format in its README) gives
each child line its acceptable answers: acts the reply may be made of (phrase sets and
skills noted in :attr:`DialogueState.acts`), and checks on the reply's text. A line is
*addressed* when its checks hold, a *fallback* when the bear gave its generic "I didn't get
that", a *misfire* otherwise: a confident wrong answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from agent.dialogue.engine import DialogueEngine
from agent.dialogue.errors import ContentError
from agent.dialogue.state import Privacy
from agent.safety import SAFE_FALLBACK_REPLY

UNSURE_ACTS = frozenset({"fallback", "tell_more.low"})
"""Acts of a reply that means "I didn't get that" (counted as fallbacks when not accepted)."""
FOLLOW_UPS = ("name", "pronoun", "offer", "again", "negation")
"""Tags of lines that only make sense after what came before."""


@dataclass(frozen=True)
class JudgedLine:
    """One child line and what counts as answering it."""

    text: str
    """What the child said."""
    acts: tuple[str, ...]
    """Acts the reply may include (any one; empty: any)."""
    checks: tuple[str, ...]
    """Every other check (``-act``, ``~text``, ``!text``, ``=prev``, ``!prev``)."""
    tag: str
    """Follow-up kind, or ""."""


@dataclass(frozen=True)
class JudgedConversation:
    """A whole conversation with the consent it runs under."""

    band: str
    """Age band."""
    title: str
    """What it is."""
    privacy: Privacy
    """Consent in force."""
    lines: tuple[JudgedLine, ...]
    """The child's lines in order."""


@dataclass
class Judgement:
    """Scores over judged conversations."""

    lines: int = 0
    """Lines judged."""
    addressed: int = 0
    """Lines answered acceptably."""
    fallbacks: list[tuple[str, str, str]] = field(default_factory=list)
    """(where, child line, reply) for every generic fallback."""
    misfires: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(where, child line, reply, acts) for every confident wrong answer."""
    follow_ups: int = 0
    """Follow-up lines judged."""
    follow_ups_addressed: int = 0
    """Follow-up lines answered acceptably."""
    replies: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(where, child line, reply, acts) for every line, in order."""
    follow_up_misses: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(tag, child line, reply, acts) for every follow-up not answered acceptably."""

    def rate(self, count: int, of: int | None = None) -> float:
        """``count`` over ``of`` (default: every line); 0 when there is none."""
        total = self.lines if of is None else of
        return count / total if total else 0.0

    @property
    def figures(self) -> dict[str, float]:
        """addressed, misfires, fallbacks and follow-ups as shares."""
        return {"addressed": self.rate(self.addressed),
                "misfires": self.rate(len(self.misfires)),
                "fallbacks": self.rate(len(self.fallbacks)),
                "follow_ups": self.rate(self.follow_ups_addressed, self.follow_ups)}


BARS = {"addressed": (">=", 0.90), "misfires": ("<=", 0.03), "fallbacks": ("<=", 0.05),
        "follow_ups": (">=", 0.95)}
"""Issue 20's bars on the judged set."""


def meets(name: str, value: float) -> bool:
    """Whether ``value`` meets the bar called ``name``."""
    sense, bar = BARS[name]
    return value >= bar if sense == ">=" else value <= bar


def read_judged(path: Path) -> list[JudgedConversation]:
    """The judged conversations in one band's file."""
    band = path.stem
    conversations: list[JudgedConversation] = []
    title, privacy = "", Privacy()
    lines: list[JudgedLine] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if line.startswith("## "):
            if lines:
                conversations.append(JudgedConversation(band, title, privacy, tuple(lines)))
            title, privacy, lines = _header(line[3:], path, number)
        elif line and not line.startswith("#"):
            lines.append(_judged_line(line, path, number))
    if lines:
        conversations.append(JudgedConversation(band, title, privacy, tuple(lines)))
    return conversations


def _header(text: str, path: Path, number: int) -> tuple[str, Privacy, list[JudgedLine]]:
    title, *fields = (f.strip() for f in text.split("|"))
    settings = dict(f.split("=", 1) for f in fields if "=" in f)
    scopes = set(settings.get("consent", "none").split(","))
    if "consent" not in settings or "sync" not in settings:
        raise ContentError(f"{path}:{number}: a conversation header needs consent= and sync=")
    keep = "keep" in scopes
    return title, Privacy(keep=keep, sync=keep and settings["sync"] == "on",
                          name="name" in scopes), []


def _judged_line(text: str, path: Path, number: int) -> JudgedLine:
    parts = [p.strip() for p in text.split("|")]
    if len(parts) < 2:
        raise ContentError(f"{path}:{number}: a line needs '<child words> | <answers>'")
    said, accept, tag = parts[0], parts[1], parts[2] if len(parts) > 2 else ""
    if tag and tag not in FOLLOW_UPS:
        raise ContentError(f"{path}:{number}: unknown follow-up tag {tag!r}")
    tokens = _tokens(accept)
    acts = tuple(t for t in tokens if t[0].isalnum())
    checks = tuple(t for t in tokens if not t[0].isalnum())
    return JudgedLine(said, acts, checks, tag)


def _tokens(accept: str) -> list[str]:
    """Space-separated tokens; ``~``/``!`` text checks run to the next token with a prefix."""
    tokens: list[str] = []
    for word in accept.split():
        joins = tokens and tokens[-1][0] in "~!" and tokens[-1] != "!prev" and \
            word[0].isalnum() and not _looks_like_act(word)
        if joins:
            tokens[-1] += " " + word
        else:
            tokens.append(word)
    return tokens


def _looks_like_act(word: str) -> bool:
    return False if not word else word.islower() and ("." in word or ":" in word or "_" in word)


def accepted(line: JudgedLine, reply: str, acts: list[str], previous: str | None) -> bool:
    """Whether ``reply`` (made of ``acts``) answers ``line`` acceptably."""
    if line.acts and not any(_has(acts, a) for a in line.acts):
        return False
    return all(_check(c, reply, acts, previous) for c in line.checks)


def _has(acts: list[str], want: str) -> bool:
    return any(a == want or a.startswith((f"{want}.", f"{want}:")) for a in acts)


def _check(check: str, reply: str, acts: list[str], previous: str | None) -> bool:
    if check == "=prev":
        return reply == previous
    if check == "!prev":
        return reply != previous
    if check.startswith("-"):
        return not _has(acts, check[1:])
    if check.startswith("~"):
        return check[1:].lower() in reply.lower()
    if check.startswith("!"):
        return check[1:].lower() not in reply.lower()
    raise ContentError(f"unknown check {check!r} in the judged set")


def run(engine: DialogueEngine, safety, conversation: JudgedConversation,
        seed: int = 7) -> Iterator[tuple[JudgedLine, str, list[str], str | None]]:
    """(line, reply spoken, its acts, the reply before) through safety in, dialogue, out."""
    state = engine.new_state(seed=seed)
    state.privacy = conversation.privacy
    previous: str | None = None
    for line in conversation.lines:
        verdict = safety.check_input(line.text, keep_name=conversation.privacy.name)
        candidate = engine.reply(verdict.redacted, verdict, state)
        checked = safety.check_output(candidate)
        spoken = checked.redacted if checked.allowed else SAFE_FALLBACK_REPLY
        yield line, spoken, list(state.acts), previous
        previous = spoken


def judge(engines: dict[tuple[str, bool], DialogueEngine], safety,
          conversations: list[JudgedConversation]) -> Judgement:
    """Score ``conversations``; ``engines`` maps (band, name allowed) to an engine."""
    result = Judgement()
    for conversation in conversations:
        engine = engines[(conversation.band, conversation.privacy.name)]
        where = f"{conversation.band} / {conversation.title}"
        for line, spoken, acts, previous in run(engine, safety, conversation):
            result.lines += 1
            result.replies.append((where, line.text, spoken, ",".join(acts)))
            good = accepted(line, spoken, acts, previous)
            result.addressed += good
            if line.tag:
                result.follow_ups += 1
                result.follow_ups_addressed += good
                if not good:
                    result.follow_up_misses.append((line.tag, line.text, spoken, ",".join(acts)))
            if good:
                continue
            if UNSURE_ACTS & set(acts) or spoken == SAFE_FALLBACK_REPLY:
                result.fallbacks.append((where, line.text, spoken))
            else:
                result.misfires.append((where, line.text, spoken, ",".join(acts)))
    return result
