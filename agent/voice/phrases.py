"""The few fixed things the voice loop itself says, kept as data beside this module."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

PHRASES_FILE = Path(__file__).with_name("phrases.json")
"""Where the phrases live."""


@cache
def phrase(name: str) -> str:
    """The phrase called ``name`` (``say_again``, ``cannot_hear``)."""
    return json.loads(PHRASES_FILE.read_text(encoding="utf-8"))[name]
