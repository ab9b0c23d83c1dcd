"""The messaging step of ``flask --app wsgi lms tick``: send the e-mails that are due.

Safe to run every minute and twice at once: each batch claims its deliveries with a
lease before sending (see ``service.deliver_pending``), so nothing goes out twice.
Like the CLI command that calls it, this function owns its unit of work and commits
after each batch, so a failure later in the tick keeps what was already sent recorded.
"""

from __future__ import annotations

from datetime import datetime

from flask import Flask
from sqlalchemy.orm import Session

from lms.dbtypes import utcnow
from lms.notify.mailer import Mailer, SmtpMailer
from lms.notify.service import deliver_pending, pending_email_count

BATCH_SIZE = 200
MAX_BATCHES = 25  # at most 5,000 e-mails per tick; the next tick continues


def run_notify_tick(session: Session, app: Flask, *, now: datetime | None = None,
                    mailer: Mailer | None = None) -> str:
    """Deliver due e-mails in batches; return one line for the tick's output."""
    mailer = mailer or SmtpMailer.from_config(app.config)
    if mailer is None:
        waiting = pending_email_count(session)
        session.rollback()
        return f"notify: e-mail disabled (SMTP_HOST is empty); {waiting} e-mails waiting"
    session.commit()  # the claim runs on its own connection: hold no write lock here
    sent = retrying = failed = batches = 0
    errors: list[str] = []
    for _ in range(MAX_BATCHES):
        report = deliver_pending(session, mailer, now=now or utcnow(), limit=BATCH_SIZE)
        session.commit()
        if not report.claimed:
            break
        batches += 1
        sent, retrying, failed = (sent + report.sent, retrying + report.retrying,
                                  failed + report.failed)
        errors.extend(e for e in report.errors if e not in errors)
        if report.sent == 0:  # the server is down or refusing: wait for the back-off
            break
    line = (f"notify: {sent} e-mails sent, {retrying} to retry, {failed} failed "
            f"({batches} batches)")
    if errors:
        line += f"; last error: {errors[-1]}"
    return line
