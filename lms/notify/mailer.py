"""Sending e-mail over SMTP with the standard library, one connection per batch.

Messages are built with ``email.message.EmailMessage`` (default policy): the Chinese
subject and sender name are RFC 2047-encoded, both body parts are UTF-8 in base64, so
the whole message is 7-bit and passes any relay, with or without 8BITMIME/SMTPUTF8.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any, Protocol

from lms.dbtypes import utcnow

__all__ = ["Mailer", "OutgoingEmail", "SendOutcome", "SmtpMailer", "SmtpSettings"]


@dataclass(frozen=True)
class OutgoingEmail:
    key: int  # the caller's reference (the delivery id), handed back in the outcome
    to: str
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class SendOutcome:
    key: int
    ok: bool
    message_id: str | None = None
    accepted_at: datetime | None = None
    error: str | None = None
    permanent: bool = False  # the server refused this message for good (5xx): no retry


class Mailer(Protocol):
    def send_batch(self, emails: Sequence[OutgoingEmail]) -> list[SendOutcome]: ...


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 25
    user: str = ""
    password: str = ""
    starttls: bool = False
    use_ssl: bool = False
    timeout: float = 10.0
    mail_from: str = "合规学堂 <no-reply@example.com>"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SmtpSettings | None:
        """The app's SMTP settings, or None when e-mail is disabled (no SMTP_HOST)."""
        if not config.get("SMTP_HOST"):
            return None
        return cls(host=config["SMTP_HOST"], port=int(config["SMTP_PORT"]),
                   user=config["SMTP_USER"], password=config["SMTP_PASSWORD"],
                   starttls=bool(config["SMTP_STARTTLS"]), use_ssl=bool(config["SMTP_SSL"]),
                   timeout=float(config["SMTP_TIMEOUT"]), mail_from=config["MAIL_FROM"])


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


class SmtpMailer:
    """Sends a batch over one SMTP connection. A connection that cannot be opened, or
    breaks, fails the rest of the batch (to be retried); a refused recipient fails only
    its own message."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        domain = parseaddr(settings.mail_from)[1].rpartition("@")[2]
        self._msgid_domain = domain or "localhost"  # make_msgid's default asks DNS

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SmtpMailer | None:
        settings = SmtpSettings.from_config(config)
        return cls(settings) if settings else None

    def build(self, email: OutgoingEmail) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = email.subject
        msg["From"] = self.settings.mail_from
        msg["To"] = email.to
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = make_msgid(domain=self._msgid_domain)
        msg.set_content(email.text, cte="base64")
        msg.add_alternative(email.html, subtype="html", cte="base64")
        return msg

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if s.use_ssl:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout,
                                                  context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        try:
            if s.starttls and not s.use_ssl:
                smtp.starttls(context=ssl.create_default_context())
            if s.user:
                smtp.login(s.user, s.password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send_batch(self, emails: Sequence[OutgoingEmail]) -> list[SendOutcome]:
        if not emails:
            return []
        try:
            smtp = self._connect()
        except (OSError, smtplib.SMTPException) as exc:
            return [SendOutcome(e.key, False, error=_describe(exc)) for e in emails]
        outcomes: list[SendOutcome] = []
        try:
            for index, email in enumerate(emails):
                try:
                    msg = self.build(email)
                except (ValueError, TypeError) as exc:  # an address or header that can't be
                    outcomes.append(SendOutcome(email.key, False, error=_describe(exc),
                                                permanent=True))
                    continue
                try:
                    smtp.send_message(msg)
                except smtplib.SMTPRecipientsRefused as exc:
                    codes = [code for code, _ in exc.recipients.values()]
                    outcomes.append(SendOutcome(email.key, False, error=_describe(exc),
                                                permanent=all(500 <= c < 600 for c in codes)))
                except smtplib.SMTPDataError as exc:
                    outcomes.append(SendOutcome(email.key, False, error=_describe(exc),
                                                permanent=500 <= exc.smtp_code < 600))
                except smtplib.SMTPSenderRefused as exc:  # our MAIL_FROM: fix config, retry
                    outcomes.append(SendOutcome(email.key, False, error=_describe(exc)))
                except (OSError, smtplib.SMTPException) as exc:  # connection lost
                    outcomes.extend(SendOutcome(e.key, False, error=_describe(exc))
                                    for e in emails[index:])
                    break
                else:
                    outcomes.append(SendOutcome(email.key, True, message_id=msg["Message-ID"],
                                                accepted_at=utcnow()))
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
        return outcomes
