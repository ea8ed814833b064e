"""The fleet's broker accounts, each bound to its own client id (issue 21, item 7).

Mosquitto's dynamic-security plugin binds an account to one exact client id (or to none), and
fleet operations open several connections at once: ``teddy-cloud fleet serve`` keeps one
long-lived link and opens another for each pairing approval, and an operator may run two
``teddy-cloud fleet`` commands side by side. An unbound ``svc.fleet`` could connect with a
bear's client id ``teddy-<bear>`` and take over its session. So provisioning a fleet account
``svc.fleet`` makes a small fixed pool of :data:`POOL_SIZE` accounts with the same password,
each bound to its own name as client id: ``svc.fleet``, ``svc.fleet-1`` … ``svc.fleet-7``
(:func:`pool_names`).

A connection takes one free slot of the pool (:func:`take`): a slot is held by an exclusive
``flock`` on a lock file in :data:`LOCK_DIR` (per broker host and port), so two processes on
one host never use the same client id (the second would push the first off the broker).
``fleet serve`` runs with ``PrivateTmp=yes``, where the operator's locks are not visible; it
takes its slots from the first half of the pool (:func:`use_group` ``"serve"``), every other
process from the second half, so the two never meet. Locks do not cross hosts: a second
host running fleet commands gets a fleet account of its own
(``teddy-cloud provision --service fleet svc.fleet-ops``).
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from config.errors import CloudError

logger = logging.getLogger(__name__)

POOL_SIZE = 8
"""Bound accounts made per fleet account (``svc.fleet`` and ``svc.fleet-1`` … ``-7``)."""
GROUPS = {"serve": range(0, POOL_SIZE // 2), "other": range(POOL_SIZE // 2, POOL_SIZE)}
"""Which slots each kind of process takes (``fleet serve``'s private /tmp hides its locks)."""
LOCK_DIR = Path(tempfile.gettempdir()) / "teddy-mqtt-slots"
"""Where the slot locks live (one file per broker, account and slot)."""

_group = "other"
_held: set[str] = set()
_held_lock = threading.Lock()


def pool_names(base: str) -> list[str]:
    """The accounts (= client ids) of fleet account ``base``'s pool, slot 0 first."""
    return [base] + [f"{base}-{slot}" for slot in range(1, POOL_SIZE)]


def use_group(group: str) -> None:
    """Take slots from ``group`` (``"serve"`` for ``teddy-cloud fleet serve``) from now on."""
    global _group
    if group not in GROUPS:
        raise ValueError(f"unknown slot group {group!r}: {sorted(GROUPS)}")
    _group = group


@dataclass
class Slot:
    """One pool account held by this process until :meth:`close` (idempotent)."""

    username: str
    """The account, which is also the client id to connect with."""
    _key: str
    _descriptor: int | None = field(default=None, repr=False)

    def close(self) -> None:
        """Let the slot go."""
        if self._descriptor is None:
            return
        os.close(self._descriptor)  # releases the flock
        self._descriptor = None
        with _held_lock:
            _held.discard(self._key)

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def take(base: str, host: str, port: int, timeout_s: float) -> Slot:
    """A free slot of ``base``'s pool on broker ``host:port``, waiting up to ``timeout_s``;
    :class:`CloudError` when every slot of this process's group stays in use."""
    names = pool_names(base)
    deadline = time.monotonic() + timeout_s
    while True:
        for slot in GROUPS[_group]:
            taken = _try(names[slot], host, port)
            if taken is not None:
                return taken
        if time.monotonic() >= deadline:
            raise CloudError(
                f"all {len(GROUPS[_group])} broker accounts of {base} for this host are in use "
                f"(lock files in {LOCK_DIR}) — wait for a running teddy-cloud fleet command to "
                "finish, or stop one")
        time.sleep(0.05)


def _try(username: str, host: str, port: int) -> Slot | None:
    key = f"{host}-{port}-{username}"
    with _held_lock:
        if key in _held:
            return None
        _held.add(key)
    try:
        descriptor = _open_lock(LOCK_DIR / f"{key}.lock")
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise
    except OSError:
        with _held_lock:
            _held.discard(key)
        return None
    logger.debug("broker account %s taken", username)
    return Slot(username, key, descriptor)


def _open_lock(path: Path) -> int:
    """The lock file's descriptor (the folder and file made shared on first use, so the
    operator's and other users' processes see each other's locks)."""
    if not path.parent.is_dir():
        path.parent.mkdir(mode=0o1777, exist_ok=True)
        try:
            os.chmod(path.parent, 0o1777)
        except PermissionError:
            pass  # made by another user a moment ago
    descriptor = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        os.fchmod(descriptor, 0o666)
    except PermissionError:
        pass  # another user's file: theirs to mode
    return descriptor
