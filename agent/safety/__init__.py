"""The child-safety filter: input and output checks, PII redaction, escalation.

Build one :class:`SafetyFilter` at start-up (``default_filter()``), then call
``check_input`` on the child's words and ``check_output`` on everything the bear would
say. Word lists, patterns and folding tables are data files beside this code.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from agent.safety.categories import WELLBEING_CATEGORIES
from agent.safety.errors import SafetyListError
from agent.safety.filter import SafetyFilter
from agent.safety.verdict import Action, Match, Verdict

logger = logging.getLogger(__name__)

SAFE_FALLBACK_REPLY = "Let's talk about something else. Shall I tell you a story or a joke?"
"""Spoken instead of any reply that fails ``check_output``; passes it itself (tested)."""


_FILTERS: dict[tuple[str, str], SafetyFilter] = {}
_FILTERS_LOCK = threading.Lock()


def filter_for(settings: Any = None) -> SafetyFilter:
    """The filter for these settings (``[safety] semantic_model``), built once per process.

    The semantic model loads on the first check, not here. Model files that fail their hash
    check are refused: the filter then runs on rules alone and logs why (``teddy health``
    says so too).
    """
    safety = getattr(settings, "safety", None)
    choice = str(getattr(safety, "semantic_model", "auto"))
    data_dir = getattr(getattr(settings, "store", None), "data_dir", None)
    key = (choice, str(data_dir))
    with _FILTERS_LOCK:
        built = _FILTERS.get(key)
        if built is None:
            built = SafetyFilter.load(embedder=_embedder_loader(settings))
            _FILTERS[key] = built
        return built


def default_filter() -> SafetyFilter:
    """The filter built from the packaged data files and default settings, once per process."""
    return filter_for(None)


def rules_only_filter() -> SafetyFilter:
    """The filter without the semantic stage (the bear without the model)."""
    return SafetyFilter.load()


def _embedder_loader(settings: Any):
    def load():
        from agent.semantic import ModelFilesError, load_embedder

        try:
            return load_embedder(settings)
        except ModelFilesError as exc:
            logger.error("semantic safety stage off, rules only: %s", exc)
            return None
    return load


PACKAGE_DIR = Path(__file__).parent
"""Where the safety data files live."""


__all__ = [
    "Action",
    "Match",
    "SAFE_FALLBACK_REPLY",
    "SafetyFilter",
    "SafetyListError",
    "Verdict",
    "WELLBEING_CATEGORIES",
    "default_filter",
    "filter_for",
    "rules_only_filter",
]
