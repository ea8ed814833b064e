"""Staged rollouts: a release goes to 1%, then 10%, ... of the fleet, one stage at a time.

A stage's bears are sent the ``update`` command; the next stage starts only when every bear
of this stage has reported. Each failure (rolled back, refused, failed, or no report within
the stage timeout) counts; at ``pause_on_failures`` failures the rollout halts and lists the
failing bears with their reasons. Bears of later stages are never sent anything then.

Which bears go first is a stable hash of rollout id and device id: a spread, not the
oldest or the newest. State lives in PostgreSQL (``rollouts``, ``rollout_targets``,
``device_updates``, ``update_events``; migration 0005), so ``status`` and ``abort`` work
from another shell while ``run`` prints progress as it happens.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from config.errors import CloudError

logger = logging.getLogger(__name__)

HEALTHY = frozenset({"installed", "already_current"})
"""Outcomes that count as a healthy bear."""
FAILED = frozenset({"rolled_back", "refused", "failed", "timeout"})
"""Outcomes that count towards the failure threshold."""
REPORTED = HEALTHY | FAILED
"""Outcomes after which a bear is done for this rollout."""
STAGE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%?\s*$")


class RolloutError(CloudError):
    """A rollout cannot be started, run or changed."""


class Dispatcher(Protocol):
    """Sends one bear the ``update`` command; returns the command id (or None)."""

    def send_update(self, device_id: str, version: str, release_url: str) -> str | None:
        """Send the signed ``update`` command naming the release."""
        ...


@dataclass
class StageReport:
    """How one stage went."""

    index: int
    """Stage number, from 1."""
    percent: float
    """Share of the fleet updated once this stage is done, percent."""
    devices: list[str]
    """Bears updated in this stage."""
    healthy: int = 0
    """Bears that reported healthy."""
    failed: dict[str, str] = field(default_factory=dict)
    """Failing bears of this stage and why."""


def parse_stages(text: str) -> list[float]:
    """``"1%,10%,50%,100%"`` -> ``[1.0, 10.0, 50.0, 100.0]``; ascending, within (0, 100]."""
    stages = []
    for part in text.split(","):
        match = STAGE_PATTERN.match(part)
        if not match:
            raise RolloutError(f"stage {part!r} is not a percentage — use e.g. 1%,10%,50%,100%")
        stages.append(float(match.group(1)))
    if any(not 0 < s <= 100 for s in stages) or stages != sorted(set(stages)):
        raise RolloutError(f"stages {text!r} must rise strictly within (0, 100] — e.g. "
                           "1%,10%,50%,100%")
    return stages


def plan(device_ids: Sequence[str], stages: Sequence[float], salt: str) -> list[list[str]]:
    """The bears of each stage: a stable hash order cut at each cumulative percentage
    (rounded up, at least one new bear per stage while any are left)."""
    ordered = sorted(device_ids, key=lambda d: hashlib.sha256(f"{salt}:{d}".encode()).digest())
    result, taken = [], 0
    for percent in stages:
        upto = min(len(ordered), max(math.ceil(len(ordered) * percent / 100), taken + 1))
        result.append(ordered[taken:upto])
        taken = upto
    return result


class Rollouts:
    """Rollouts on one autocommit psycopg connection."""

    def __init__(self, conn, progress: Callable[[str], None] = print,
                 poll_s: float = 0.5, retry_deferred_s: float = 60.0) -> None:
        self.conn = conn
        """An autocommit psycopg connection."""
        self.progress = progress
        """Where progress lines go, as they happen."""
        self.poll_s = poll_s
        """Seconds between two looks at the bears' reports."""
        self.retry_deferred_s = retry_deferred_s
        """Seconds after a bear deferred (child talking, battery low) before it is sent the
        command again, within the stage timeout."""

    # --- start ------------------------------------------------------------------------

    def start(self, version: str, release_url: str, stages: Sequence[float],
              pause_on_failures: int = 1, stage_timeout_s: float = 900.0,
              devices: Sequence[str] | None = None) -> int:
        """Record a new rollout and its staged plan; returns its id."""
        if pause_on_failures < 1:
            raise RolloutError("--pause-on-failures must be at least 1")
        running = self.conn.execute("SELECT id FROM rollouts WHERE state = 'running'").fetchone()
        if running:
            raise RolloutError(f"rollout {running[0]} is still running — see teddy-cloud fleet "
                               "rollout status, or abort it")
        known = [r[0] for r in self.conn.execute("SELECT device_id FROM devices")]
        chosen = known if devices is None else [d for d in devices if d in set(known)]
        if not chosen:
            raise RolloutError("no bears to update — provision or pair bears first")
        with self.conn.transaction():
            rollout_id = self.conn.execute(
                "INSERT INTO rollouts (release_version, release_url, stages, pause_on_failures,"
                " stage_timeout_s) VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (version, release_url, list(stages), pause_on_failures, stage_timeout_s),
            ).fetchone()[0]
            for index, members in enumerate(plan(chosen, stages, str(rollout_id)), start=1):
                for device_id in members:
                    self.conn.execute("INSERT INTO rollout_targets (rollout_id, device_id, stage)"
                                      " VALUES (%s, %s, %s)", (rollout_id, device_id, index))
        self.progress(f"rollout {rollout_id}: release {version} to {len(chosen)} bears in "
                      f"{len(stages)} stages ({', '.join(f'{s:g}%' for s in stages)}); halts at "
                      f"{pause_on_failures} failure(s)")
        return rollout_id

    # --- run --------------------------------------------------------------------------

    def run(self, rollout_id: int, dispatcher: Dispatcher) -> str:
        """Advance stage by stage while bears report healthy; returns the final state."""
        row = self._rollout(rollout_id)
        stages = list(row["stages"])
        for index in range(row["current_stage"] + 1, len(stages) + 1):
            if self._state(rollout_id) != "running":
                return self._finish_message(rollout_id)
            report = self._run_stage(rollout_id, row, index, stages[index - 1], dispatcher)
            failures = self.failures(rollout_id)
            self.progress(f"stage {index}/{len(stages)} ({stages[index - 1]:g}%): "
                          f"{report.healthy} healthy, {len(report.failed)} failed "
                          f"({len(failures)} failed in all)")
            if self._state(rollout_id) != "running":
                return self._finish_message(rollout_id)
            if len(failures) >= row["pause_on_failures"]:
                reason = (f"halted at stage {index}/{len(stages)}: {len(failures)} bear(s) "
                          f"failed (threshold {row['pause_on_failures']})")
                self._set_state(rollout_id, "halted", reason, index)
                self.progress(reason)
                for device_id, why in failures.items():
                    self.progress(f"  {device_id}: {why}")
                return "halted"
            self._set_state(rollout_id, "running", "", index)
        self._set_state(rollout_id, "completed", "every stage healthy", len(stages))
        self.progress(f"rollout {rollout_id} completed: release {row['release_version']} on "
                      "every targeted bear")
        return "completed"

    def _run_stage(self, rollout_id: int, row: dict, index: int, percent: float,
                   dispatcher: Dispatcher) -> StageReport:
        members = [r[0] for r in self.conn.execute(
            "SELECT device_id FROM rollout_targets WHERE rollout_id = %s AND stage = %s"
            " ORDER BY device_id", (rollout_id, index))]
        report = StageReport(index, percent, members)
        self.progress(f"stage {index}/{len(row['stages'])} ({percent:g}%): updating "
                      f"{len(members)} bear(s)")
        for device_id in members:
            self._send(rollout_id, row, device_id, dispatcher)
        self._await_stage(rollout_id, row, index, dispatcher)
        for device_id, outcome, reason in self.conn.execute(
                "SELECT device_id, outcome, reason FROM rollout_targets"
                " WHERE rollout_id = %s AND stage = %s", (rollout_id, index)):
            if outcome in HEALTHY:
                report.healthy += 1
            elif outcome in FAILED:
                report.failed[device_id] = reason
        return report

    def _send(self, rollout_id: int, row: dict, device_id: str, dispatcher: Dispatcher) -> None:
        try:
            command_id = dispatcher.send_update(device_id, row["release_version"],
                                                row["release_url"])
        except CloudError as exc:
            self._target_outcome(rollout_id, device_id, "failed", f"not sent: {exc}")
            self.progress(f"  {device_id}: not sent: {exc}")
            return
        self.conn.execute(
            "UPDATE rollout_targets SET outcome = 'sent', sent_at = now(), command_id = %s"
            " WHERE rollout_id = %s AND device_id = %s AND outcome = 'waiting'",
            (command_id, rollout_id, device_id))
        self._device_state(device_id, None, row["release_version"], "updating", "", rollout_id)

    def _await_stage(self, rollout_id: int, row: dict, index: int,
                     dispatcher: Dispatcher) -> None:
        timeout_s = row["stage_timeout_s"]
        deadline = time.monotonic() + timeout_s
        shown: set[str] = set()
        while True:
            self.collect_command_results(rollout_id)
            self._resend_deferred(rollout_id, row, index, dispatcher)
            rows = self.conn.execute(
                "SELECT device_id, outcome, reason FROM rollout_targets"
                " WHERE rollout_id = %s AND stage = %s", (rollout_id, index)).fetchall()
            for device_id, outcome, reason in rows:
                if outcome in REPORTED and device_id not in shown:
                    shown.add(device_id)
                    self.progress(f"  {device_id}: {outcome}{f' ({reason})' if reason else ''}")
            waiting = [r[0] for r in rows if r[1] not in REPORTED]
            if not waiting or self._state(rollout_id) != "running":
                return
            if time.monotonic() >= deadline:
                for device_id in waiting:
                    self._target_outcome(rollout_id, device_id, "timeout",
                                         f"no healthy report within {timeout_s:g} s")
                    self.progress(f"  {device_id}: timeout")
                return
            time.sleep(self.poll_s)

    def _resend_deferred(self, rollout_id: int, row: dict, index: int,
                         dispatcher: Dispatcher) -> None:
        due = self.conn.execute(
            "UPDATE rollout_targets SET outcome = 'waiting' WHERE rollout_id = %s AND stage = %s"
            " AND outcome = 'deferred' AND reported_at < now() - make_interval(secs => %s)"
            " RETURNING device_id", (rollout_id, index, self.retry_deferred_s)).fetchall()
        for (device_id,) in due:
            self.progress(f"  {device_id}: deferred; sending again")
            self._send(rollout_id, row, device_id, dispatcher)

    # --- results ----------------------------------------------------------------------

    def record_result(self, device_id: str, version: str, outcome: str, reason: str = "",
                      running: str | None = None, details: dict[str, Any] | None = None) -> None:
        """Take a bear's update report (its ``update`` command result) into PostgreSQL:
        the running rollout's target, ``device_updates`` and ``update_events``."""
        row = self.conn.execute(
            "SELECT t.rollout_id FROM rollout_targets t JOIN rollouts r ON r.id = t.rollout_id"
            " WHERE t.device_id = %s AND r.release_version = %s"
            " ORDER BY t.rollout_id DESC LIMIT 1", (device_id, version)).fetchone()
        rollout_id = row[0] if row else None
        if rollout_id is not None:
            self._target_outcome(rollout_id, device_id, outcome, reason)
        state = "current" if outcome in HEALTHY else outcome
        self._device_state(device_id, running, version, state, reason, rollout_id)
        self.conn.execute(
            "INSERT INTO update_events (device_id, version, outcome, reason, rollout_id, details)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (device_id, version, outcome, reason, rollout_id, json.dumps(details or {})))

    def collect_command_results(self, rollout_id: int) -> None:
        """Take results of ``update`` commands sent through the fleet (``commands`` rows
        the ingest completed) into the rollout."""
        rows = self.conn.execute(
            "SELECT t.device_id, r.release_version, c.status, c.reason, c.result"
            " FROM rollout_targets t JOIN rollouts r ON r.id = t.rollout_id"
            " JOIN commands c ON c.id = t.command_id"
            " WHERE t.rollout_id = %s AND t.outcome IN ('sent', 'deferred')"
            " AND c.status <> 'sent'", (rollout_id,)).fetchall()
        for device_id, version, status, reason, result in rows:
            data = result or {}
            outcome = data.get("outcome") or ("refused" if status == "rejected" else "failed")
            self.record_result(device_id, version, outcome, data.get("reason") or reason,
                               data.get("running"), data)

    def _target_outcome(self, rollout_id: int, device_id: str, outcome: str,
                        reason: str) -> None:
        self.conn.execute(
            "UPDATE rollout_targets SET outcome = %s, reason = %s, reported_at = now()"
            " WHERE rollout_id = %s AND device_id = %s", (outcome, reason, rollout_id, device_id))

    def _device_state(self, device_id: str, running: str | None, target: str, state: str,
                      reason: str, rollout_id: int | None) -> None:
        self.conn.execute(
            "INSERT INTO device_updates (device_id, version, target_version, state, reason,"
            " rollout_id) VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (device_id) DO UPDATE SET"
            " version = COALESCE(EXCLUDED.version, device_updates.version),"
            " target_version = EXCLUDED.target_version, state = EXCLUDED.state,"
            " reason = EXCLUDED.reason, rollout_id = EXCLUDED.rollout_id, updated_at = now()",
            (device_id, running, target, state, reason, rollout_id))

    # --- status and abort -------------------------------------------------------------

    def failures(self, rollout_id: int) -> dict[str, str]:
        """Failing bears of the rollout and why."""
        return dict(self.conn.execute(
            "SELECT device_id, reason FROM rollout_targets WHERE rollout_id = %s"
            " AND outcome = ANY(%s) ORDER BY device_id", (rollout_id, sorted(FAILED))).fetchall())

    def status(self, rollout_id: int | None = None) -> dict[str, Any]:
        """One rollout (the latest by default): state, stages with counts, failing bears."""
        if rollout_id is None:
            found = self.conn.execute("SELECT max(id) FROM rollouts").fetchone()[0]
            if found is None:
                raise RolloutError("no rollout yet — start one with teddy-cloud fleet rollout")
            rollout_id = found
        row = self._rollout(rollout_id)
        counts = self.conn.execute(
            "SELECT stage, outcome, count(*) FROM rollout_targets WHERE rollout_id = %s"
            " GROUP BY stage, outcome", (rollout_id,)).fetchall()
        stages = [{"stage": i, "percent": p, "outcomes": {}}
                  for i, p in enumerate(row["stages"], start=1)]
        for stage, outcome, count in counts:
            stages[stage - 1]["outcomes"][outcome] = count
        return {"id": rollout_id, "release": row["release_version"], "url": row["release_url"],
                "state": row["state"], "reason": row["reason"],
                "stage": row["current_stage"], "stages": stages,
                "pause_on_failures": row["pause_on_failures"],
                "failing": self.failures(rollout_id)}

    def abort(self, rollout_id: int | None = None) -> int:
        """Stop a running rollout: no further bear is sent the release. Returns its id."""
        if rollout_id is None:
            found = self.conn.execute("SELECT id FROM rollouts WHERE state = 'running'").fetchone()
            if found is None:
                raise RolloutError("no rollout is running — nothing to abort")
            rollout_id = found[0]
        row = self._rollout(rollout_id)
        if row["state"] != "running":
            raise RolloutError(f"rollout {rollout_id} is {row['state']}, not running")
        self._set_state(rollout_id, "aborted", "aborted by an operator", row["current_stage"])
        return rollout_id

    def _rollout(self, rollout_id: int) -> dict[str, Any]:
        names = ("id", "release_version", "release_url", "stages", "pause_on_failures",
                 "stage_timeout_s", "state", "current_stage", "reason")
        row = self.conn.execute(f"SELECT {', '.join(names)} FROM rollouts WHERE id = %s",
                                (rollout_id,)).fetchone()
        if row is None:
            raise RolloutError(f"no rollout {rollout_id} — see teddy-cloud fleet rollout status")
        return dict(zip(names, row, strict=True))

    def _state(self, rollout_id: int) -> str:
        return self.conn.execute("SELECT state FROM rollouts WHERE id = %s",
                                 (rollout_id,)).fetchone()[0]

    def _set_state(self, rollout_id: int, state: str, reason: str, stage: int) -> None:
        self.conn.execute(
            "UPDATE rollouts SET state = %s, reason = %s, current_stage = %s, updated_at = now()"
            " WHERE id = %s AND state = 'running'", (state, reason, stage, rollout_id))

    def _finish_message(self, rollout_id: int) -> str:
        state = self._state(rollout_id)
        self.progress(f"rollout {rollout_id} {state}: no further bears are sent the release")
        return state


class FleetDispatcher:
    """Sends ``update`` as a signed fleet command (``sync.cloud.fleet``); results come back
    through the ``commands`` table, picked up by :meth:`Rollouts.collect_command_results`."""

    def __init__(self, fleet) -> None:
        self.fleet = fleet
        """A :class:`sync.cloud.fleet.Fleet`."""

    def send_update(self, device_id: str, version: str, release_url: str) -> str | None:
        """Send ``update`` with the release URL and version; returns the command id."""
        sent = self.fleet.send(device_id, "update", {"release_url": release_url,
                                                     "version": version})
        return sent.command.id
