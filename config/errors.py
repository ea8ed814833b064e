"""The one error hierarchy of Teddy, bear and cloud alike.

Every error we raise on purpose is a :class:`TeddyError`; each subclass also inherits the
built-in exception that best describes it, so callers that only know the standard library
still catch the right thing. Messages are one line: what is wrong, and the way out.
"""


class TeddyError(Exception):
    """Base of every error Teddy raises on purpose."""


class ConfigError(TeddyError, ValueError):
    """The configuration is invalid or cannot be read."""


class StoreError(TeddyError, RuntimeError):
    """The conversation store cannot do what was asked."""


class DecryptionError(StoreError):
    """A stored value failed authentication: tampered, moved, or the wrong key."""


class KeyFileError(TeddyError, PermissionError):
    """The key file is missing, malformed, or readable by others."""


class ConsentRequiredError(TeddyError, PermissionError):
    """An operation needs a parental consent that is not on record."""


class ProtocolError(TeddyError, ValueError):
    """An MQTT payload does not match the bear <-> cloud contract."""


class SyncError(TeddyError, ConnectionError):
    """The sync link could not deliver or confirm what it was asked to."""


class CloudError(TeddyError, RuntimeError):
    """The cloud side (database, ingest) failed."""
