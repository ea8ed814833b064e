"""Errors of the sentence-embedding model."""

from config.errors import TeddyError


class ModelFilesError(TeddyError, ValueError):
    """The embedding model's files are missing, unreadable or not the pinned ones."""
