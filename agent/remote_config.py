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

from config.settings import Settings
from sync.protocol.remote_config import check_remote_config

logger = logging.getLogger(__name__)

LIVE_KEYS = frozenset({
    "voice.tts_volume", "voice.tts_rate", "dialogue.age_band", "logging.level",
    "store.retention_days", "sync.batch_size", "sync.max_inflight", "sync.ack_timeout",
    "play.quiet_from", "play.quiet_until", "play.daily_limit_min", "play.weekly",
    "play.paused", "play.bonus_min", "play.bonus_at", "dialogue.child_name",
})
"""Settings a running bear changes at once; other settable ones wait for a restart. Which
settings the fleet may set at all is :mod:`sync.protocol.remote_config`."""

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
        return check_remote_config(self.settings, values)

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
