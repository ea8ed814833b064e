"""Which settings the fleet may set on a bear, checked with the bear's own config models.

The one rule for ``set-config`` and ``down/config`` values: the cloud checks a desired
config with :func:`check_remote_config` before it signs it (``teddy-cloud fleet config``),
and the bear checks it again with the same function before it applies anything
(:class:`agent.remote_config.ConfigApplier`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from config.settings import Settings

REMOTE_SECTIONS = frozenset({"voice", "dialogue", "logging", "sync", "health", "pins", "audio",
                             "store", "play"})
"""Sections the fleet may change; never identity, broker, cloud, pairing, update or notify
(their keys decide who the bear trusts and where its data goes)."""
REMOTE_FORBIDDEN = frozenset({"store.key_provider", "store.db_name"})
"""Keys of those sections the fleet may not change either. Any key naming a file (a
``Path``) or holding a secret is refused as well."""


def check_remote_config(settings: Settings,
                        values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """``(valid values coerced by the models, refused keys with reasons)`` against
    ``settings`` (which is not changed)."""
    valid: dict[str, Any] = {}
    refused: dict[str, str] = {}
    for key, value in values.items():
        try:
            valid[key] = validate_remote_setting(settings, key, value)
        except ValueError as exc:
            refused[key] = str(exc)
    return valid, refused


def validate_remote_setting(settings: Settings, key: str, value: Any) -> Any:
    """``value`` coerced by the model of dotted ``key``; ValueError naming the key when the
    fleet may not set it or the value is invalid."""
    *path, name = key.split(".")
    section = _section(settings, key, path)
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


def _section(settings: Settings, key: str, path: list[str]) -> BaseModel:
    node: Any = settings
    for part in path:
        child = getattr(node, part, None) if part in type(node).model_fields else None
        if not isinstance(child, BaseModel):
            raise ValueError(f"{key} is not a setting")
        node = child
    if node is settings:
        raise ValueError(f"{key} is not a setting (name a section and a key)")
    return node
