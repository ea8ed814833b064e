"""Settings section ``portal``: the parent web app (``teddy-cloud portal``).

Sign-in links go out through an e-mail channel of ``notify.channels`` (its SMTP server,
credentials and STARTTLS rule), named by ``mail_channel``. Transcripts are sealed with a
per-family data key wrapped by the cloud key in ``cloud_key_file`` (0600, made on first
use) or by a KMS hook ``key_provider = "pkg.mod:factory"``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from config.settings import Section


class PortalSettings(Section):
    """The parent app: where it listens, its sign-in rules, and the family key."""

    host: str = "127.0.0.1"
    """Address to listen on (put a TLS reverse proxy in front in production)."""
    port: int = Field(default=8080, ge=1, le=65535)
    """Port to listen on."""
    base_url: str = "http://127.0.0.1:8080"
    """The address parents use, for the links in e-mails (https in production)."""
    mail_channel: str | None = None
    """Name of the ``notify.channels`` e-mail channel whose SMTP server sends sign-in links."""
    mail_sender: str | None = None
    """From address of sign-in mails; None: the channel's ``sender``."""
    link_ttl_s: float = Field(default=900.0, gt=0, le=86400)
    """Seconds a sign-in link works (once)."""
    session_ttl_s: float = Field(default=14 * 86400.0, gt=0, le=90 * 86400)
    """Seconds a session lasts."""
    links_per_address_per_hour: int = Field(default=5, ge=1, le=1000)
    """Sign-in links one client address may ask for one e-mail address in an hour; past
    this many links to one e-mail address from anywhere, each further one waits
    ``link_spacing_s`` (addresses that signed this parent in before are not slowed)."""
    links_per_client_per_hour: int = Field(default=20, ge=1, le=100000)
    """Sign-in links one client address may ask for in an hour (all e-mail addresses)."""
    link_spacing_s: float = Field(default=60.0, ge=0, le=3600)
    """Seconds between two links to one e-mail address once it had
    ``links_per_address_per_hour`` in the last hour (slows a flood, never locks out)."""
    trusted_proxies: list[str] = Field(default=[], max_length=32)
    """Addresses or networks (``127.0.0.1``, ``10.0.0.0/8``) of the reverse proxies whose
    ``X-Forwarded-For`` names the client; from any other peer the header is ignored. Empty:
    the connection's address is the client (set it to the proxy's address behind one)."""
    secure_cookies: bool = True
    """Mark the session cookie ``Secure`` (only plain-http local development turns it off)."""
    cloud_key_file: Path | None = None
    """The cloud key (32 random bytes, mode 0600, made on first use) wrapping family keys;
    None: ``<store.data_dir>/portal-cloud.key``."""
    key_provider: str | None = None
    """``pkg.mod:factory`` returning an object with ``wrap(bytes)``/``unwrap(bytes)`` (a KMS);
    replaces ``cloud_key_file``."""
    retention_days: int = Field(default=30, ge=1, le=30)
    """Default days the cloud keeps a family's transcripts (a parent may choose fewer)."""
    read_dsn: SecretStr | None = None
    """libpq connection string of a read replica for the app's transcript pages (what was
    said, alerts, export), opened read-only; None: ``cloud.pg_dsn`` (the primary). Sign-in,
    sessions, bears, deletions and every change always use the primary."""
    bear_wait_s: float = Field(default=2.0, ge=0, le=60)
    """Seconds a page waits for a bear's answer before showing 'waiting for the bear'."""
    invite_ttl_s: float = Field(default=7 * 86400.0, gt=0, le=30 * 86400)
    """Seconds an invitation to join a family can be accepted."""
    invites_per_family_per_day: int = Field(default=10, ge=1, le=1000)
    """Invitations one family may send in a day."""
    timezone: str = "UTC"
    """IANA time zone the app shows times and groups conversations into days in (the
    families'), e.g. ``Europe/London``; stored times stay UTC."""
    support_email: str | None = None
    """Where parents reach the service's support, shown at the foot of every page (None: the
    footer says to ask whoever runs the bear's service)."""
    undo_s: float = Field(default=10.0, ge=0, le=300)
    """Seconds a parent may undo deleting a conversation or a day before it is done (in the
    cloud and sent to the bear)."""

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        import ipaddress

        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address or network, e.g. 127.0.0.1 "
                                 "or 10.0.0.0/8") from None
        return values

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone name, e.g. Europe/London or "
                             "America/New_York") from None
        return value
