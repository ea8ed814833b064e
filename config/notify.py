"""Settings section ``notify``: where the cloud sends alert notifications, and how carefully.

Channels are named; each has a ``type`` and an ``audience``. Wellbeing alerts
(``wellbeing.*``) go only to ``parent`` channels, every other alert only to ``operator``
channels. A parent e-mail channel with ``to_parent = true`` writes to the parent on record
for the alert's bear (its active consent), so in a fleet each family hears only about its
own child; other parent channels (a webhook to the parent app's backend, a fixed address)
get the device id and must route it themselves. In TOML::

    [notify.channels.ops-slack]
    type = "slack"
    audience = "operator"
    min_severity = "high"
    url = "https://hooks.slack.com/services/..."

Secrets (webhook secrets, SMTP passwords, routing keys, tokens) are ``SecretStr``: never
logged, never printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from config.settings import Section

SeverityName = Literal["info", "warning", "high", "critical"]
Audience = Literal["parent", "operator"]
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
"""Hosts an e-mail channel may reach without STARTTLS (tests only)."""


class ChannelBase(Section):
    """What every channel has: who it is for and which alerts it takes."""

    audience: Audience = "operator"
    """``parent`` channels get wellbeing alerts only; ``operator`` channels everything else."""
    min_severity: SeverityName = "warning"
    """Least severity delivered."""
    kinds: list[str] = Field(default_factory=lambda: ["*"])
    """Alert kinds delivered (``fnmatch`` patterns, e.g. ``"sync.*"``)."""
    exclude_kinds: list[str] = Field(default_factory=list)
    """Alert kinds never delivered (``fnmatch`` patterns)."""
    rate_limit: int = Field(default=30, ge=1, le=100000)
    """Most deliveries to this channel per ``rate_window_s``."""
    rate_window_s: float = Field(default=60.0, gt=0, le=86400)
    """Window of the rate limit, seconds."""
    clears: bool = True
    """Also notify when an alert clears."""


class WebhookChannel(ChannelBase):
    """A JSON POST signed with HMAC-SHA256 over ``<timestamp>.<body>``."""

    type: Literal["webhook"]
    """Channel type: ``webhook``."""
    url: str
    """Receiver URL (https in production)."""
    secret: SecretStr
    """Shared HMAC key."""
    signature_header: str = "X-Teddy-Signature"
    """Header carrying ``sha256=<hex>``; the timestamp goes in ``X-Teddy-Timestamp``."""


class SlackChannel(ChannelBase):
    """A Slack incoming webhook."""

    type: Literal["slack"]
    """Channel type: ``slack``."""
    url: SecretStr
    """The incoming-webhook URL (it is the credential)."""


class PagerDutyChannel(ChannelBase):
    """PagerDuty Events API v2: trigger on raise, resolve on clear."""

    type: Literal["pagerduty"]
    """Channel type: ``pagerduty``."""
    routing_key: SecretStr
    """Integration (routing) key of the PagerDuty service."""
    url: str = "https://events.pagerduty.com/v2/enqueue"
    """Events API endpoint."""


class SmsChannel(ChannelBase):
    """SMS through an HTTP gateway: POST ``{"to", "from", "text"}`` with a bearer token."""

    type: Literal["sms"]
    """Channel type: ``sms``."""
    url: str
    """Gateway URL."""
    token: SecretStr | None = None
    """Bearer token of the gateway."""
    sender: str = "Teddy"
    """Sender id or number."""
    to: list[str] = Field(min_length=1)
    """Phone numbers (E.164)."""


class EmailChannel(ChannelBase):
    """E-mail over SMTP, upgraded with STARTTLS (refuses to send in the clear)."""

    type: Literal["email"]
    """Channel type: ``email``."""
    host: str
    """SMTP server."""
    port: int = Field(default=587, ge=1, le=65535)
    """SMTP port (submission)."""
    username: str | None = None
    """SMTP user; None: no login."""
    password: SecretStr | None = None
    """SMTP password."""
    sender: str
    """From address."""
    to: list[str] = Field(default_factory=list)
    """Recipient addresses (required unless ``to_parent``)."""
    to_parent: bool = False
    """Send to the parent(s) with an active consent for the alert's bear (``consents``
    table) instead of ``to``: each family hears only about its own child."""
    starttls: bool = True
    """Require STARTTLS (only a test server on localhost may turn it off)."""
    ca_file: Path | None = None
    """CA bundle to trust for the server's certificate; None: the system's."""
    app_url: str | None = None
    """The parent app's address (``portal.base_url``): wellbeing mails link to its alerts
    page, where the parent signs in to read what was said; the mail never carries it."""

    @model_validator(mode="after")
    def _recipients(self) -> EmailChannel:
        if self.to_parent and self.audience != "parent":
            raise ValueError("to_parent needs audience = \"parent\" (operators get no "
                             "parent's address)")
        if not self.to_parent and not self.to:
            raise ValueError("an e-mail channel needs `to` addresses or to_parent = true")
        return self

    @model_validator(mode="after")
    def _tls_unless_local(self) -> EmailChannel:
        if not self.starttls and self.host not in LOCAL_HOSTS:
            raise ValueError(
                f"e-mail channel to {self.host} must use STARTTLS — set starttls = true "
                "(only localhost may go without)"
            )
        return self


Channel = Annotated[
    WebhookChannel | SlackChannel | PagerDutyChannel | SmsChannel | EmailChannel,
    Field(discriminator="type"),
]


class RetrySettings(Section):
    """Retries with exponential backoff and full jitter."""

    max_attempts: int = Field(default=6, ge=1, le=100)
    """Attempts per delivery before it is marked failed."""
    base_s: float = Field(default=2.0, gt=0, le=3600)
    """Backoff base, seconds: attempt n waits uniform(0, min(cap, base * 2**n))."""
    cap_s: float = Field(default=600.0, gt=0, le=86400)
    """Longest backoff, seconds."""


class NotifySettings(Section):
    """Cloud notifications: channels, routing, dedupe, rate limits, retries."""

    channels: dict[str, Channel] = Field(default_factory=dict)
    """Channels by name (a name is used in the delivery log)."""
    dedupe_window_s: float = Field(default=900.0, ge=0, le=7 * 86400)
    """The same event (device, kind, raised/cleared) goes to a channel once per window, seconds."""
    retry: RetrySettings = Field(default_factory=RetrySettings)
    """Retry policy."""
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    """Network timeout of one delivery attempt, seconds."""
    poll_interval_s: float = Field(default=5.0, gt=0, le=3600)
    """Seconds between two looks at new alerts and due retries."""
    batch_size: int = Field(default=100, ge=1, le=10000)
    """Most alerts fanned out or deliveries attempted per round."""
    concurrency: int = Field(default=8, ge=1, le=256)
    """Deliveries sent in parallel within a round."""
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Port of the notifier's Prometheus ``/metrics`` (deliveries, and the fleet gauges read
    from PostgreSQL: bears online, open alerts, backup age); None: no endpoint."""
    skip_older_than_s: float = Field(default=86400.0, gt=0)
    """Alert events older than this when first seen are logged, not sent (a notifier started
    on an old database does not page anyone about last month), seconds."""
    digest_hour: int = Field(default=18, ge=0, le=23)
    """Hour of the day (in ``digest_timezone``) from which each family's daily summary of
    the wellbeing alerts not e-mailed at once goes out (once a day per family)."""
    digest_timezone: str = "UTC"
    """IANA time zone of ``digest_hour`` and of the summary's days, e.g. ``Europe/London``."""

    @field_validator("digest_timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{zone!r} is not a time zone — use a name like "
                             "Europe/London") from None
        return zone
