"""``down/receipt``: which ``up/`` messages the cloud committed, or refused for now.

Turns keep their own ``down/ack`` (seq ranges). Every other ``up/`` message that matters
(an alert's raise or clear, a health sample, a command result, a reported config) is
named by :func:`receipt_id`; the bear keeps it and sends it again until a receipt naming
it arrives — sent by ingest only after the row is committed in PostgreSQL, never on the
broker's PUBACK. A receipt with ``refused`` set says the cloud did *not* store those
messages (e.g. the bear is over its rate) and when to try again; turns refused that way
are named by their batch id.

Version 2 adds ``drop``: the cloud will *never* store these messages (the bear is not held
by any family: never paired, or revoked), so the bear deletes them instead of resending.
Only a refusal can say ``drop`` (and then ``retry_after`` is 0); every other receipt is
still sent as version 1, so a bear that knows only version 1 reads it as before (and a
version-2 receipt it cannot read leaves its messages queued, never lost).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from sync.protocol.base import Message
from sync.protocol.topics import Route

ReceiptKind = Literal["turns", "alerts", "health", "cmd-result", "config"]


class Receipt(Message):
    """``down/receipt``: committed (or, with ``refused``, not stored) ``up/`` messages, QoS 1."""

    ROUTE: ClassVar[Route] = Route("down", "receipt")

    v: Literal[1, 2] = 1
    """Schema version (2 when ``drop`` is set)."""
    kind: ReceiptKind
    """The ``up/<kind>`` the ids belong to."""
    ids: list[Annotated[str, Field(min_length=1, max_length=160)]] = Field(min_length=1,
                                                                           max_length=1000)
    """:func:`receipt_id` of each message (for refused turns: batch ids)."""
    refused: str = Field(default="", max_length=300)
    """Empty: committed. Otherwise why the cloud did not store them (send them again later)."""
    retry_after: float = Field(default=0.0, ge=0, le=3600, allow_inf_nan=False)
    """With ``refused``: seconds to wait before sending them again."""
    drop: bool = False
    """Version 2, with ``refused``: the cloud will never store these (the bear is held by
    no family) — delete them, do not send them again."""

    @model_validator(mode="after")
    def _drop_is_a_final_refusal(self) -> Receipt:
        if self.drop and (self.v != 2 or not self.refused or self.retry_after):
            raise ValueError("drop needs v 2, a refused reason and no retry_after")
        if self.v == 2 and not self.drop:
            raise ValueError("version 2 is only for a receipt that says drop")
        return self


def receipt_id(kind: str, message: Any) -> str | None:
    """The id a receipt names ``message`` of ``up/<kind>`` by; None for kinds never
    receipted (``status``, ``turns`` — turns are acked by seq ranges)."""
    if kind == "alerts":
        return f"{message.alert_id}/{message.state}"
    if kind == "health":
        return f"{message.sampled_at:.6f}"
    if kind == "cmd-result":
        return f"{message.id}/{message.status}"
    if kind == "config":
        return f"{message.version}/{message.reported_at:.6f}"
    return None
