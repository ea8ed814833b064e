"""Config the fleet pushes to a bear: validated with the same pydantic models as the bear's
own config, applied live where that is safe, and reported back (``up/config``).

A desired config is all or nothing: if any key is unknown, not settable remotely, or
invalid, nothing is applied and every refused key is reported with its reason.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from config.settings import Settings

logger = logging.getLogger(__name__)

LIVE_KEYS = frozenset({
    "voice.tts_volume", "voice.tts_rate", "dialogue.age_band", "logging.level",
    "store.retention_days", "sync.batch_size", "sync.max_inflight", "sync.ack_timeout",
    "play.quiet_from", "play.quiet_until", "play.daily_limit_min",
})
"""Settings a running bear changes at once; other settable ones wait for a restart."""
REMOTE_SECTIONS = frozenset({"voice", "dialogue", "logging", "sync", "health", "pins", "audio",
                             "store", "play"})
"""Sections the fleet may change; never identity, broker, cloud, pairing, update or notify
(their keys decide who the bear trusts and where its data goes)."""
REMOTE_FORBIDDEN = frozenset({"store.key_provider", "store.db_name"})
"""Keys of those sections the fleet may not change either. Any key naming a file (a
``Path``) or holding a secret is refused as well."""

ConfigListener = Callable[[str, Any], None]


@dataclass
class ConfigOutcome:
    """What became of one desired config."""

    applied: dict[str, Any] = field(default_factory=dict)
    """Keys now in force, with their values."""
    pending_restart: dict[str, Any] = field(default_factory=dict)
    """Valid keys that take effect at the next restart."""
    rejected: dict[str, str] = field(default_factory=dict)
    """Refused keys and why."""

    @property
    def ok(self) -> bool:
        """Whether the whole config was accepted."""
        return not self.rejected


class ConfigApplier:
    """Validates and applies dotted settings on a live :class:`Settings`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        """The bear's live settings (changed in place)."""
        self._listeners: list[ConfigListener] = []
        self._lock = threading.Lock()

    def on_change(self, listener: ConfigListener) -> None:
        """Call ``listener(key, value)`` after a live key changed (e.g. the voice's volume)."""
        self._listeners.append(listener)

    def check(self, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """``(valid values coerced by the models, refused keys with reasons)``."""
        valid: dict[str, Any] = {}
        refused: dict[str, str] = {}
        for key, value in values.items():
            try:
                valid[key] = self._validate(key, value)
            except ValueError as exc:
                refused[key] = str(exc)
        return valid, refused

    def apply(self, values: dict[str, Any]) -> ConfigOutcome:
        """Apply ``values`` if every one is valid; otherwise apply nothing."""
        valid, refused = self.check(values)
        if refused:
            logger.warning("refused a desired config: %s", "; ".join(refused.values()))
            return ConfigOutcome(rejected=refused)
        outcome = ConfigOutcome()
        with self._lock:
            for key, value in valid.items():
                if key in LIVE_KEYS:
                    self._set(key, value)
                    outcome.applied[key] = value
                else:
                    outcome.pending_restart[key] = value
        for key, value in outcome.applied.items():
            self._notify(key, value)
        logger.info("applied config keys %s; %d wait for a restart",
                    ",".join(outcome.applied) or "-", len(outcome.pending_restart))
        return outcome

    def _validate(self, key: str, value: Any) -> Any:
        *path, name = key.split(".")
        section = self._section(key, path)
        field = type(section).model_fields.get(name)
        if field is None:
            raise ValueError(f"{key} is not a setting")
        kind = str(field.annotation)
        if (path[0] not in REMOTE_SECTIONS or key in REMOTE_FORBIDDEN or "Path" in kind
                or "Secret" in kind):
            raise ValueError(f"{key} cannot be set remotely — change it on the bear")
        try:
            checked = type(section).model_validate({**section.model_dump(), name: value})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ValueError(f"{key}={value!r} is invalid: {first['msg']}") from None
        return getattr(checked, name)

    def _section(self, key: str, path: list[str]) -> BaseModel:
        node: Any = self.settings
        for part in path:
            child = getattr(node, part, None) if part in type(node).model_fields else None
            if not isinstance(child, BaseModel):
                raise ValueError(f"{key} is not a setting")
            node = child
        if node is self.settings:
            raise ValueError(f"{key} is not a setting (name a section and a key)")
        return node

    def _set(self, key: str, value: Any) -> None:
        *path, name = key.split(".")
        node: Any = self.settings
        for part in path:
            node = getattr(node, part)
        setattr(node, name, value)
        if key == "logging.level":
            logging.getLogger().setLevel(value)

    def _notify(self, key: str, value: Any) -> None:
        for listener in self._listeners:
            try:
                listener(key, value)
            except Exception:
                logger.exception("config listener failed for %s", key)
