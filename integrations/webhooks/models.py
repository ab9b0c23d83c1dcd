"""Webhook endpoints and their deliveries.

An endpoint's secret signs every request, so the server needs it in plain text later:
it is stored encrypted with the application's Fernet key (``ID_NUMBER_KEY``, the
``id_vault``), shown to the admin once at creation, never again. Endpoints are
deactivated, not deleted, so the delivery log keeps pointing at them.

A delivery is one event for one endpoint; ``(endpoint_id, ledger_seq)`` is unique, so
reading the same ledger entry twice queues it once. ``payload`` is the exact body
sent, kept so every retry sends the same bytes (only the timestamp and signature
headers are new).
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lms.dbtypes import UTCDateTime, utcnow
from lms.extensions import db

__all__ = ["DELIVERY_STATUSES", "WebhookDelivery", "WebhookEndpoint"]

DELIVERY_STATUSES = ("pending", "delivered", "failed")


class WebhookEndpoint(db.Model):
    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2000))
    secret_cipher: Mapped[bytes] = mapped_column(LargeBinary)
    secret_prefix: Mapped[str] = mapped_column(String(16))  # "whsec_AbCd": recognisable in lists
    events: Mapped[str] = mapped_column(Text)  # JSON list of event types
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # The ledger entry recording the creation: events after it are delivered, none before.
    created_seq: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deactivated_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"))

    @property
    def event_list(self) -> list[str]:
        return list(json.loads(self.events or "[]"))


class WebhookDelivery(db.Model):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status"),
        CheckConstraint("attempts >= 0", name="attempts"),
        UniqueConstraint("endpoint_id", "ledger_seq"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="RESTRICT"))
    ledger_seq: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[str] = mapped_column(String(36))  # X-Webhook-Id, the body's "id"
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    endpoint: Mapped[WebhookEndpoint] = relationship()
