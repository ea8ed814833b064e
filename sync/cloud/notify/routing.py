"""Which channels an alert event goes to.

Wellbeing alerts (``wellbeing.*``) go to ``parent`` channels only and every other alert to
``operator`` channels only; then each channel's severity floor and kind patterns apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase

from config.notify import ChannelBase
from sync.cloud.notify.message import Notification, severity_rank


def wants(channel: ChannelBase, note: Notification, severity_floor: bool = True) -> bool:
    """Whether ``channel`` should receive ``note`` (without its ``min_severity`` when
    ``severity_floor`` is False: a family's own choice decided already)."""
    if note.wellbeing != (channel.audience == "parent"):
        return False
    if note.event == "cleared" and not channel.clears:
        return False
    if severity_floor and severity_rank(note.severity) < severity_rank(channel.min_severity):
        return False
    if not any(fnmatchcase(note.kind, pattern) for pattern in channel.kinds):
        return False
    return not any(fnmatchcase(note.kind, pattern) for pattern in channel.exclude_kinds)


def route(channels: Mapping[str, ChannelBase], note: Notification,
          severity_floor: bool = True) -> list[str]:
    """Names of the channels that take ``note``, in config order."""
    return [name for name, channel in channels.items()
            if wants(channel, note, severity_floor)]
