"""Staged rollouts across a fleet of simulated bears, in a PostgreSQL database of their own.

Each simulated bear runs the real :class:`Updater` in a thread — it fetches the signed
release from a local HTTP server, verifies signature and hashes, switches its ``current``
link, journals every step, rolls back by itself — with fakes only where a real venv and
process per bear would be too slow: an installer that keeps the verified wheels, a service
that is always up, and a health check whose outcome depends on the bear's hardware (the
release under test breaks "rev-b" bears). Each bear reports back the way the fleet's
``update`` command result would reach PostgreSQL.
"""

from __future__ import annotations

import json
import queue
import shutil
import threading
import time
from pathlib import Path

import pytest
from support.database import Database
from support.processes import run_cli
from support.releases import ReleaseServer, release_kit

from agent.update import UpdateDeferred, Updater, UpdateRefused
from agent.update.bootguard import journal_read
from agent.update.health import HealthReport
from agent.update.install import mark_installed
from config.settings import load_settings
from sync.cloud.release import record_release
from sync.cloud.rollout import RolloutError, Rollouts, parse_stages, plan
from sync.protocol.release import ReleaseManifest

FLEET_SIZE = 20


@pytest.fixture(scope="session")
def kit(tmp_path_factory: pytest.TempPathFactory):
    """Signed test releases, built once per session."""
    return release_kit(tmp_path_factory.getbasetemp() / "releases")


@pytest.fixture
def fleet_db():
    """A database of this test's own (its bears stay out of other tests' fleets)."""
    from sync.cloud.migrate import migrate

    db = Database()
    with db.connect() as conn:
        migrate(conn)
    yield db
    db.drop()


class KeepWheelsInstaller:
    """Installer twin: keeps the verified wheels in the release directory (no venv)."""

    def install(self, manifest: ReleaseManifest, staged: Path, release_dir: Path) -> None:
        """Copy the verified files and mark the release installed."""
        if release_dir.exists():
            shutil.rmtree(release_dir)
        shutil.copytree(staged / "wheels", release_dir / "wheels")
        mark_installed(manifest, staged, release_dir)


class AlwaysUpService:
    """Service twin: a restart succeeds at once and the bear stays up."""

    def __init__(self) -> None:
        self.restarts = 0

    def prepare(self) -> None:
        """Nothing to prepare."""

    def restart(self) -> None:
        """Count the restart."""
        self.restarts += 1

    def is_active(self) -> bool:
        """Always up."""
        return True

    def close(self) -> None:
        """Nothing to close."""


