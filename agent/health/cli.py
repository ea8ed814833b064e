"""``teddy health``: the bear's health snapshot and its open alerts.

System readings are taken fresh; the agent's own signals (broker, outbox, audio...) come from
the running bear's latest sample in ``health.db`` when it is recent. Read-only: this command
raises no alert and records no process start.
"""

from __future__ import annotations

import argparse
import json
import time

from agent.health.journal import HealthJournal, JournalAlert
from agent.health.sampler import SystemSampler
from agent.health.signals import SIGNALS
from agent.semantic.model_files import model_status
from config.settings import Settings

RECENT_S = 24 * 3600
"""One-shot alerts from the last this many seconds are listed."""
STALE_AFTER_INTERVALS = 3
"""The running bear's sample counts as current for this many sample intervals."""


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``health`` command to the ``teddy`` CLI."""
    health = commands.add_parser("health", help="the bear's health snapshot and open alerts")
    health.add_argument("--json", action="store_true", help="print one JSON object")
    health.set_defaults(func=_health)


def _health(args: argparse.Namespace, settings: Settings) -> int:
    report = build_report(settings)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(format_report(report))
    return 0


def build_report(settings: Settings, now: float | None = None) -> dict:
    """The snapshot and the alerts as one JSON-ready dict."""
    now = time.time() if now is None else now
    store = settings.store
    sampler = SystemSampler(store.data_dir, store.key_path, store.db_path, store.retention_days)
    time.sleep(0.1)  # psutil's cpu_percent needs an interval between two readings
    metrics = sampler.sample()
    journal_path = store.data_dir / settings.health.journal_name
    signals_at = None
    open_alerts: list[JournalAlert] = []
    recent: list[JournalAlert] = []
    if journal_path.exists():
        with HealthJournal(journal_path) as journal:
            saved = journal.last_sample()
            open_alerts = journal.open_alerts()
            recent = [a for a in journal.recent(now - RECENT_S) if a.one_shot]
        fresh = saved is not None and now - saved[0] <= (
            STALE_AFTER_INTERVALS * settings.health.sample_interval_s)
        if fresh and saved is not None:
            signals_at = saved[0]
            for name, value in saved[1].items():
                metrics.setdefault(name, value)
                if name in SIGNALS or name.endswith("_p95_s") or name == "crash_restarts":
                    metrics[name] = value
    safety = settings.safety
    return {
        "sampled_at": now,
        "agent_signals_at": signals_at,
        "safety": model_status(safety.semantic_model, store.data_dir),
        "metrics": metrics,
        "open_alerts": [_alert_dict(a) for a in open_alerts],
        "recent_events": [_alert_dict(a) for a in recent],
    }


def _alert_dict(alert: JournalAlert) -> dict:
    return {"id": alert.id, "kind": alert.kind, "severity": alert.severity, "rule": alert.rule,
            "message": alert.message, "raised_at": alert.raised_at,
            "suppressed": alert.suppressed, "details": alert.details}


def format_report(report: dict) -> str:
    """The report as lines for a person."""
    lines = [f"health at {_clock(report['sampled_at'])}"]
    if report["agent_signals_at"] is None:
        lines.append("  (no recent sample from a running bear: agent signals unknown)")
    for name, value in sorted(report["metrics"].items()):
        shown = "unknown" if value is None else f"{value:.2f}".rstrip("0").rstrip(".")
        lines.append(f"  {name:<28} {shown}")
    safety = report["safety"]
    lines.append(f"safety: {safety['stage']} ({safety['detail']})")
    lines.append(f"open alerts: {len(report['open_alerts']) or 'none'}")
    lines += [_alert_line(a) for a in report["open_alerts"]]
    if report["recent_events"]:
        lines.append(f"events in the last 24 h: {len(report['recent_events'])}")
        lines += [_alert_line(a) for a in report["recent_events"]]
    return "\n".join(lines)


def _alert_line(alert: dict) -> str:
    return (f"  {alert['severity'].upper():<8} {alert['kind']:<32} since "
            f"{_clock(alert['raised_at'])}  {alert['message']}")


def _clock(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
