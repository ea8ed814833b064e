"""The boot guard: counts starts of an unconfirmed release and rolls back a crash loop.

Standard library only, on purpose: it must work even when the new release cannot import
a thing. systemd runs it before every start of the bear, with the system's Python, from a
copy the updater keeps outside every release::

    ExecStartPre=/usr/bin/python3 /opt/teddy/bootguard.py \
        --data-dir /var/lib/teddy --root /opt/teddy

While an update is pending (switched, not yet confirmed) each start increments a counter in
the state file; the start after ``max_starts`` switches ``current`` back to the previous
release, records why in the journal, and lets systemd start the previous release.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

JOURNAL_NAME = "update-journal.jsonl"
"""File name of the update journal inside the data dir."""
STATE_NAME = "update-state.json"
"""File name of the update state inside the data dir."""
LOCK_NAME = "update-state.lock"
"""File name of the lock serialising state changes."""


def now_iso() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@contextlib.contextmanager
def locked(data_dir: Path) -> Iterator[None]:
    """Hold the update state lock of ``data_dir`` (flock; released on exit or crash)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_state(data_dir: Path) -> dict:
    """The state file's content; an empty state when there is none."""
    try:
        state = json.loads((Path(data_dir) / STATE_NAME).read_text())
    except FileNotFoundError:
        state = {}
    state.setdefault("pending", None)
    state.setdefault("floor", None)
    state.setdefault("last_rollback", None)
    return state


def write_state(data_dir: Path, state: dict) -> None:
    """Replace the state file atomically and durably."""
    path = Path(data_dir) / STATE_NAME
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w") as handle:
        json.dump(state, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_dir(path.parent)


def journal_append(data_dir: Path, step: str, version: str | None, outcome: str,
                   **details: object) -> dict:
    """Append one JSON line to the update journal (fsynced) and return it."""
    entry = {"at": now_iso(), "step": step, "version": version, "outcome": outcome, **details}
    path = Path(data_dir) / JOURNAL_NAME
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path, "a") as handle:
        handle.write(json.dumps(entry, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return entry


def journal_read(data_dir: Path) -> list[dict]:
    """Every journal entry, oldest first; a torn last line is skipped."""
    path = Path(data_dir) / JOURNAL_NAME
    entries = []
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def switch_link(link: Path, target: Path) -> None:
    """Point ``link`` at ``target`` atomically: a new symlink, then ``os.replace``."""
    link = Path(link)
    relative = os.path.relpath(target, link.parent)
    temporary = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    os.symlink(relative, temporary)
    os.replace(temporary, link)
    fsync_dir(link.parent)


def note_start(data_dir: Path, root: Path) -> str | None:
    """Count one start of a pending release; roll back past ``max_starts``.

    Returns the rollback reason when it rolled back, else None.
    """
    with locked(data_dir):
        state = read_state(data_dir)
        pending = state["pending"]
        if not pending:
            return None
        pending["starts"] = int(pending.get("starts", 0)) + 1
        limit = int(pending.get("max_starts", 3))
        if pending["starts"] <= limit or not pending.get("previous"):
            write_state(data_dir, state)
            return None
        reason = (f"crash loop: release {pending['version']} was started {limit} times "
                  "without staying up")
        switch_link(Path(root) / "current", Path(pending["previous"]))
        state["pending"] = None
        state["last_rollback"] = {"version": pending["version"], "reason": reason,
                                  "at": now_iso()}
        write_state(data_dir, state)
    journal_append(data_dir, "rollback", pending["version"], "rolled_back", reason=reason,
                   to=Path(pending["previous"]).name, by="bootguard")
    return reason


def main(argv: list[str] | None = None) -> int:
    """``bootguard.py --data-dir DIR --root DIR``: always exits 0 so the start goes on."""
    parser = argparse.ArgumentParser(description="count starts of an unconfirmed release; "
                                                 "roll back a crash loop")
    parser.add_argument("--data-dir", required=True, type=Path, help="the bear's data dir")
    parser.add_argument("--root", required=True, type=Path, help="update.root (releases)")
    args = parser.parse_args(argv)
    try:
        reason = note_start(args.data_dir, args.root)
    except (OSError, ValueError, KeyError) as exc:
        print(f"bootguard: warning: start not counted: {exc}", file=sys.stderr)
        return 0
    if reason:
        print(f"bootguard: rolled back: {reason}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
