"""The privacy notice parents consent to: ``docs/privacy.md``, versioned by its
``Notice version:`` line, shown as simple HTML (headings, paragraphs, lists, tables).

The app reads it as package data, ``sync/cloud/portal/privacy.md`` (a link to
``docs/privacy.md`` in a checkout; a copy of it in the wheel), so an installed app has it."""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from pathlib import Path

from config.errors import ConfigError

NOTICE = Path(__file__).with_name("privacy.md")
VERSION = re.compile(r"^Notice version: (\S+)\s*$", re.MULTILINE)
OPERATORS_ONLY = re.compile(r"^<!-- operators -->\n.*?^<!-- /operators -->\n?",
                            re.MULTILINE | re.DOTALL)
"""Blocks of the notice for the bear's operator (commands, file names): never shown to
parents, and not part of what they consent to."""


def for_parents(text: str) -> str:
    """The notice without its operator-only blocks: what parents read and consent to."""
    return OPERATORS_ONLY.sub("", text)


@dataclass(frozen=True)
class Notice:
    """One version of the notice."""

    version: str
    """Its version line."""
    sha256: str
    """SHA-256 of the exact text consented to."""
    html: str
    """The text as HTML (escaped)."""


def current(path: Path = NOTICE) -> Notice:
    """The notice as it is now."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the privacy notice {path}: {exc.strerror}") from None
    found = VERSION.search(text)
    if found is None:
        raise ConfigError(f"{path} has no 'Notice version: ...' line — add one")
    shown = for_parents(text)
    return Notice(found.group(1), hashlib.sha256(shown.encode()).hexdigest(), to_html(shown))


def _inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def to_html(markdown: str) -> str:
    """A small, safe Markdown subset as HTML (every text escaped)."""
    out: list[str] = []
    para: list[str] = []
    state = ""

    def close() -> None:
        nonlocal state
        if para:
            out.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()
        if state:
            out.append(f"</{state}>")
            state = ""

    for line in markdown.splitlines():
        stripped = line.strip()
        heading = re.match(r"^(#{1,4}) (.*)", stripped)
        if not stripped or heading or VERSION.match(stripped):
            close()
            if heading:
                level = min(len(heading.group(1)) + 1, 4)  # the page's own h1 comes first
                out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif stripped.startswith(("- ", "* ")):
            if para or state != "ul":
                close()
                out.append("<ul>")
                state = "ul"
            out.append(f"<li>{_inline(stripped[2:])}</li>")
        elif stripped.startswith("|"):
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            if all(set(c) <= set("-: ") for c in cells):
                continue
            if state != "table":
                close()
                out.append("<table>")
                state = "table"
            out.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in cells) + "</tr>")
        elif state == "ul" and line.startswith("  "):
            out[-1] = out[-1][:-5] + " " + _inline(stripped) + "</li>"
        else:
            if state:
                close()
            para.append(stripped)
    close()
    return "\n".join(out)
