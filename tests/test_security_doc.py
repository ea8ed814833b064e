"""``docs/security.md`` and ``SECURITY.md`` are checked against the tree: every test the
threat model names exists, every ETSI EN 303 645 provision has a row with tests, and the
disclosure policy states its contact, response times and support period."""

from __future__ import annotations

import ast
import datetime as dt
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REFERENCE = re.compile(r"`(tests/test_\w+\.py)::(test_\w+)`")
PROVISIONS = [f"5.{n}" for n in range(1, 14)] + ["6"]


def security() -> str:
    return (REPO / "docs" / "security.md").read_text()


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")}


def test_every_test_the_security_doc_names_exists() -> None:
    references = REFERENCE.findall(security())
    assert len(references) >= 30
    missing = []
    for file, name in sorted(set(references)):
        path = REPO / file
        if not path.exists() or name not in _tests_in(path):
            missing.append(f"{file}::{name}")
    assert not missing, f"docs/security.md names tests that do not exist: {missing}"


def test_every_etsi_provision_has_a_row_with_tests() -> None:
    table = security().partition("## ETSI EN 303 645 provisions")[2]
    rows = {}
    for line in table.splitlines():
        match = re.match(r"\| (\d+(?:\.\d+)?) ", line)
        if match:
            rows[match.group(1)] = line
    assert sorted(rows, key=lambda p: [int(x) for x in p.split(".")]) == PROVISIONS
    for provision, row in rows.items():
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 3, f"provision {provision}: {len(cells)} columns"
        assert REFERENCE.findall(cells[2]), f"provision {provision} names no test"
        assert "(pending merge)" not in cells[2], f"provision {provision}: its test is pending"


def test_every_attacker_section_names_a_test() -> None:
    model = security().partition("## Who attacks, what stops them")[2].partition(
        "\n## Arriving")[0]
    sections = re.split(r"\n### ", model)[1:]
    titles = [section.splitlines()[0] for section in sections]
    assert titles == ["Another bear's owner", "A thief with a bear's memory card",
                      "Anyone on the network or the broker",
                      "A parent-portal user of another family"]
    for title, section in zip(titles, sections, strict=True):
        assert REFERENCE.findall(section), f"{title}: no test named"
    thief = sections[1]
    assert "What a card thief can still do" in thief


def test_security_md_states_the_disclosure_policy_and_support_period() -> None:
    text = (REPO / "SECURITY.md").read_text()
    assert re.search(r"`security@[\w.-]+`", text), "no contact address"
    for step in ("acknowledge", "working days", "every **30 days**", "advisory"):
        assert step in text, step
    period = re.search(r"until at least\s+\*\*(\d{1,2} \w+ \d{4})\*\*", text)
    assert period, "no support end date"
    assert dt.datetime.strptime(period.group(1), "%d %B %Y").date() > dt.date.today()
    assert "docs/security.md" in text
    assert "SECURITY.md" in security()
