"""The base of every message: a schema version, a size limit, and strict JSON parsing."""

from __future__ import annotations

import json
from typing import ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from config.errors import ProtocolError


class Message(BaseModel):
    """A typed MQTT payload. Subclasses set ``v`` as a ``Literal`` and ``MAX_BYTES``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    MAX_BYTES: ClassVar[int] = 64 * 1024
    """Largest payload accepted or produced, bytes."""

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
        if len(payload) > cls.MAX_BYTES:
            raise ProtocolError(
                f"{name} payload is {len(payload)} bytes, over the {cls.MAX_BYTES}-byte limit"
            )
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ProtocolError(f"{name} payload is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ProtocolError(f"{name} payload must be a JSON object, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(root)"
            more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            raise ProtocolError(f"{name} field {where}: {first['msg']}{more}") from None
