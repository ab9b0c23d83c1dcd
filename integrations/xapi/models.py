"""The queue of xAPI statements waiting for (or sent to) the Learning Record Store.

One row per ledger entry (``ledger_seq`` unique): reading the ledger again queues
nothing twice. ``statement`` is the exact JSON sent, built once, so a resend is the
same statement (same id, same content) and the LRS keeps one.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from lms.dbtypes import UTCDateTime, utcnow
from lms.extensions import db

__all__ = ["STATEMENT_STATUSES", "XapiStatement"]

STATEMENT_STATUSES = ("pending", "sent", "failed")


class XapiStatement(db.Model):
    __tablename__ = "xapi_statements"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sent', 'failed')", name="status"),
        CheckConstraint("attempts >= 0", name="attempts"),
        Index("ix_xapi_statements_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ledger_seq: Mapped[int] = mapped_column(Integer, unique=True)
    statement_id: Mapped[str] = mapped_column(String(36), unique=True)
    verb: Mapped[str] = mapped_column(String(16))  # completed / passed / failed / accepted
    statement: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
