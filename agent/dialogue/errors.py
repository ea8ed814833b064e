"""Errors of the dialogue engine."""

from config.errors import TeddyError


class ContentError(TeddyError, ValueError):
    """The content pack is missing, malformed, or has nothing for an age band."""
