"""Receipts of verified HR webhook calls, so that a captured call cannot be replayed.

Only the SHA-256 of each accepted signature is kept (with the signed timestamp and when
it arrived): enough to recognise the same call again, nothing about its content. A
receipt is needed only while its timestamp is inside the verification window, so the
tick's housekeeping deletes receipts older than a day (``lms.housekeeping``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from lms.dbtypes import UTCDateTime, utcnow
from lms.extensions import db

__all__ = ["HrWebhookReceipt", "record_receipt"]


class HrWebhookReceipt(db.Model):
    __tablename__ = "hr_webhook_receipts"
    __table_args__ = (Index("ix_hr_webhook_receipts_received_at", "received_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    signature_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    timestamp: Mapped[int] = mapped_column(BigInteger)  # X-Timestamp, unix seconds
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def record_receipt(session: Session, *, signature_sha256: str, timestamp: int,
                   now: datetime) -> bool:
    """Keep the receipt of a verified call; False if this signature was seen before.

    Call it first in the request's unit of work, with nothing else written yet: the
    unique key decides between two copies arriving at once (on PostgreSQL the second
    insert waits for the first transaction, then fails) and a failed insert rolls the
    session back. No savepoint on purpose: with nothing written before it, SQLite's
    driver would commit the receipt on releasing it, before the call is applied. The
    receipt is rolled back with a call that fails, so that call may be sent again.
    """
    seen = session.scalar(select(HrWebhookReceipt.id).where(
        HrWebhookReceipt.signature_sha256 == signature_sha256))
    if seen is not None:
        return False
    session.add(HrWebhookReceipt(signature_sha256=signature_sha256, timestamp=timestamp,
                                 received_at=now))
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        return False
    return True