class SimulatedBear:
    """One bear: a real Updater in a thread, taking ``update`` commands from an inbox."""

    def __init__(self, device_id: str, base: Path, public_key: str, dsn: str) -> None:
        self.device_id = device_id
        self.hardware = "rev-a"
        self.data_dir = base / device_id / "data"
        self.root = base / device_id / "opt"
        self.dsn = dsn
        self.inbox: queue.Queue = queue.Queue()
        settings = load_settings(store={"data_dir": self.data_dir},
                                 update={"root": self.root, "public_key": public_key,
                                         "confirm_after_s": 0, "service": "simulated"})
        self.updater = Updater(settings, installer=KeepWheelsInstaller(),
                               service=AlwaysUpService(), health_check=self._health,
                               battery=lambda: None)
        self.thread = threading.Thread(target=self._serve, name=device_id, daemon=True)

    def _health(self, release_dir: Path, version: str) -> HealthReport:
        if self.hardware == "rev-b" and version == "0.2.0":
            return HealthReport(False, "audio: rev-b codec not found by 0.2.0", version)
        return HealthReport(True, "healthy", version)

    def _serve(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            rollouts = Rollouts(conn, progress=lambda line: None)
            while (message := self.inbox.get()) is not None:
                version, url = message
                try:
                    result = self.updater.apply(url)
                    outcome, reason, running = result.outcome, result.reason, result.running
                except (UpdateRefused, UpdateDeferred) as exc:
                    outcome = "refused" if isinstance(exc, UpdateRefused) else "deferred"
                    reason, running = str(exc), self.updater.current_version()
                rollouts.record_result(self.device_id, version, outcome, reason, running)

    def current(self) -> str | None:
        """Name of the release ``current`` points at (None: never touched)."""
        link = self.root / "current"
        return link.resolve().name if link.is_symlink() else None


class InboxDispatcher:
    """Delivers ``update`` to a simulated bear's inbox (the MQTT command, in the test)."""

    def __init__(self, bears: dict[str, SimulatedBear]) -> None:
        self.bears = bears
        self.sent: list[str] = []

    def send_update(self, device_id: str, version: str, release_url: str) -> str:
        """Queue the command for the bear."""
        self.sent.append(device_id)
        self.bears[device_id].inbox.put((version, release_url))
        return f"cmd-{device_id}"


@pytest.fixture
def fleet(fleet_db, kit, tmp_path):
    """Twenty simulated bears registered as devices, their threads running."""
    bears = {}
    with fleet_db.connect() as conn:
        for number in range(FLEET_SIZE):
            device_id = f"sim-bear-{number:02d}"
            conn.execute("INSERT INTO devices (device_id) VALUES (%s)", (device_id,))
            bears[device_id] = SimulatedBear(device_id, tmp_path, kit.public_key, fleet_db.dsn)
    for bear in bears.values():
        bear.thread.start()
    yield bears
    for bear in bears.values():
        bear.inbox.put(None)
    for bear in bears.values():
        bear.thread.join(10)


def publish(conn, kit, server: ReleaseServer) -> str:
    """Record the 0.2.0 test release in ``releases``; its URL."""
    path = kit.release("0.2.0")
    url = f"{server.url}/{path}"
    manifest = ReleaseManifest.from_payload((kit.store / path / "manifest.json").read_bytes())
    record_release(conn, manifest, url, path.strip("/"))
    return url


def stage_members(conn, rollout_id: int) -> dict[int, list[str]]:
    """The planned bears of every stage."""
    members: dict[int, list[str]] = {}
    for device_id, stage in conn.execute("SELECT device_id, stage FROM rollout_targets WHERE"
                                         " rollout_id = %s ORDER BY device_id", (rollout_id,)):
        members.setdefault(stage, []).append(device_id)
    return members


def test_rollout_halts_at_the_failure_threshold_and_never_reaches_later_stages(
        fleet, fleet_db, kit):
    lines: list[str] = []
    with ReleaseServer(kit.store) as server, fleet_db.connect() as conn:
        url = publish(conn, kit, server)
        rollouts = Rollouts(conn, progress=lines.append, poll_s=0.05)
        rollout_id = rollouts.start("0.2.0", url, parse_stages("5%,10%,50%,100%"),
                                    pause_on_failures=2, stage_timeout_s=60)
        members = stage_members(conn, rollout_id)
        assert [len(members[s]) for s in (1, 2, 3, 4)] == [1, 1, 8, 10]
        failing = members[3][:2]
        for device_id in [*failing, members[4][0]]:
            fleet[device_id].hardware = "rev-b"  # 0.2.0 breaks these bears

        state = rollouts.run(rollout_id, InboxDispatcher(fleet))
        status = rollouts.status(rollout_id)
        updates = dict(conn.execute("SELECT device_id, state FROM device_updates").fetchall())

    assert state == "halted" and status["state"] == "halted"
    assert sorted(status["failing"]) == sorted(failing)
    assert all("rev-b codec" in reason for reason in status["failing"].values())
    assert status["stage"] == 3
    assert status["stages"][3]["outcomes"] == {"waiting": 10}
    later = members[4]
    assert all(fleet[d].current() is None for d in later), "a later-stage bear was touched"
    assert all(not journal_read(fleet[d].data_dir) for d in later)
    assert all(d not in updates for d in later)
    for device_id in failing:
        assert fleet[device_id].current() == "0.1.0"  # rolled back by itself
        assert updates[device_id] == "rolled_back"
    healthy = [d for s in (1, 2, 3) for d in members[s] if d not in failing]
    assert all(fleet[d].current() == "0.2.0" for d in healthy)
    assert all(updates[d] == "current" for d in healthy)
    assert any(line.startswith("halted at stage 3/4: 2 bear(s) failed") for line in lines)
    assert any(f"  {failing[0]}: rolled_back" in line for line in lines)


def test_rollout_below_the_threshold_reaches_every_bear(fleet, fleet_db, kit):
    lines: list[str] = []
    with ReleaseServer(kit.store) as server, fleet_db.connect() as conn:
        url = publish(conn, kit, server)
        rollouts = Rollouts(conn, progress=lines.append, poll_s=0.05, retry_deferred_s=0.2)
        rollout_id = rollouts.start("0.2.0", url, parse_stages("10%,50%,100%"),
                                    pause_on_failures=2, stage_timeout_s=60)
        members = stage_members(conn, rollout_id)
        fleet[members[3][0]].hardware = "rev-b"
        chatty = fleet[members[2][0]]
        talking = iter([True])  # the child is talking when the first command arrives
        chatty.updater.is_busy = lambda: next(talking, False)
        state = rollouts.run(rollout_id, InboxDispatcher(fleet))
        status = rollouts.status(rollout_id)
    assert state == "completed"
    assert len(status["failing"]) == 1
    assert sum(b.current() == "0.2.0" for b in fleet.values()) == FLEET_SIZE - 1
    assert [e["outcome"] for e in journal_read(chatty.data_dir)][:1] == ["deferred"]
    assert chatty.current() == "0.2.0"
    assert f"  {chatty.device_id}: deferred; sending again" in lines
    assert lines[-1].startswith(f"rollout {rollout_id} completed")


class Nobody:
    """A dispatcher whose bears never answer."""

    def send_update(self, device_id: str, version: str, release_url: str) -> None:
        """Send into the void."""
        return None


def mute_fleet(conn, count: int) -> None:
    """Register bears that will never report."""
    for number in range(count):
        conn.execute("INSERT INTO devices (device_id) VALUES (%s)", (f"mute-{number:02d}",))


def test_bears_that_never_report_count_as_failures(fleet_db, kit):
    lines: list[str] = []
    with ReleaseServer(kit.store) as server, fleet_db.connect() as conn:
        url = publish(conn, kit, server)
        mute_fleet(conn, 4)
        rollouts = Rollouts(conn, progress=lines.append, poll_s=0.05)
        rollout_id = rollouts.start("0.2.0", url, [25, 100], pause_on_failures=3,
                                    stage_timeout_s=0.3)
        state = rollouts.run(rollout_id, Nobody())
        status = rollouts.status(rollout_id)
    assert state == "halted"
    assert status["stages"][0]["outcomes"] == {"timeout": 1}  # 1 < 3: stage 2 went ahead
    assert status["stages"][1]["outcomes"] == {"timeout": 3}
    assert all("no healthy report within 0.3 s" in r for r in status["failing"].values())


def test_an_operator_aborts_a_running_rollout_from_the_command_line(fleet_db, kit, env):
    cli_env = dict(env, TEDDY_CLOUD__PG_DSN=fleet_db.dsn)
    with ReleaseServer(kit.store) as server, fleet_db.connect() as conn:
        url = publish(conn, kit, server)
        mute_fleet(conn, 4)
        rollouts = Rollouts(conn, progress=lambda line: None, poll_s=0.05)
        rollout_id = rollouts.start("0.2.0", url, [25, 100], pause_on_failures=1,
                                    stage_timeout_s=120)
        outcome: list[str] = []
        runner = threading.Thread(target=lambda: outcome.append(rollouts.run(rollout_id,
                                                                             Nobody())))
        runner.start()
        aborted = run_cli("teddy-cloud", "fleet", "rollout", "abort", env=cli_env)
        runner.join(20)
    assert f"rollout {rollout_id} aborted" in aborted.stdout
    assert outcome == ["aborted"]
    report = json.loads(run_cli("teddy-cloud", "fleet", "rollout", "status", "--json",
                                env=cli_env).stdout)
    assert (report["id"], report["state"]) == (rollout_id, "aborted")
    assert report["stages"][1]["outcomes"] == {"waiting": 3}  # stage 2 was never sent


def test_stages_parse_and_plan_stably():
    assert parse_stages("1%,10%,50%,100%") == [1, 10, 50, 100]
    for bad in ("10%,5%", "0%,100%", "1%,abc", "50%,150%"):
        with pytest.raises(RolloutError, match="stage"):
            parse_stages(bad)
    devices = [f"bear-{n:03d}" for n in range(200)]
    stages = plan(devices, [1, 10, 50, 100], "7")
    assert [len(s) for s in stages] == [2, 18, 80, 100]
    assert sorted(sum(stages, [])) == devices
    assert plan(list(reversed(devices)), [1, 10, 50, 100], "7") == stages
    assert plan(devices, [1, 10, 50, 100], "8") != stages


class CommandsTableDispatcher:
    """Records each ``update`` in ``commands`` as ``Fleet.issue`` does; a bear thread then
    stores its result with the fleet's ``record_result``, as ingest does for
    ``up/cmd-result``. The rollout must pick the results up from there."""

    def __init__(self, dsn: str, fates: dict[str, tuple[str, dict]]) -> None:
        self.dsn = dsn
        self.fates = fates
        self.threads: list[threading.Thread] = []

    def send_update(self, device_id: str, version: str, release_url: str) -> str:
        """Insert the command row; answer it from a thread shortly after."""
        import psycopg

        command_id = f"{device_id}-update"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO commands (id, device_id, name, args, issued_at, expires_at)"
                         " VALUES (%s, %s, 'update', %s, now(), now() + interval '1 hour')",
                         (command_id, device_id, json.dumps({"release_url": release_url})))
        thread = threading.Thread(target=self._answer, args=(command_id, device_id))
        thread.start()
        self.threads.append(thread)
        return command_id

    def _answer(self, command_id: str, device_id: str) -> None:
        import psycopg

        from sync.cloud.fleet import record_result
        from sync.protocol import CommandResult

        status, data = self.fates[device_id]
        result = CommandResult(id=command_id, device_id=device_id, name="update", status=status,
                               reason=data.get("reason", ""), data=data,
                               finished_at=time.time())
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            assert record_result(conn, result)


