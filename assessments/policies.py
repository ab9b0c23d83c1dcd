"""Policy documents, their immutable versions, reading sessions and e-signatures.

A published ``PolicyVersion`` never changes (its SHA-256 pins the exact bytes people
signed for); a ``Signature`` copies everything it attests to, so /verify can compare
the row with its ledger entry and the stored document."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    inspect,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from lms.dbtypes import UTCDateTime, utcnow
from lms.extensions import db

DEFAULT_STATEMENT = "本人已阅读并理解《{name}》（第 {version} 版）的全部内容，同意遵守。"
DEFAULT_MIN_READING_SECONDS = 60
POLICY_VERSION_STATUSES = ("draft", "published")
BODY_KINDS = ("text", "pdf")


class PolicyDocument(db.Model):
    __tablename__ = "policy_documents"
    __table_args__ = (
        CheckConstraint("min_reading_seconds >= 0 AND min_reading_seconds <= 3600",
                        name="min_reading_seconds"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    statement_template: Mapped[str] = mapped_column(Text, default=DEFAULT_STATEMENT)
    min_reading_seconds: Mapped[int] = mapped_column(Integer, default=DEFAULT_MIN_READING_SECONDS)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    versions: Mapped[list[PolicyVersion]] = relationship(
        back_populates="document", order_by="PolicyVersion.number")


class PolicyVersion(db.Model):
    """One version of a policy: plain text (``body``) or a PDF in media storage."""

    __tablename__ = "policy_versions"
    __table_args__ = (
        UniqueConstraint("document_id", "number", name="uq_policy_versions_document_number"),
        CheckConstraint("status IN ('draft', 'published')", name="status"),
        CheckConstraint("body_kind IN ('text', 'pdf')", name="body_kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[int] = mapped_column(
        ForeignKey("policy_documents.id", ondelete="RESTRICT"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    body_kind: Mapped[str] = mapped_column(String(8))
    body: Mapped[str] = mapped_column(Text, default="")
    storage_key: Mapped[str | None] = mapped_column(String(128))
    original_filename: Mapped[str | None] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    published_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"))
    publish_ledger_seq: Mapped[int | None] = mapped_column(Integer)

    document: Mapped[PolicyDocument] = relationship(back_populates="versions")


class PolicyReading(db.Model):
    """The server's record that it served a policy lesson's document to a learner: the
    reading time of a signature is measured from ``served_at``, never from the browser."""

    __tablename__ = "policy_readings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    lesson_id: Mapped[int] = mapped_column(ForeignKey("lessons.id", ondelete="RESTRICT"))
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id", ondelete="RESTRICT"))
    policy_version_id: Mapped[int] = mapped_column(
        ForeignKey("policy_versions.id", ondelete="RESTRICT"))
    served_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))


class Signature(db.Model):
    """One person's signed acknowledgement of one policy version, at most one per
    enrolment: a recertification round signs again and the earlier signature stays."""

    __tablename__ = "signatures"
    __table_args__ = (
        UniqueConstraint("enrollment_id", "policy_version_id",
                         name="uq_signatures_enrollment_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    verification_code: Mapped[str] = mapped_column(String(16), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    employee_id: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="RESTRICT"))
    employee_no: Mapped[str] = mapped_column(String(32))
    signer_name: Mapped[str] = mapped_column(String(64))
    id_number_masked: Mapped[str | None] = mapped_column(String(32))
    policy_document_id: Mapped[int] = mapped_column(
        ForeignKey("policy_documents.id", ondelete="RESTRICT"))
    policy_version_id: Mapped[int] = mapped_column(
        ForeignKey("policy_versions.id", ondelete="RESTRICT"), index=True)
    version_number: Mapped[int] = mapped_column(Integer)
    document_sha256: Mapped[str] = mapped_column(String(64))
    lesson_id: Mapped[int | None] = mapped_column(ForeignKey("lessons.id", ondelete="RESTRICT"))
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id", ondelete="RESTRICT"),
                                               index=True)
    statement: Mapped[str] = mapped_column(Text)
    statement_sha256: Mapped[str] = mapped_column(String(64))
    reading_seconds: Mapped[float] = mapped_column(Float)
    auth_method: Mapped[str] = mapped_column(String(16))
    auth_at: Mapped[datetime] = mapped_column(UTCDateTime)
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    ledger_seq: Mapped[int] = mapped_column(Integer)
    ledger_hash: Mapped[str] = mapped_column(String(64))

    version: Mapped[PolicyVersion] = relationship()


class PublishedPolicyError(RuntimeError):
    """An attempt to change or delete a published policy version through the ORM."""


@event.listens_for(Session, "before_flush")
def _guard_published_policies(session: Session, _context: Any, _instances: Any) -> None:
    """Refuse ORM changes to published policy versions (their hash is what people signed)."""
    for obj in list(session.dirty) + list(session.deleted):
        if not isinstance(obj, PolicyVersion):
            continue
        state = inspect(obj)
        status_hist = state.attrs.status.history
        stored = (status_hist.deleted[0] if status_hist.deleted
                  else status_hist.unchanged[0] if status_hist.unchanged else obj.status)
        if stored != "published":
            continue
        if obj in session.deleted:
            raise PublishedPolicyError(f"policy version {obj.id} is published: not deletable")
        changed = {a.key for a in state.attrs if a.history.has_changes()}
        if changed:
            raise PublishedPolicyError(
                f"policy version {obj.id} is published: {sorted(changed)} cannot change")
