"""Cloud notifications: alert rows fan out to webhook, e-mail, Slack, PagerDuty and SMS.

Routing by audience (wellbeing -> parents, the rest -> operators), severity and kind;
deduplication, per-channel rate limits, retries with full-jitter backoff, and a delivery
log in PostgreSQL (migration ``0003_notifications.sql``). Run with :class:`Notifier`.
"""

from sync.cloud.notify.dispatcher import Notifier
from sync.cloud.notify.errors import DeliveryError
from sync.cloud.notify.message import Notification
from sync.cloud.notify.routing import route, wants
from sync.cloud.notify.webhook import sign, verify_signature

__all__ = [
    "DeliveryError",
    "Notification",
    "Notifier",
    "route",
    "sign",
    "verify_signature",
    "wants",
]
