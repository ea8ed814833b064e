"""The bear and the cloud share only the contract: neither imports the other's code.

Read from the source (AST), so an import inside a function counts as much as one at the
top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

BEAR_ONLY = ("agent", "sync.device", "sync.commands_link")
"""Modules only the bear runs: the cloud never imports them."""
CLOUD_ONLY = ("sync.cloud",)
"""Modules only the cloud runs: the bear never imports them."""


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every import in ``path`` (``from a import b`` gives ``a.b``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def violations(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    """``file:line imports module`` for each import under ``folder`` of a ``forbidden`` one."""
    lines = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        for line, module in imported_modules(path):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                lines.append(f"{relative}:{line} imports {module}")
    return sorted(set(lines))


def test_the_cloud_never_imports_the_bear():
    assert violations("sync/cloud", BEAR_ONLY) == []


def test_the_bear_never_imports_the_cloud():
    assert violations("agent", CLOUD_ONLY) == []


@pytest.mark.parametrize("shared", ["sync/protocol", "config"])
def test_the_shared_contract_imports_neither_side(shared):
    assert violations(shared, BEAR_ONLY + CLOUD_ONLY) == []


def test_the_scan_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "sync" / "cloud" / "late.py"
    source.parent.mkdir(parents=True)
    source.write_text("def run():\n    from agent.notify import Notifier\n    import sync.device\n")
    assert imported_modules(source) == [(2, "agent.notify"), (2, "agent.notify.Notifier"),
                                        (3, "sync.device")]
