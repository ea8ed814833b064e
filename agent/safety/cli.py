"""``teddy safety check [--output] [TEXT ...]``: judge texts the way the bear does."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import Any

from agent.safety import filter_for


def register(subparsers: Any) -> None:
    """Add the ``safety`` command (with its ``check`` sub-command) to the ``teddy`` CLI."""
    safety = subparsers.add_parser("safety", help="the child-safety filter")
    commands = safety.add_subparsers(dest="safety_command", metavar="COMMAND")
    commands.required = True
    check = commands.add_parser(
        "check",
        help="print one JSON verdict per text (arguments, or one per line on stdin)",
        description="Judge each TEXT as the child's words (or, with --output, as the "
        "bear's) and print one JSON object per text: action, categories, redacted, matches, "
        "stage (rules or semantic), and for a semantic verdict the nearest exemplar and its "
        "similarity; severity for an escalation.",
    )
    check.add_argument("--output", action="store_true",
                       help="judge as something the bear would say")
    check.add_argument("texts", nargs="*", metavar="TEXT",
                       help="texts to judge; none: read one per line from stdin")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace, settings: Any = None) -> int:
    """Print a verdict per text; exit 0 when every text is allowed, 1 otherwise."""
    safety_filter = filter_for(settings)
    check = safety_filter.check_output if args.output else safety_filter.check_input
    all_allowed = True
    for text in _texts(args.texts):
        verdict = check(text)
        all_allowed = all_allowed and verdict.allowed
        print(json.dumps(verdict.to_dict(), ensure_ascii=False), flush=True)
    return 0 if all_allowed else 1


def _texts(given: list[str]) -> Iterable[str]:
    if given:
        yield from given
        return
    for line in sys.stdin:
        line = line.rstrip("\n")
        if line.strip():
            yield line


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m agent.safety.cli check ...``) for tuning sessions."""
    parser = argparse.ArgumentParser(prog="teddy")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["safety", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args, None)


if __name__ == "__main__":
    sys.exit(main())
