"""A full disk, a read-only filesystem, a damaged file: a clear error and an alert each,
never a half-written turn. The small filesystem is a real size-limited tmpfs."""

from __future__ import annotations

import os
import sqlite3
import subprocess

import pytest

from agent.alerts import AlertSink
from agent.safety.verdict import Action, Verdict
from agent.store import ConversationStore, Scope, TurnToKeep
from agent.store.errors import StoreCorruptError, StoreFullError, StoreReadOnlyError
from agent.store.verify import verify
from config.settings import load_settings

BALLAST_BYTES = 400_000
"""A file taking room on the small filesystem, deleted to free space."""


def _exchange(n: int) -> list[TurnToKeep]:
    child, bear = f"exchange {n} " + "a" * 500, f"answer {n} " + "b" * 500
    return [TurnToKeep("child", child, Verdict(Action.ALLOW, (), child)),
            TurnToKeep("bear", bear, Verdict(Action.ALLOW, (), bear))]


@pytest.fixture
def small_fs(tmp_path):
    """A 2 MiB tmpfs mounted for this test (needs root), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mountpoint)],
                   check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def _consistent(store: ConversationStore) -> None:
    raw = sqlite3.connect(store.path)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert raw.execute("SELECT count(*) FROM turns t LEFT JOIN outbox o ON o.seq = t.seq "
                           "WHERE o.seq IS NULL").fetchone()[0] == 0
    finally:
        raw.close()
    assert verify(store).ok


def test_disk_full_fails_cleanly_and_recovers_when_space_is_freed(small_fs):
    settings = load_settings(store={"data_dir": small_fs / "bear"})
    alerts = AlertSink()
    with ConversationStore.open(settings.store, create=True, alerts=alerts) as store:
        store.grant_consent("Mum", [Scope.KEEP, Scope.SYNC])
        (small_fs / "ballast").write_bytes(b"x" * BALLAST_BYTES)
        conversation = store.start_conversation()
        kept: list[int] = []
        with pytest.raises(StoreFullError, match="is full, nothing was kept — free space"):
            for n in range(5000):
                kept += store.append(conversation, _exchange(n))
        assert len(kept) > 20
        # the failed exchange left nothing behind, and the store still reads
        assert [t.seq for t in store.turns()] == kept
        assert store.outbox_depth() == len(kept)
        with pytest.raises(StoreFullError):  # still full: still a clean refusal
            store.append(conversation, _exchange(-1))
        assert [a.kind for a in alerts.recent()] == ["store.disk_full"]  # one alert, not a storm
        _consistent(store)
        (small_fs / "ballast").unlink()
        kept += store.append(conversation, _exchange(9999))
        assert [t.seq for t in store.turns()] == kept
        assert store.turns()[-1].text.startswith("answer 9999")
        _consistent(store)
    with ConversationStore.open(settings.store) as reopened:
        assert len(reopened.turns()) == len(kept)


def test_read_only_filesystem_is_a_clear_error(small_fs):
    settings = load_settings(store={"data_dir": small_fs / "bear"})
    with ConversationStore.open(settings.store, create=True) as store:
        store.grant_consent("Mum", [Scope.KEEP])
        store.append(store.start_conversation(), _exchange(1))
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    alerts = AlertSink()
    with pytest.raises(StoreReadOnlyError, match="read-only .* remount .* read-write"):
        ConversationStore.open(settings.store, alerts=alerts)
    assert [a.kind for a in alerts.recent()] == ["store.read_only"]
    subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
    with ConversationStore.open(settings.store) as store:
        assert len(store.turns()) == 2


@pytest.fixture
def filled(tmp_path):
    settings = load_settings(store={"data_dir": tmp_path / "bear"})
    with ConversationStore.open(settings.store, create=True) as store:
        store.grant_consent("Mum", [Scope.KEEP, Scope.SYNC])
        conversation = store.start_conversation()
        for n in range(40):
            store.append(conversation, _exchange(n))
    return settings


def test_a_file_that_is_not_a_database_is_named(filled):
    path = filled.store.db_path
    with path.open("r+b") as handle:
        handle.write(b"this is no database")
    alerts = AlertSink()
    with pytest.raises(StoreCorruptError, match=f"store {path} is damaged .* teddy store verify"):
        ConversationStore.open(filled.store, alerts=alerts)
    assert [a.kind for a in alerts.recent()] == ["store.corrupt"]


def test_a_damaged_page_is_found_by_reads_and_verify(filled):
    path = filled.store.db_path
    page_size = 4096
    pages = path.stat().st_size // page_size
    with path.open("r+b") as handle:  # scribble over the turns' pages, not the schema page
        for page in range(2, pages):
            handle.seek(page * page_size + 8)
            handle.write(os.urandom(64))
    alerts = AlertSink()
    with ConversationStore.open(filled.store, alerts=alerts) as store:
        with pytest.raises(StoreCorruptError, match="malformed"):
            store.turns()
        report = verify(store)
    assert not report.ok and any("integrity" in p or "malformed" in p for p in report.problems)
    assert "store.corrupt" in [a.kind for a in alerts.recent()]


def test_deletion_on_a_read_only_key_directory_still_shreds_and_says_so(small_fs, tmp_path):
    settings = load_settings(store={"data_dir": tmp_path / "bear",
                                    "key_file": small_fs / "teddy.key"})
    alerts = AlertSink()
    with ConversationStore.open(settings.store, create=True, alerts=alerts) as store:
        store.grant_consent("Mum", [Scope.KEEP])
        doomed, kept = store.start_conversation(), store.start_conversation()
        store.append(doomed, _exchange(1))
        store.append(kept, _exchange(2))
        subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
        report = store.delete_conversation(doomed)
        assert report.conversations == 1 and not report.key_rotated
        assert [a.kind for a in alerts.recent()] == ["store.key_rotation_failed"]
        assert "cannot stage a new key" in alerts.recent()[0].message
        assert [c.id for c in store.conversations()] == [kept]
        assert len(store.turns(kept)) == 2


@pytest.fixture
def failing_ext4(tmp_path):
    """A loop-mounted ext4 image with ``errors=remount-ro``, as an SD card is mounted; yields
    (mountpoint, a function that makes the kernel see a filesystem error)."""
    if os.geteuid() != 0:
        pytest.skip("loop-mounting an image needs root")
    image, mountpoint = tmp_path / "sd.img", tmp_path / "sd"
    mountpoint.mkdir()
    with image.open("wb") as handle:
        handle.truncate(8 * 2**20)
    subprocess.run(["mkfs.ext4", "-q", str(image)], check=True)
    mounted = subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(image),
                              str(mountpoint)], check=False, capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot loop-mount an ext4 image here: {mounted.stderr.strip()}")
    try:
        device = next(line.split()[0] for line in open("/proc/mounts")
                      if line.split()[1] == str(mountpoint))
        trigger = f"/sys/fs/ext4/{os.path.basename(device)}/trigger_fs_error"
        if not os.path.exists(trigger):
            pytest.skip("this kernel cannot inject an ext4 error (no trigger_fs_error)")

        def fail() -> None:
            with open(trigger, "w") as handle:
                handle.write("1")

        yield mountpoint, fail
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_sd_card_turning_read_only_while_running(failing_ext4):
    mountpoint, fail = failing_ext4
    settings = load_settings(store={"data_dir": mountpoint / "bear"})
    alerts = AlertSink()
    with ConversationStore.open(settings.store, create=True, alerts=alerts) as store:
        store.grant_consent("Mum", [Scope.KEEP, Scope.SYNC])
        conversation = store.start_conversation()
        kept = store.append(conversation, _exchange(1))
        fail()  # the kernel remounts the filesystem read-only, as after an SD-card fault
        with pytest.raises(StoreReadOnlyError, match="is read-only"):
            store.append(conversation, _exchange(2))
        assert [a.kind for a in alerts.recent()] == ["store.read_only"]
        assert [t.seq for t in store.turns()] == kept  # what was kept still reads
