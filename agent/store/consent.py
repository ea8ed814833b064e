"""Parental consent: who granted what, and when."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class Consent:
    """A consent on record."""

    parent: str
    """Who granted it (a name or e-mail)."""
    scopes: tuple[Scope, ...]
    """What it allows."""
    granted_at: float
    """Unix time, seconds."""
    source: str
    """Where it came from: ``"local"`` (CLI) or ``"cloud"`` (pairing)."""

    def allows(self, scope: Scope) -> bool:
        """Whether this consent covers ``scope``."""
        return scope in self.scopes
