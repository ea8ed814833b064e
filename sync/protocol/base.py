"""The base of every message: a schema version, size and nesting limits, strict JSON parsing.

:meth:`Message.from_payload` is the one door every payload comes through, on the bear and
in the cloud. Before :func:`json.loads` sees a byte it checks the size (``MAX_BYTES``) and
the nesting depth (``MAX_DEPTH``, by a cheap scan of the brackets outside strings), so a
50,000-deep ``[[[[...`` is one clear :class:`ProtocolError`, never a ``RecursionError``.
``NaN``/``Infinity`` and numbers that overflow a float are refused while parsing. Times
use :data:`Timestamp` (finite, 0 to :data:`LATEST_TIMESTAMP`); whether a time is plausible
*now* is the receiver's policy (ingest checks a window around its clock).
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from config.errors import ProtocolError
from sync.protocol.topics import Route

LATEST_TIMESTAMP = 4_102_444_800.0
"""2100-01-01 UTC: no time in any message is later (year 3000 or 1e12 never pass)."""
MAX_SAFE_INT = 2**53 - 1
"""Largest integer every JSON reader (and a float) holds exactly."""

Timestamp = Annotated[float, Field(ge=0, le=LATEST_TIMESTAMP, allow_inf_nan=False)]
"""A Unix time in seconds, finite, between 1970 and 2100."""

_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nesting_depth(payload: bytes, limit: int) -> int:
    """Deepest bracket nesting of a JSON text (strings skipped), scanning no further than
    ``limit + 1`` levels. Unbalanced or unterminated text only over-counts."""
    brackets = _STRINGS.sub(b"", payload).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in brackets:
        if byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif depth:
            depth -= 1
    return deepest


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} does not fit a float")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def load_json(payload: bytes, name: str, max_bytes: int, max_depth: int) -> object:
    """Parse ``payload`` after bounding its size and depth; :class:`ProtocolError` with one
    line on anything wrong (never RecursionError, OverflowError or a bare ValueError)."""
    if len(payload) > max_bytes:
        raise ProtocolError(f"{name} payload is {len(payload)} bytes, over the "
                            f"{max_bytes}-byte limit")
    if nesting_depth(payload, max_depth) > max_depth:
        raise ProtocolError(f"{name} payload nests deeper than {max_depth} levels")
    try:
        return json.loads(payload, parse_float=_finite_float, parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"{name} payload is not JSON: {exc}") from None
    except (ValueError, RecursionError, OverflowError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ProtocolError(f"{name} payload is not acceptable JSON: {first[:200]}") from None


class Message(BaseModel):
    """A typed MQTT payload. Subclasses set ``v`` as a ``Literal``, ``MAX_BYTES``, and
    ``ROUTE`` when they travel on a topic of their own."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    MAX_BYTES: ClassVar[int] = 64 * 1024
    """Largest payload accepted or produced, bytes."""
    MAX_DEPTH: ClassVar[int] = 16
    """Deepest JSON nesting accepted (objects and arrays), levels."""
    ROUTE: ClassVar[Route | None] = None
    """Topic, QoS and retain flag of a top-level message; None for one that only travels
    inside another (or outside MQTT)."""

    @classmethod
    def route(cls) -> Route:
        """:attr:`ROUTE`, or :class:`ProtocolError` for a message that has none."""
        if cls.ROUTE is None:
            raise ProtocolError(f"{cls.__name__} has no topic of its own (no ROUTE) — send "
                                "the message that carries it")
        return cls.ROUTE

    def to_payload(self) -> bytes:
        """Serialise to compact JSON; refuses to produce more than ``MAX_BYTES``."""
        payload = self.model_dump_json().encode()
        if len(payload) > self.MAX_BYTES:
            raise ProtocolError(
                f"{type(self).__name__} payload is {len(payload)} bytes, over the "
                f"{self.MAX_BYTES}-byte limit — send smaller batches (sync.batch_size)"
            )
        return payload

    @classmethod
    def from_payload(cls, payload: bytes) -> Self:
        """Parse and validate a payload; raises :class:`ProtocolError` with one line."""
        name = cls.__name__
        data = load_json(bytes(payload), name, cls.MAX_BYTES, cls.MAX_DEPTH)
        if not isinstance(data, dict):
            raise ProtocolError(f"{name} payload must be a JSON object, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(root)"
            more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            raise ProtocolError(f"{name} field {where}: {first['msg'][:200]}{more}") from None
