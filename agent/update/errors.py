"""What can go wrong with an update, each a :class:`TeddyError` with a built-in base."""

from __future__ import annotations

from config.errors import TeddyError


class UpdateError(TeddyError, RuntimeError):
    """An update could not be done; the running release is untouched."""


class UpdateRefused(UpdateError, PermissionError):
    """A release failed verification or policy (signature, hash, size, floor): never retried
    as is."""


class UpdateDeferred(UpdateError):
    """Now is not the time (child mid-conversation, battery low): try again later."""


class DownloadError(UpdateRefused, ConnectionError):
    """A release file could not be fetched whole."""


class InstallError(UpdateError, OSError):
    """The verified release could not be installed into a fresh virtualenv."""
