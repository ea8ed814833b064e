"""Signing parents in: one-time e-mail links, server-side sessions, sign-out everywhere.

A link's token is 32 random bytes; only its SHA-256 is stored. It works once, for
``portal.link_ttl_s``. Links are limited per client address, per client address and e-mail
address, and (slowing only) per e-mail address: see :func:`_check_limits`; the client
address is the one :mod:`sync.cloud.portal.clients` finds behind trusted proxies. A
session is another random token in a Secure, HttpOnly, SameSite=Strict cookie, with its
own CSRF token; the session table is the truth, so revoking rows signs a parent out on
every device.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING

from config.errors import TeddyError
from config.settings import Settings
from sync.cloud import emails
from sync.cloud.db import one_row
from sync.cloud.portal.service import Parent, check_email

if TYPE_CHECKING:
    from psycopg import Connection

logger = logging.getLogger(__name__)


class RateLimitedError(TeddyError, PermissionError):
    """Too many sign-in links asked for; the message says when to try again."""


class MailError(TeddyError, ConnectionError):
    """The sign-in mail could not be sent; the message says what to check."""


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def request_link(settings: Settings, conn: Connection, email: str, client: str) -> str:
    """Make a one-time sign-in link for ``email`` and mail it; returns the link (tests and
    the local development mode print it). Raises :class:`RateLimitedError`."""
    email = check_email(email)
    portal = settings.portal
    found_by = emails.lookup(conn, email)
    _check_limits(settings, conn, found_by, client)
    token = secrets.token_urlsafe(32)
    conn.execute("INSERT INTO signin_links (token_hash, email, email_hash, client, expires_at)"
                 " VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s))",
                 (_hash(token), emails.seal(conn, email), found_by, client, portal.link_ttl_s))
    link = f"{portal.base_url.rstrip('/')}/signin/{token}"
    send_mail(settings, email, "Your Teddy sign-in link",
              "Hello,\n\nOpen this link to sign in to Teddy's parent app. It works once, "
              f"for {portal.link_ttl_s / 60:g} minutes:\n\n{link}\n\nIf you did not ask for "
              "it, ignore this e-mail.\n")
    return link


def _check_limits(settings: Settings, conn: Connection, email_hash: bytes, client: str
                  ) -> None:
    """Refuse a link past a limit (:class:`RateLimitedError` naming when to try again).

    Three buckets: one client address (``links_per_client_per_hour``); one client address
    asking for one e-mail address (``links_per_address_per_hour``); and, across every
    client, one e-mail address: past ``links_per_address_per_hour`` in the hour, each further
    link waits ``link_spacing_s`` after the last, unless this client signed the parent in
    before. So a stranger's requests slow a parent's sign-in at worst, never lock it."""
    portal = settings.portal
    by_client, by_pair, by_address, since_last, known = one_row(conn.execute(
        "SELECT count(*) FILTER (WHERE client = %(c)s AND created_at > now() - interval"
        " '1 hour'), count(*) FILTER (WHERE client = %(c)s AND email_hash = %(e)s"
        " AND created_at > now() - interval '1 hour'), count(*) FILTER (WHERE email_hash"
        " = %(e)s AND created_at > now() - interval '1 hour'), extract(epoch FROM"
        " now() - max(created_at) FILTER (WHERE email_hash = %(e)s)),"
        " coalesce(bool_or(used_at IS NOT NULL AND client = %(c)s AND email_hash ="
        " %(e)s), false) FROM signin_links WHERE (email_hash = %(e)s OR"
        " client = %(c)s) AND created_at > now() - make_interval(secs => %(keep)s)",
        {"c": client, "e": email_hash, "keep": max(portal.session_ttl_s, 3600.0)}))
    if by_client >= portal.links_per_client_per_hour or \
            by_pair >= portal.links_per_address_per_hour:
        logger.warning("sign-in link refused: hourly limit (client %s)", client)
        raise RateLimitedError("too many sign-in links were asked for — wait an hour and try "
                               "again, or use the newest link you were sent")
    if by_address >= portal.links_per_address_per_hour and not known and \
            since_last is not None and float(since_last) < portal.link_spacing_s:
        wait_s = portal.link_spacing_s - float(since_last)
        logger.warning("sign-in link slowed: many links to one address (client %s)", client)
        raise RateLimitedError(f"many sign-in links were asked for this address — try again "
                               f"in {wait_s:.0f} seconds, or use the newest link you were sent")


def redeem(conn: Connection, token: str) -> str | None:
    """The e-mail address of an unused, unexpired link, which is used up now; else None."""
    row = conn.execute(
        "UPDATE signin_links SET used_at = now() WHERE token_hash = %s AND used_at IS NULL"
        " AND expires_at > now() RETURNING email", (_hash(token),)).fetchone()
    return None if row is None else emails.show(conn, row[0])


def parent_for(conn: Connection, email: str) -> Parent:
    """The parent with this address, made on first sign-in with a family of their own —
    never another's: joining a family takes an invitation accepted on its own page
    (:func:`sync.cloud.custody.accept`). Bears an operator paired for this address (no
    family yet) join their family."""
    from sync.cloud import custody

    row = conn.execute("SELECT parent_id::text, %s, family_id::text, role FROM parents"
                       " WHERE email_hash = %s", (email, emails.lookup(conn, email))).fetchone()
    if row is None:
        parent_id, family = custody.new_family(conn, email, "sign-in")
        row = (parent_id, email, family, "owner")
    parent = Parent(*row)
    same, params = emails.matching(conn, email)
    with conn.transaction():
        adopted = conn.execute(
            "INSERT INTO family_pairings (pairing_id, family_id) SELECT pairing_id, %s FROM"
            f" pairings p WHERE {same} AND status = 'approved'"
            " AND NOT EXISTS (SELECT 1 FROM family_pairings fp WHERE fp.pairing_id ="
            " p.pairing_id) ON CONFLICT (pairing_id) DO NOTHING RETURNING pairing_id::text",
            (parent.family_id, *params)).fetchall()
        for (pairing_id,) in adopted:
            custody.record(conn, "operator-pairing-adopted", pairing_id=pairing_id,
                           family_id=parent.family_id, actor=parent.parent_id)
    return parent


def start_session(settings: Settings, conn: Connection, parent: Parent) -> str:
    """A new session for ``parent``; returns the cookie token."""
    token = secrets.token_urlsafe(32)
    conn.execute("INSERT INTO portal_sessions (token_hash, parent_id, csrf, expires_at)"
                 " VALUES (%s, %s, %s, now() + make_interval(secs => %s))",
                 (_hash(token), parent.parent_id, secrets.token_urlsafe(32),
                  settings.portal.session_ttl_s))
    return token


def session(conn: Connection, token: str | None) -> tuple[Parent, str] | None:
    """``(parent, csrf token)`` of a live session, else None."""
    if not token:
        return None
    row = conn.execute(
        "SELECT p.parent_id::text, p.email, p.family_id::text, p.role, s.csrf, f.timezone"
        " FROM portal_sessions s JOIN parents p USING (parent_id) LEFT JOIN families f ON"
        " f.family_id = p.family_id WHERE s.token_hash = %s"
        " AND s.revoked_at IS NULL AND s.expires_at > now()", (_hash(token),)).fetchone()
    if row is None:
        return None
    return Parent(row[0], emails.show(conn, row[1]), row[2], row[3], row[5]), row[4]


def end_session(conn: Connection, token: str | None, everywhere: bool = False) -> None:
    """Sign out this session, or every session of its parent."""
    if not token:
        return
    if everywhere:
        conn.execute("UPDATE portal_sessions SET revoked_at = now() WHERE revoked_at IS NULL"
                     " AND parent_id = (SELECT parent_id FROM portal_sessions WHERE"
                     " token_hash = %s)", (_hash(token),))
    else:
        conn.execute("UPDATE portal_sessions SET revoked_at = now() WHERE token_hash = %s",
                     (_hash(token),))


def send_mail(settings: Settings, to: str, subject: str, body: str) -> None:
    """Send a mail through the SMTP server of the ``portal.mail_channel`` e-mail channel."""
    from config.notify import EmailChannel

    name = settings.portal.mail_channel
    channel = settings.notify.channels.get(name) if name else None
    if not isinstance(channel, EmailChannel):
        raise MailError(f"portal.mail_channel {name!r} names no e-mail channel of "
                        "notify.channels — set it to the channel whose SMTP server sends mail")
    message = EmailMessage()
    message["From"] = settings.portal.mail_sender or channel.sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="teddy.invalid")
    message.set_content(body)
    try:
        with smtplib.SMTP(channel.host, channel.port, timeout=settings.notify.timeout_s) as smtp:
            smtp.ehlo()
            if channel.starttls:
                ca = str(channel.ca_file) if channel.ca_file else None
                smtp.starttls(context=ssl.create_default_context(cafile=ca))
                smtp.ehlo()
            if channel.username:
                password = channel.password.get_secret_value() if channel.password else ""
                smtp.login(channel.username, password)
            smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        raise MailError(f"could not send mail via {channel.host}:{channel.port}: {exc}"
                        ) from None