def test_results_of_fleet_update_commands_drive_the_rollout(fleet_db, kit):
    with ReleaseServer(kit.store) as server, fleet_db.connect() as conn:
        url = publish(conn, kit, server)
        mute_fleet(conn, 3)
        fates = {"mute-00": ("done", {"outcome": "installed", "running": "0.2.0"}),
                 "mute-01": ("done", {"outcome": "rolled_back", "running": "0.1.0",
                                      "reason": "post-update check failed: store: broken"}),
                 "mute-02": ("rejected", {"reason": "command expired"})}
        dispatcher = CommandsTableDispatcher(fleet_db.dsn, fates)
        rollouts = Rollouts(conn, progress=lambda line: None, poll_s=0.05)
        rollout_id = rollouts.start("0.2.0", url, [100], pause_on_failures=3,
                                    stage_timeout_s=30)
        state = rollouts.run(rollout_id, dispatcher)
        for thread in dispatcher.threads:
            thread.join(10)
        status = rollouts.status(rollout_id)
        updates = {r[0]: r[1:] for r in conn.execute(
            "SELECT device_id, version, state, reason FROM device_updates")}
        events = conn.execute("SELECT count(*) FROM update_events").fetchone()[0]
    assert state == "completed"  # 2 failures < 3
    assert status["failing"] == {"mute-01": "post-update check failed: store: broken",
                                 "mute-02": "command expired"}
    assert updates["mute-00"] == ("0.2.0", "current", "")
    assert updates["mute-01"] == ("0.1.0", "rolled_back", "post-update check failed: store: "
                                                          "broken")
    assert updates["mute-02"][1] == "refused"
    assert events == 3
