"""Errors of the safety filter."""

from config.errors import TeddyError


class SafetyListError(TeddyError, ValueError):
    """A safety list or pattern file is missing or malformed."""


class PackRefusedError(TeddyError, ValueError):
    """A content pack has a line that fails the safety gate."""
