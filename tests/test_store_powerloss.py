"""Power loss: processes SIGKILLed while appending, and while rotating the key.

Each victim is a forked child (the modules are already imported, so a kill lands within
milliseconds of work, not during interpreter start-up). The child reports each append
on a pipe only after ``append`` returned, so a reported turn is one the store said it kept.
SIGKILL stops the process, not the kernel: it proves SQLite's transactions and our write
order, while ``synchronous = FULL`` covers the page cache a real power cut would lose.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import time

import pytest

from agent.safety.verdict import Action, Verdict
from agent.store import ConversationStore, TurnToKeep
from agent.store.keys import FileKeyProvider
from agent.store.verify import verify
from config.settings import load_settings

KILLS = 60
"""Appending processes killed (the issue asks for at least 50)."""
ROTATION_KILLS = 25
"""Rotating processes killed at random moments."""


def _turn(role: str, text: str) -> TurnToKeep:
    return TurnToKeep(role, text, Verdict(Action.ALLOW, (), text))


def _fork(work, *args) -> tuple[int, int]:
    """Run ``work(write_fd, *args)`` in a forked child; returns (pid, read end of its pipe)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read_fd)
        try:
            work(write_fd, *args)
        finally:
            os._exit(0)
    os.close(write_fd)
    return pid, read_fd


def _kill_after(pid: int, read_fd: int, delay: float) -> list[str]:
    """SIGKILL the child after ``delay`` seconds; returns the complete lines it reported."""
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    text = b"".join(chunks).decode()
    return text.split("\n")[:-1]  # a line cut short by the kill is not a report


def _appender(write_fd: int, data_dir: str, round_no: int) -> None:
    settings = load_settings(store={"data_dir": data_dir})
    with ConversationStore.open(settings.store) as store:
        n = 0
        while True:
            conversation = store.start_conversation()
            for _ in range(5):
                child, bear = f"r{round_no} n{n} child", f"r{round_no} n{n} bear"
                seqs = store.append(conversation, [_turn("child", child), _turn("bear", bear)])
                os.write(write_fd, f"{seqs[0]} {seqs[1]} {conversation} {child}|{bear}\n".encode())
                n += 1


def _assert_consistent(consented_settings, reported: dict[int, tuple[str, str]]) -> None:
    raw = sqlite3.connect(consented_settings.store.db_path)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert raw.execute("SELECT count(*) FROM turns t LEFT JOIN outbox o ON o.seq = t.seq "
                           "WHERE o.seq IS NULL").fetchone()[0] == 0
        assert raw.execute("SELECT count(*) FROM outbox o LEFT JOIN turns t ON t.seq = o.seq "
                           "WHERE t.seq IS NULL").fetchone()[0] == 0
        odd = raw.execute("SELECT count(*) FROM (SELECT conversation_id FROM turns "
                          "GROUP BY conversation_id HAVING count(*) % 2 = 1)").fetchone()[0]
        assert odd == 0  # an exchange is kept whole or not at all
    finally:
        raw.close()
    with ConversationStore.open(consented_settings.store) as store:
        kept = {t.seq: (t.conversation_id, t.text) for t in store.turns()}
        assert verify(store).ok
    missing = [seq for seq in reported if seq not in kept]
    assert not missing, f"turns reported kept but gone after a kill: {missing[:10]}"
    assert all(kept[seq] == expected for seq, expected in reported.items())


def test_sigkill_while_appending_never_loses_or_tears_a_turn(consented_settings):
    rng = random.Random(5)
    reported: dict[int, tuple[str, str]] = {}
    killed_mid_run = 0
    for round_no in range(KILLS):
        pid, read_fd = _fork(_appender, str(consented_settings.store.data_dir), round_no)
        lines = _kill_after(pid, read_fd, rng.uniform(0.005, 0.12))
        for line in lines:
            first, second, conversation, texts = line.split(" ", 3)
            child, bear = texts.split("|")
            reported[int(first)] = (conversation, child)
            reported[int(second)] = (conversation, bear)
        killed_mid_run += bool(lines)
        if round_no % 10 == 9:
            _assert_consistent(consented_settings, reported)
    _assert_consistent(consented_settings, reported)
    assert killed_mid_run >= KILLS // 2, "most kills should land while turns are being kept"
    assert len(reported) > 4 * KILLS


def _conversations(consented_settings, count: int) -> dict[str, list[str]]:
    with ConversationStore.open(consented_settings.store) as store:
        for i in range(count):
            conversation = store.start_conversation()
            store.append(conversation, [_turn("child", f"story {i}"), _turn("bear", f"end {i}")])
        return {c.id: [t.text for t in store.turns(c.id)] for c in store.conversations()}


def _rotator(write_fd: int, data_dir: str) -> None:
    settings = load_settings(store={"data_dir": data_dir})
    with ConversationStore.open(settings.store) as store:
        while True:
            store.rotate_key()
            os.write(write_fd, b"rotated\n")


def _assert_all_readable(consented_settings, expected: dict[str, list[str]]) -> None:
    with ConversationStore.open(consented_settings.store) as store:
        assert {c: [t.text for t in store.turns(c)] for c in expected} == expected
        assert verify(store).ok
    assert not FileKeyProvider(consented_settings.store.key_path).pending_path.exists()


