"""Slack incoming webhooks, PagerDuty Events v2, and SMS through an HTTP gateway."""

from __future__ import annotations

from typing import Any

from config.notify import PagerDutyChannel, SlackChannel, SmsChannel
from sync.cloud.notify.message import Notification
from sync.cloud.notify.web import post_json

PAGERDUTY_SEVERITY = {"info": "info", "warning": "warning", "high": "error",
                      "critical": "critical"}
"""Our severities in PagerDuty's vocabulary."""
SMS_MAX_CHARS = 320
"""Longest SMS text sent (two segments)."""


class SlackSender:
    """Posts ``{"text": ...}`` to a Slack incoming webhook."""

    def __init__(self, settings: SlackChannel, timeout: float) -> None:
        self.settings = settings
        """The channel's settings."""
        self.timeout = timeout
        """Seconds per attempt."""

    def send(self, note: Notification) -> None:
        """Deliver ``note``; raises DeliveryError."""
        text = f"*{note.subject()}*\n{note.text()}"
        post_json(self.settings.url.get_secret_value(), {"text": text}, self.timeout,
                  what="slack webhook")


class PagerDutySender:
    """Triggers (raised) and resolves (cleared) a PagerDuty incident, deduped per device+kind."""

    def __init__(self, settings: PagerDutyChannel, timeout: float) -> None:
        self.settings = settings
        """The channel's settings."""
        self.timeout = timeout
        """Seconds per attempt."""

    def send(self, note: Notification) -> None:
        """Deliver ``note``; raises DeliveryError."""
        post_json(self.settings.url, pagerduty_event(note, self.settings), self.timeout,
                  what="pagerduty")


def pagerduty_event(note: Notification, settings: PagerDutyChannel) -> dict:
    """The Events API v2 document for ``note``."""
    event: dict[str, Any] = {
        "routing_key": settings.routing_key.get_secret_value(),
        "event_action": "resolve" if note.event == "cleared" else "trigger",
        "dedup_key": f"teddy/{note.device_id}/{note.kind}",
    }
    if note.event == "raised":
        event["payload"] = {
            "summary": note.subject()[:1024], "source": note.device_id,
            "severity": PAGERDUTY_SEVERITY.get(note.severity, "warning"),
            "component": note.kind.split(".")[0], "class": note.kind,
            "timestamp": note.raised_at.isoformat(),
            "custom_details": {"message": note.message, **note.details},
        }
    return event


class SmsSender:
    """POSTs ``{"to", "from", "text"}`` to an SMS gateway, one request per number."""

    def __init__(self, settings: SmsChannel, timeout: float) -> None:
        self.settings = settings
        """The channel's settings."""
        self.timeout = timeout
        """Seconds per attempt."""

    def send(self, note: Notification) -> None:
        """Deliver ``note``; raises DeliveryError."""
        token = self.settings.token
        headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        text = note.text()[:SMS_MAX_CHARS]
        for number in self.settings.to:
            post_json(self.settings.url, {"to": number, "from": self.settings.sender,
                                          "text": text}, self.timeout, headers, what="sms gateway")
