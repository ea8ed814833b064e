"""Errors of the safety filter."""

from config.errors import TeddyError


class SafetyListError(TeddyError, ValueError):
    """A safety list or pattern file is missing or malformed."""
