"""E-mail over SMTP, always upgraded with STARTTLS before any credential or content."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from config.notify import EmailChannel
from sync.cloud.notify.errors import DeliveryError
from sync.cloud.notify.message import Notification


class EmailSender:
    """Delivers to one e-mail channel."""

    def __init__(self, settings: EmailChannel, timeout: float) -> None:
        self.settings = settings
        """The channel's settings."""
        self.timeout = timeout
        """Seconds per attempt (connect and each command)."""

    def send(self, note: Notification) -> None:
        """Send one message to every recipient; raises DeliveryError."""
        recipients = self.recipients(note)
        if not recipients:
            raise DeliveryError(f"no parent with an active consent on record for "
                                f"{note.device_id} — nobody to tell", retryable=False)
        self._deliver(self.compose(note, recipients))

    def send_text(self, recipients: tuple[str, ...] | list[str], subject: str, body: str
                  ) -> None:
        """Send a plain e-mail (a family's daily summary); raises DeliveryError."""
        message = EmailMessage()
        message["From"] = self.settings.sender
        message["To"] = ", ".join(recipients)
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain="teddy.invalid")
        message.set_content(body)
        self._deliver(message)

    def _deliver(self, message: EmailMessage) -> None:
        where = f"SMTP server {self.settings.host}:{self.settings.port}"
        try:
            with smtplib.SMTP(self.settings.host, self.settings.port,
                              timeout=self.timeout) as smtp:
                self._secure(smtp, where)
                if self.settings.username:
                    password = self.settings.password
                    smtp.login(self.settings.username,
                               password.get_secret_value() if password else "")
                smtp.send_message(message)
        except DeliveryError:
            raise
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(f"{where} answered {exc.smtp_code}", retryable=exc.smtp_code < 500
                                ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"{where} refused recipients {sorted(exc.recipients)}",
                                retryable=False) from None
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(f"{where} certificate not trusted ({exc.verify_message}) — "
                                "set the channel's ca_file", retryable=False) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{where} failed: {exc}", retryable=True) from None

    def _secure(self, smtp: smtplib.SMTP, where: str) -> None:
        smtp.ehlo()
        if not self.settings.starttls:
            return
        if not smtp.has_extn("starttls"):
            raise DeliveryError(f"{where} does not offer STARTTLS — refusing to send in the "
                                "clear", retryable=False)
        ca_file = self.settings.ca_file
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        smtp.starttls(context=context)
        smtp.ehlo()

    def recipients(self, note: Notification) -> list[str]:
        """Who gets ``note``: the bear's parents (``to_parent``) or the fixed ``to`` list."""
        return list(note.parents) if self.settings.to_parent else list(self.settings.to)

    def compose(self, note: Notification, recipients: list[str]) -> EmailMessage:
        """The e-mail for ``note`` to ``recipients``."""
        message = EmailMessage()
        message["From"] = self.settings.sender
        message["To"] = ", ".join(recipients)
        message["Subject"] = note.subject()
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain="teddy.invalid")
        message["X-Teddy-Alert"] = f"{note.alert_id}/{note.event}"
        text = note.text()
        if note.wellbeing and self.settings.app_url:  # the parent app shows the rest
            text += (f"\n\nSee it in the parent app: {self.settings.app_url.rstrip('/')}"
                     f"/alerts#alert-{note.alert_id}")
        message.set_content(text + "\n")
        return message
