"""``python -m agent.failsafe UNIT``: the health alert when a Teddy unit gives up restarting.

systemd starts this (``teddy-alert@.service``, the ``OnFailure=`` of ``teddy-agent``) once
the agent crashed ``StartLimitBurst`` times in a row. It logs a critical line to the
journal and leaves the alert in ``<data_dir>/alerts/`` so that the next ``teddy run``
raises it through the bear's alert sink (and so over ``up/alerts``) before anything else.
Meanwhile the fleet already sees the bear ``offline``: the broker published its Last Will.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

ALERT_KIND = "service.failed"
"""The alert's machine name."""

ALERTS_DIR = "alerts"
"""Sub-directory of the data dir holding alerts not yet raised by a running bear."""

_SAFE_NAME = re.compile(r"[^A-Za-z0-9@._-]")


def record_failure(unit: str, data_dir: Path, now: float | None = None) -> Path:
    """Write the ``service.failed`` alert for ``unit`` into ``data_dir``; returns its path."""
    folder = Path(data_dir) / ALERTS_DIR
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    alert = {
        "kind": ALERT_KIND,
        "severity": "critical",
        "message": f"{unit} crashed repeatedly and systemd stopped restarting it",
        "unit": unit,
        "raised_at": time.time() if now is None else now,
    }
    path = folder / f"{_SAFE_NAME.sub('_', unit)}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(alert) + "\n")
    os.replace(tmp, path)
    return path


def take_pending(data_dir: Path) -> list[dict]:
    """The alerts left by this module, oldest first; each file is removed once read."""
    folder = Path(data_dir) / ALERTS_DIR
    if not folder.is_dir():
        return []
    alerts = []
    for path in sorted(folder.glob("*.json")):
        try:
            alerts.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            logger.warning("dropping unreadable pending alert %s: %s", path, exc)
        path.unlink(missing_ok=True)
    return sorted(alerts, key=lambda alert: alert.get("raised_at", 0))


def main(argv: Sequence[str] | None = None) -> int:
    """Record the failure of the unit named in ``argv`` (``%i`` of the alert unit)."""
    from agent.logs import configure_logging
    from config.errors import TeddyError
    from config.settings import load_settings

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m agent.failsafe UNIT", file=sys.stderr)
        return 2
    configure_logging("INFO")
    try:
        data_dir = load_settings().store.data_dir
    except TeddyError as exc:
        logger.error("config unreadable (%s); using /var/lib/teddy", exc)
        data_dir = Path("/var/lib/teddy")
    path = record_failure(args[0], data_dir)
    logger.critical("health alert %s: %s gave up restarting; alert kept in %s",
                    ALERT_KIND, args[0], path, extra={"unit": args[0], "alert": ALERT_KIND})
    return 0


if __name__ == "__main__":
    sys.exit(main())