def test_sigkill_during_key_rotation_leaves_every_conversation_readable(consented_settings):
    expected = _conversations(consented_settings, 150)
    rng = random.Random(7)
    pending = FileKeyProvider(consented_settings.store.key_path).pending_path
    rotations = interrupted = 0
    for _ in range(ROTATION_KILLS):
        pid, read_fd = _fork(_rotator, str(consented_settings.store.data_dir))
        rotations += len(_kill_after(pid, read_fd, rng.uniform(0.01, 0.15)))
        interrupted += pending.exists()  # killed between staging and promoting a key
        _assert_all_readable(consented_settings, expected)
    assert rotations > 0  # the victims did rotate between kills
    assert interrupted >= ROTATION_KILLS // 5, "too few kills landed inside a rotation"


def _die(*_args) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _rotate_and_die_at(write_fd: int, data_dir: str, step: str) -> None:
    """Rotate once, SIGKILLing this process at ``step`` (the deterministic worst moments)."""
    if step == "before-promote":  # the database committed to the new key; the file is old
        FileKeyProvider.promote_pending = _die
    elif step == "before-commit":  # the new key is staged; the database still has the old
        import agent.store.kek as kek

        kek.KEK_ID = "no-such-meta-row"  # the UPDATE then matches nothing; we die before COMMIT
        original = kek._rewrap_all

        def rewrap_then_die(conn, old, new):
            original(conn, old, new)
            _die()

        kek._rewrap_all = rewrap_then_die
    settings = load_settings(store={"data_dir": data_dir})
    with ConversationStore.open(settings.store) as store:
        store.rotate_key()


@pytest.mark.parametrize("step", ["before-commit", "before-promote"])
def test_rotation_killed_at_each_step_recovers(consented_settings, step):
    expected = _conversations(consented_settings, 20)
    key_before = consented_settings.store.key_path.read_bytes()
    pid, read_fd = _fork(_rotate_and_die_at, str(consented_settings.store.data_dir), step)
    _, status = os.waitpid(pid, 0)
    os.close(read_fd)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert FileKeyProvider(consented_settings.store.key_path).pending_path.exists()
    _assert_all_readable(consented_settings, expected)
    rotated = consented_settings.store.key_path.read_bytes() != key_before
    assert rotated == (step == "before-promote")


DELETION_KILLS = 15
"""Deleting processes killed at random moments."""


def _deleter(write_fd: int, data_dir: str) -> None:
    settings = load_settings(store={"data_dir": data_dir})
    with ConversationStore.open(settings.store) as store:
        for info in store.conversations():
            store.delete_conversation(info.id)
            os.write(write_fd, f"{info.id}\n".encode())


def test_sigkill_during_deletion_leaves_whole_conversations_or_none(consented_settings):
    expected = _conversations(consented_settings, 120)
    rng = random.Random(11)
    deleted: set[str] = set()
    for _ in range(DELETION_KILLS):
        pid, read_fd = _fork(_deleter, str(consented_settings.store.data_dir))
        deleted.update(_kill_after(pid, read_fd, rng.uniform(0.01, 0.1)))
        raw = sqlite3.connect(consented_settings.store.db_path)
        try:
            assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            left = {row[0] for row in raw.execute("SELECT id FROM conversations")}
            assert not left & deleted  # a reported deletion is never undone by a kill
            unreported = set(expected) - deleted - left
            assert len(unreported) <= 1  # committed just before the kill, not yet reported
            deleted |= unreported
            assert raw.execute("SELECT count(*) FROM turns WHERE conversation_id NOT IN "
                               "(SELECT id FROM conversations)").fetchone()[0] == 0
        finally:
            raw.close()
        _assert_all_readable(consented_settings, {c: t for c,
                                                  t in expected.items() if c not in deleted})
    assert deleted, "the deleting processes got some work done between kills"


def _delete_and_die_before_rotating(write_fd: int, data_dir: str) -> None:
    ConversationStore._rotate_after_delete = _die
    settings = load_settings(store={"data_dir": data_dir})
    with ConversationStore.open(settings.store) as store:
        store.delete_conversation(store.conversations()[0].id)


def test_deletion_killed_before_its_key_rotation_rotates_at_next_open(consented_settings):
    expected = _conversations(consented_settings, 5)
    doomed = next(iter(expected))
    key_before = consented_settings.store.key_path.read_bytes()
    pid, read_fd = _fork(_delete_and_die_before_rotating, str(consented_settings.store.data_dir))
    _, status = os.waitpid(pid, 0)
    os.close(read_fd)
    assert os.WIFSIGNALED(status) and consented_settings.store.key_path.read_bytes() == key_before
    del expected[doomed]
    _assert_all_readable(consented_settings, expected)  # opening it finished the rotation
    assert consented_settings.store.key_path.read_bytes() != key_before
    with ConversationStore.open(consented_settings.store) as store:
        assert doomed not in [c.id for c in store.conversations()]
        assert store._conn.execute("SELECT count(*) FROM meta WHERE key = 'rotation_due'"
                                   ).fetchone()[0] == 0
