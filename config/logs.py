"""Logging for both command lines: JSON lines for journald, plain lines on a terminal.

:func:`configure_logging` is the one call ``teddy`` and ``teddy-cloud`` make. When stderr
is not a TTY (systemd, journald, CI) every record is one JSON object on one line; on a
TTY it is the familiar ``time LEVEL logger: message``.

The guard: at INFO and above a record never carries a transcript or a secret.

- Secrets (the ``SecretStr`` values in the settings: broker password, PostgreSQL DSN) are
  registered once and replaced by ``***`` wherever they appear in a formatted message.
- Values wrapped in :class:`Sensitive` (``logger.debug("heard %s", Sensitive(text))``)
  print in full only at DEBUG; above it they show as ``<redacted N chars>``.
- ``extra`` fields named like text or secrets (``text``, ``transcript``, ``reply``,
  ``password``, ``key``, ...) are redacted the same way.
- A password inside a URL (``postgresql://user:pw@host``) is masked at every level.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from pydantic import BaseModel, SecretStr

SENSITIVE_FIELDS = frozenset({
    "text", "transcript", "child_text", "reply", "utterance", "words",
    "password", "passphrase", "secret", "token", "key", "dsn", "pg_dsn", "credential",
})
"""``extra`` field names whose values are redacted at INFO and above."""

MASK = "***"
"""What a registered secret is replaced with."""

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@", re.IGNORECASE)

_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class Sensitive:
    """A value that may be logged in full only at DEBUG (a transcript, a reply)."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value
        """The wrapped value."""

    def __str__(self) -> str:
        return str(self.value)

    def __repr__(self) -> str:
        return repr(self.value)

    def redacted(self) -> str:
        """What shows at INFO and above: the length only."""
        return f"<redacted {len(str(self.value))} chars>"


class RedactingFilter(logging.Filter):
    """Takes transcripts and secrets out of records at INFO and above (and secrets always)."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add_secret(self, value: str | SecretStr | None) -> None:
        """Never let ``value`` appear in a log line (values under 4 characters are ignored)."""
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value and len(value) >= 4:
            with self._lock:
                self._secrets.add(value)
                for part in _url_passwords(value):
                    self._secrets.add(part)

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` in place so its message is safe; always keeps the record."""
        verbose = record.levelno < logging.INFO
        try:
            if record.args:
                record.args = _redact_args(record.args, verbose)
            record.msg = record.getMessage() if record.args else str(record.msg)
        except (TypeError, ValueError):
            record.msg = f"unformattable log call at {record.pathname}:{record.lineno}"
        record.args = None
        record.msg = self._scrub(record.msg)
        for name in set(vars(record)) - _STANDARD_ATTRS:
            value = getattr(record, name)
            if isinstance(value, Sensitive) or (not verbose and name.lower() in SENSITIVE_FIELDS):
                shown = value if verbose else Sensitive(value).redacted()
                setattr(record, name, shown.value if isinstance(shown, Sensitive) else shown)
            elif isinstance(value, str):
                setattr(record, name, self._scrub(value))
        return True

    def _scrub(self, text: str) -> str:
        text = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, MASK)
        return text


def _url_passwords(value: str) -> Iterable[str]:
    for match in re.finditer(r"://[^:/@\s]+:([^@\s]+)@", value):
        if len(match.group(1)) >= 4:
            yield match.group(1)


def _redact_args(args: Any, verbose: bool) -> Any:
    def one(value: Any) -> Any:
        if isinstance(value, Sensitive):
            return value.value if verbose else value.redacted()
        return value

    if isinstance(args, dict):
        return {name: one(value) for name, value in args.items()}
    return tuple(one(value) for value in args)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, extras, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single line of JSON."""
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in sorted(set(vars(record)) - _STANDARD_ATTRS):
            entry[name] = _jsonable(getattr(record, name))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


HUMAN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""The line format on a terminal."""

GUARD = RedactingFilter()
"""The process's one redacting filter, on every handler :func:`configure_logging` installs."""


def configure_logging(
    level: str | int = "INFO",
    settings: BaseModel | None = None,
    stream: TextIO | None = None,
    json_lines: bool | None = None,
) -> logging.Handler:
    """Send logs to ``stream`` (stderr): JSON lines unless it is a TTY; guard on.

    ``settings``: every ``SecretStr`` in it is registered with the guard. Replaces any
    handler an earlier call installed, so calling it twice is harmless. Returns the handler.
    """
    stream = sys.stderr if stream is None else stream
    if json_lines is None:
        json_lines = not _is_tty(stream)
    if settings is not None:
        for secret in secrets_in(settings):
            GUARD.add_secret(secret)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(HUMAN_FORMAT))
    handler.addFilter(GUARD)
    handler.set_name("teddy")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "teddy"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    return handler


def secrets_in(model: BaseModel) -> list[SecretStr]:
    """Every ``SecretStr`` value anywhere in a settings model."""
    found: list[SecretStr] = []
    for name in type(model).model_fields:
        value = getattr(model, name, None)
        if isinstance(value, SecretStr):
            found.append(value)
        elif isinstance(value, BaseModel):
            found.extend(secrets_in(value))
    return found


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
