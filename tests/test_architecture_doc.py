"""docs/architecture.md is the living design: every file or folder it names must exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "architecture.md"

PATH = re.compile(r"`((?:agent|sync|hardware|config|docs|tests|scripts|systemd)/[^`\s]*)`")
"""A repo path in backticks, e.g. `agent/conversation.py` or `agent/safety/`."""


def named_paths(text: str) -> list[str]:
    """Every repo path the doc names in backticks (placeholders such as <id> are skipped)."""
    return sorted({m for m in PATH.findall(text) if "<" not in m and "*" not in m})


def test_every_path_the_architecture_names_exists() -> None:
    paths = named_paths(DOC.read_text())
    assert len(paths) >= 30, "the doc should walk the house file by file"
    missing = [p for p in paths if not (REPO / p).exists()]
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_the_checker_sees_a_missing_path() -> None:
    assert named_paths("see `agent/nowhere.py` and `sync/` and `teddy/v1/<id>/up/`") == [
        "agent/nowhere.py", "sync/"]
    assert not (REPO / "agent/nowhere.py").exists()


def test_one_utterance_is_found_in_at_most_six_marked_files() -> None:
    section = DOC.read_text().split("## One utterance", 1)[1].split("\n## ", 1)[0]
    starred = re.findall(r"★ `([^`]+)`", section)
    assert 1 <= len(starred) <= 6, starred
    assert all((REPO / p).is_file() for p in starred)
