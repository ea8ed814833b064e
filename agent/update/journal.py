"""The bear's own record of updates: a JSON-lines journal and a small state file.

Both live in the data dir. The journal only grows (one line a step: what, which version,
from which release, outcome); the state file says what is in flight (a switched but not
yet confirmed release, its start count) and the anti-rollback floor. The boot guard
(:mod:`agent.update.bootguard`, stdlib only) reads and writes the same files.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from agent.update import bootguard

logger = logging.getLogger(__name__)

JOURNAL_NAME = bootguard.JOURNAL_NAME
"""File name of the update journal inside the data dir."""
STATE_NAME = bootguard.STATE_NAME
"""File name of the update state inside the data dir."""


class UpdateJournal:
    """Appends and reads the JSON-lines update journal of one bear."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / JOURNAL_NAME
        """Path of the journal file."""

    def record(self, step: str, version: str | None, outcome: str, **details: Any) -> dict:
        """Append one step (durably) and return the entry written."""
        entry = bootguard.journal_append(self.path.parent, step, version, outcome, **details)
        logger.info("update %s %s: %s", step, version or "-", outcome)
        return entry

    def entries(self) -> list[dict]:
        """Every entry, oldest first (a torn last line is skipped)."""
        return bootguard.journal_read(self.path.parent)


class UpdateState:
    """The in-flight update and the floor, kept in a small JSON file (atomic replace)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        """Data dir holding the state file."""

    def read(self) -> dict:
        """The state: ``pending`` (dict or None), ``floor`` (str or None), ``last_rollback``."""
        with bootguard.locked(self.data_dir):
            return bootguard.read_state(self.data_dir)

    def begin(self, version: str, release_dir: Path, previous_dir: Path | None,
              max_starts: int) -> None:
        """Mark ``version`` switched but unconfirmed (start count 0)."""
        with bootguard.locked(self.data_dir):
            state = bootguard.read_state(self.data_dir)
            state["pending"] = {"version": version, "release": str(release_dir),
                                "previous": str(previous_dir) if previous_dir else None,
                                "starts": 0, "max_starts": max_starts}
            bootguard.write_state(self.data_dir, state)

    def finish(self, version: str, floor: str | None) -> None:
        """Clear the pending update of ``version`` and raise the floor to ``floor``."""
        with bootguard.locked(self.data_dir):
            state = bootguard.read_state(self.data_dir)
            pending = state.get("pending")
            if pending and pending.get("version") == version:
                state["pending"] = None
            _raise(state, floor)
            bootguard.write_state(self.data_dir, state)

    def raise_floor(self, floor: str) -> None:
        """Raise the floor to ``floor`` (never lowers it): the shipped version at adoption."""
        with bootguard.locked(self.data_dir):
            state = bootguard.read_state(self.data_dir)
            if _raise(state, floor):
                bootguard.write_state(self.data_dir, state)

    def clear_pending(self) -> None:
        """Forget any pending update (after a rollback done by the updater itself)."""
        with bootguard.locked(self.data_dir):
            state = bootguard.read_state(self.data_dir)
            state["pending"] = None
            bootguard.write_state(self.data_dir, state)


def _raise(state: dict, floor: str | None) -> bool:
    """Set ``state["floor"]`` to ``floor`` when that is higher; whether it changed."""
    from sync.protocol.release import parse_version

    old = state.get("floor")
    if floor and (old is None or parse_version(floor) > parse_version(old)):
        state["floor"] = floor
        return True
    return False
