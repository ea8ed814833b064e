"""What every Teddy command line shares: the common options, loading settings, logging, and
turning a :class:`TeddyError` into one line on stderr and exit code 1.

``teddy`` (the bear) and ``teddy-cloud`` both build on it; each keeps its own commands.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from config.errors import TeddyError
from config.settings import load_settings

Commands = argparse._SubParsersAction
"""The sub-command group every area's ``register(commands)`` adds its parsers to."""


def new_parser(prog: str, description: str) -> tuple[argparse.ArgumentParser, Commands]:
    """A parser with ``--config`` and ``--log-level``, and its sub-command group."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", metavar="FILE",
                        help="TOML config file (default: $TEDDY_CONFIG)")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="override logging.level")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    return parser, commands


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv``, load settings, set up logging, and run the chosen handler.

    A handler whose parser sets ``raw_config=True`` gets ``None`` for settings (it loads them
    itself, e.g. to report every invalid field).
    """
    from config.logs import configure_logging  # JSON lines off a TTY; no transcripts/secrets

    args = parser.parse_args(argv)
    try:
        if getattr(args, "raw_config", False):
            return args.func(args, None)
        settings = load_settings(args.config)
        configure_logging(args.log_level or settings.logging.level, settings)
        return args.func(args, settings)
    except TeddyError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
