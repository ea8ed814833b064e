"""Parental consent: who granted what, and when."""

from __future__ import annotations

from dataclasses import dataclass

from sync.protocol.consent import DEFAULT_SCOPES, Scope, parse_scopes

__all__ = ["DEFAULT_SCOPES", "Consent", "Scope", "parse_scopes"]


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
