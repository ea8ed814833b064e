"""Consent scopes: what a parent may allow, the same words on the bear and in the cloud.

The bear keeps them with its consent record (``teddy consent grant``); the cloud takes them
when a parent approves a pairing (``teddy-cloud fleet pair-approve --consent``) and sends
them to the bear inside the sealed :class:`~sync.protocol.claim.PairingGrant`.
"""

from __future__ import annotations

from enum import StrEnum

from config.errors import ConfigError


class Scope(StrEnum):
    """What a parent may allow."""

    KEEP = "keep"
    """Keep transcripts on the bear (encrypted)."""
    SYNC = "sync"
    """Send kept transcripts to the family's cloud account."""
    NAME = "name"
    """Remember the child's first name."""


DEFAULT_SCOPES = (Scope.KEEP, Scope.SYNC)
"""What ``teddy consent grant`` allows when no ``--scopes`` are given."""


def parse_scopes(text: str) -> tuple[Scope, ...]:
    """Parse ``"keep,sync"`` into scopes; a bad name is a one-line error."""
    scopes = []
    for part in (p.strip() for p in text.split(",")):
        try:
            scopes.append(Scope(part))
        except ValueError:
            allowed = ", ".join(s.value for s in Scope)
            raise ConfigError(f"unknown consent scope {part!r} — use some of: {allowed}") from None
    if Scope.SYNC in scopes and Scope.KEEP not in scopes:
        raise ConfigError("consent scope 'sync' needs 'keep' too — use --scopes keep,sync")
    return tuple(dict.fromkeys(scopes))
