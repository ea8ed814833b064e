"""``up/status``: online/offline presence, retained; ``offline`` is the Last Will."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sync.protocol.base import Message, Timestamp


class Status(Message):
    """Presence of a bear."""

    v: Literal[1] = 1
    """Schema version."""
    state: Literal["online", "offline"]
    """Whether the bear is connected."""
    firmware: str = Field(default="", max_length=64)
    """Software version the bear runs."""
    boot_time: Timestamp | None = None
    """When the bear's process started, Unix time in seconds (None in the Last Will)."""
