"""``python -m agent.crash_alert UNIT``: the health alert when a Teddy unit gives up restarting.

systemd starts this (``teddy-alert@.service``, the ``OnFailure=`` of ``teddy-agent``) once
the agent crashed ``StartLimitBurst`` times in a row. It logs a critical line to the
journal, publishes the alert on ``up/alerts`` with the bear's own broker login (best
effort: the fleet already sees the bear ``offline`` from its Last Will), and leaves it in
``<data_dir>/alerts/`` so that the next ``teddy run`` raises it through the alert sink.
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
from typing import Any

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


def publish_alert(settings: Any, alert: dict, timeout: float = 5.0) -> bool:
    """Publish ``alert`` on ``up/alerts`` (QoS 1); False (logged) when it cannot be sent."""
    from agent.identity import device_id
    from config.errors import TeddyError
    from sync.client import MqttLink
    from sync.device import SESSION_EXPIRY
    from sync.protocol import AlertMessage

    try:
        device = device_id(settings, create=False)
        settings = _with_own_login(settings)
        message = AlertMessage(
            device_id=device, alert_id=f"{ALERT_KIND}-{int(alert['raised_at'])}",
            state="raised", kind=ALERT_KIND, severity="critical", message=alert["message"],
            details={"unit": alert["unit"]}, raised_at=alert["raised_at"])
        # The broker lets the bear connect only as teddy-<id>: resume its session without
        # acknowledging anything, so what waits for the agent (down/cmd) stays queued for it.
        with MqttLink(settings.mqtt, f"teddy-{device}", clean_start=False,
                      session_expiry=SESSION_EXPIRY, manual_ack=True) as link:
            link.connect()
            return link.publish(message, device).wait(timeout)
    except (TeddyError, RuntimeError, ValueError, OSError) as exc:
        logger.warning("could not publish the %s alert: %s", ALERT_KIND, exc)
        return False


def _with_own_login(settings: Any) -> Any:
    """The paired bear's own broker login, else the provisioned one."""
    from agent.credentials import CredentialsError
    from agent.pairing import paired_settings

    try:
        return paired_settings(settings)
    except CredentialsError:
        return settings


def main(argv: Sequence[str] | None = None) -> int:
    """Record the failure of the unit named in ``argv`` (``%i`` of the alert unit)."""
    from config.errors import TeddyError
    from config.logs import configure_logging
    from config.settings import load_settings

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m agent.crash_alert UNIT", file=sys.stderr)
        return 2
    configure_logging("INFO")
    try:
        settings = load_settings()
    except TeddyError as exc:
        logger.error("config unreadable (%s); using /var/lib/teddy", exc)
        settings = None
    data_dir = settings.store.data_dir if settings is not None else Path("/var/lib/teddy")
    path = record_failure(args[0], data_dir)
    logger.critical("health alert %s: %s gave up restarting; alert kept in %s",
                    ALERT_KIND, args[0], path, extra={"unit": args[0], "alert": ALERT_KIND})
    if settings is not None:
        alert = json.loads(path.read_text())
        sent = publish_alert(settings, alert)
        logger.info("alert %s %s on up/alerts", ALERT_KIND, "published" if sent else "not sent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
