"""Channel senders built from ``notify.channels``: each has ``send(Notification)``."""

from __future__ import annotations

from typing import Protocol

from config.notify import (
    EmailChannel,
    NotifySettings,
    PagerDutyChannel,
    SlackChannel,
    SmsChannel,
    WebhookChannel,
)
from sync.cloud.notify.mail import EmailSender
from sync.cloud.notify.message import Notification
from sync.cloud.notify.services import PagerDutySender, SlackSender, SmsSender
from sync.cloud.notify.webhook import WebhookSender


class Sender(Protocol):
    """Delivers a notification to one channel or raises DeliveryError."""

    def send(self, note: Notification) -> None:
        """Deliver ``note``."""


SENDERS = {
    WebhookChannel: WebhookSender,
    SlackChannel: SlackSender,
    PagerDutyChannel: PagerDutySender,
    SmsChannel: SmsSender,
    EmailChannel: EmailSender,
}
"""Channel settings type -> sender class."""


def build_senders(settings: NotifySettings) -> dict[str, Sender]:
    """A sender for every configured channel, by channel name."""
    return {name: SENDERS[type(channel)](channel, settings.timeout_s)
            for name, channel in settings.channels.items()}
