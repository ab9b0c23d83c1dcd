"""Messages (in-app inbox and e-mail) with delivery and read receipts.

A message is evidence of who was told what and when: its ``content_sha256`` covers the
recipient, kind, subject, body and link, and each batch of messages is summarised in one
ledger entry. A message has one delivery per channel: the inbox delivery is "sent" when
the message is created; the e-mail delivery waits as "pending" until the tick hands it
to the SMTP server (``sent_at`` = accepted by the mail system), retrying with back-off.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from lms.dbtypes import UTCDateTime, utcnow
from lms.extensions import db

__all__ = [
    "CHANNELS",
    "DELIVERY_STATUSES",
    "MESSAGE_KINDS",
    "READ_VIA",
    "Message",
    "MessageDelivery",
]

# Kinds are checked by the service, not by a CHECK constraint, so that a new kind (the
# regulation-update alerts) needs no table rebuild on SQLite.
MESSAGE_KINDS = ("reminder", "escalation", "digest", "receipt", "notice", "alert")
READ_VIA = ("inbox", "email_link")
CHANNELS = ("inbox", "email")
DELIVERY_STATUSES = ("pending", "sent", "failed")


def _in_check(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Message(db.Model):
    """One notice to one user. Content never changes after creation; only the first
    read is recorded (``read_at``, ``read_via``, ``read_ip``)."""

    __tablename__ = "messages"
    __table_args__ = (
        CheckConstraint(f"read_via IS NULL OR {_in_check('read_via', READ_VIA)}",
                        name="read_via"),
        # Scheduled sending is idempotent: the same (recipient, dedupe key) inserts once.
        # NULL keys never conflict, so ad-hoc notices need no key.
        UniqueConstraint("recipient_user_id", "dedupe_key"),
        # The inbox page: a B-tree is read backwards for "newest first".
        Index("ix_messages_recipient_created", "recipient_user_id", "created_at"),
        # The unread badge on every page: a small partial index of unread messages only.
        Index("ix_messages_unread", "recipient_user_id",
              sqlite_where=text("read_at IS NULL"), postgresql_where=text("read_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recipient_user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(String(500))
    dedupe_key: Mapped[str | None] = mapped_column(String(200))
    content_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The ``send`` call that created it: its "notify.sent" ledger entry names the batch
    # and a digest over the batch's (id, content_sha256) pairs, so it can be re-checked.
    batch: Mapped[str] = mapped_column(String(32), index=True)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    read_via: Mapped[str | None] = mapped_column(String(16))
    read_ip: Mapped[str | None] = mapped_column(String(64))
    # Mail scanners follow links too: the user agent helps tell a person from a robot.
    read_user_agent: Mapped[str | None] = mapped_column(String(512))


class MessageDelivery(db.Model):
    """A message on one channel. E-mail deliveries are claimed by a tick with a lease
    (``claimed_until``) so that two ticks at once never send the same e-mail twice."""

    __tablename__ = "message_deliveries"
    __table_args__ = (
        CheckConstraint(_in_check("channel", CHANNELS), name="channel"),
        CheckConstraint(_in_check("status", DELIVERY_STATUSES), name="status"),
        CheckConstraint("attempts >= 0", name="attempts"),
        UniqueConstraint("message_id", "channel"),
        Index("ix_message_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="RESTRICT"))
    channel: Mapped[str] = mapped_column(String(8))
    address: Mapped[str | None] = mapped_column(String(254))
    status: Mapped[str] = mapped_column(String(8), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    smtp_message_id: Mapped[str | None] = mapped_column(String(255))
