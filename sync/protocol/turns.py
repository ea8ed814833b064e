"""``up/turns`` (a batch of kept turns) and ``down/ack`` (the seq ranges now committed)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from sync.protocol.base import MAX_SAFE_INT, Message, Timestamp
from sync.protocol.topics import Route

SeqNumber = Annotated[int, Field(ge=0, le=MAX_SAFE_INT)]


class TurnRecord(Message):
    """One turn as it travels to the cloud."""

    seq: int = Field(ge=1, le=MAX_SAFE_INT)
    """Device-wide, monotonically increasing sequence number; unique per device."""
    conversation_id: str = Field(min_length=1, max_length=64)
    """Conversation the turn belongs to."""
    role: Literal["child", "bear"]
    """Who spoke."""
    text: str = Field(max_length=4000)
    """What was said (the child's words with personal information redacted)."""
    created_at: Timestamp
    """When it was said, Unix time in seconds."""
    action: Literal["allow", "redact", "block", "escalate"]
    """The safety filter's action on this text."""
    categories: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list,
                                                                 max_length=32)
    """Safety categories that fired."""


class TurnsBatch(Message):
    """``up/turns``: a batch of turns from one bear, QoS 1."""

    ROUTE: ClassVar[Route] = Route("up", "turns", ingested=True)

    MAX_BYTES: ClassVar[int] = 256 * 1024

    v: Literal[1] = 1
    """Schema version."""
    device_id: str = Field(min_length=3, max_length=64)
    """The sending bear; must equal the device id in the topic."""
    batch_id: str = Field(min_length=1, max_length=64)
    """Stable id of this batch; a resend carries the same id."""
    turns: list[TurnRecord] = Field(min_length=1, max_length=1000)
    """The turns, in seq order."""

    @field_validator("turns")
    @classmethod
    def _unique_seqs(cls, turns: list[TurnRecord]) -> list[TurnRecord]:
        seqs = [t.seq for t in turns]
        if len(set(seqs)) != len(seqs):
            raise ValueError("turns repeat a seq")
        return turns


class Ack(Message):
    """``down/ack``: these seq ranges of this bear are committed in PostgreSQL."""

    ROUTE: ClassVar[Route] = Route("down", "ack")

    v: Literal[1] = 1
    """Schema version."""
    batch_id: str = Field(min_length=1, max_length=64)
    """The batch this ack answers."""
    ranges: list[tuple[SeqNumber, SeqNumber]] = Field(min_length=1, max_length=1000)
    """Inclusive ``(first, last)`` seq ranges now committed."""

    @model_validator(mode="after")
    def _ordered_ranges(self) -> Ack:
        for first, last in self.ranges:
            if first < 1 or last < first:
                raise ValueError(f"range ({first}, {last}) is not 1 <= first <= last")
        return self


def to_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Collapse sequence numbers into sorted inclusive ranges: 1,2,3,7 -> (1,3),(7,7)."""
    ranges: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return ranges
