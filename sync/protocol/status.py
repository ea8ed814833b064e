"""``up/status``: online/offline presence, retained; ``offline`` is the Last Will."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from sync.protocol.base import Message, Timestamp
from sync.protocol.topics import Route


class Status(Message):
    """Presence of a bear."""

    ROUTE: ClassVar[Route] = Route("up", "status", retain=True, ingested=True)

    v: Literal[1] = 1
    """Schema version."""
    state: Literal["online", "offline"]
    """Whether the bear is connected."""
    firmware: str = Field(default="", max_length=64)
    """Software version the bear runs."""
    boot_time: Timestamp | None = None
    """When the bear's process started, Unix time in seconds (None in the Last Will)."""
