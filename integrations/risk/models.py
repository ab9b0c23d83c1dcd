"""Risk types, the courses each one calls for, and the risk signals received.

A **risk type** (``identity_fraud``, ``social_insurance_gap``...) is what the risk module
reports; the admin maps it to the courses that answer it, each with its own due date in
Chinese working days. A **risk signal** says "this risk showed up here" (a department
with its sub-departments, a position, one employee); it becomes assignments (source
``risk``, ``assignments.risk_signal_id`` pointing back at it) for the mapped courses.
Signals are evidence and are never edited; what they did is stored with them.
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
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from courses.models import Course
from lms.compliance.models import MAX_DUE_WORKING_DAYS
from lms.dbtypes import UTCDateTime, utcnow
from lms.extensions import db

__all__ = ["SCOPE_KINDS", "SEVERITIES", "RiskSignal", "RiskType", "RiskTypeCourse"]

SEVERITIES = ("low", "medium", "high", "critical")
SCOPE_KINDS = ("department", "position", "employee")
CODE_PATTERN = r"[a-z][a-z0-9_]{1,31}"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class RiskType(db.Model):
    """A kind of employment risk the risk module reports. The code is what integrators
    send and is never changed once created (signals and the ledger refer to it)."""

    __tablename__ = "risk_types"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name_zh: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    courses: Mapped[list[RiskTypeCourse]] = relationship(
        back_populates="risk_type", cascade="all, delete-orphan",
        order_by="RiskTypeCourse.course_id")


class RiskTypeCourse(db.Model):
    """A course a risk type calls for, due ``due_working_days`` working days after the
    signal is received."""

    __tablename__ = "risk_type_courses"
    __table_args__ = (
        CheckConstraint(f"due_working_days >= 1 AND due_working_days <= {MAX_DUE_WORKING_DAYS}",
                        name="due_working_days"),
    )

    risk_type_id: Mapped[int] = mapped_column(
        ForeignKey("risk_types.id", ondelete="CASCADE"), primary_key=True)
    course_id: Mapped[int] = mapped_column(
        ForeignKey("courses.id", ondelete="RESTRICT"), primary_key=True, index=True)
    due_working_days: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    risk_type: Mapped[RiskType] = relationship(back_populates="courses")
    course: Mapped[Course] = relationship()


class RiskSignal(db.Model):
    """One risk signal as received, with what it did (counts and per-course results).

    Exactly one of department/position/employee is set, the one ``scope_kind`` names;
    ``scope_code`` keeps the code or employee number as sent. ``external_id`` is the
    sender's idempotency key: the same key again returns this signal and does nothing.
    """

    __tablename__ = "risk_signals"
    __table_args__ = (
        CheckConstraint(_in("severity", SEVERITIES), name="severity"),
        CheckConstraint(_in("scope_kind", SCOPE_KINDS), name="scope_kind"),
        CheckConstraint(
            "(scope_kind = 'department' AND department_id IS NOT NULL AND position_id IS NULL"
            " AND employee_id IS NULL) OR (scope_kind = 'position' AND position_id IS NOT NULL"
            " AND department_id IS NULL AND employee_id IS NULL) OR (scope_kind = 'employee'"
            " AND employee_id IS NOT NULL AND department_id IS NULL AND position_id IS NULL)",
            name="scope"),
        Index("ix_risk_signals_received_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    risk_type_id: Mapped[int] = mapped_column(ForeignKey("risk_types.id", ondelete="RESTRICT"),
                                              index=True)
    severity: Mapped[str] = mapped_column(String(16))
    scope_kind: Mapped[str] = mapped_column(String(16))
    scope_code: Mapped[str] = mapped_column(String(32))
    department_id: Mapped[int | None] = mapped_column(
        ForeignKey("departments.id", ondelete="RESTRICT"))
    position_id: Mapped[int | None] = mapped_column(
        ForeignKey("positions.id", ondelete="RESTRICT"))
    employee_id: Mapped[int | None] = mapped_column(
        ForeignKey("employees.id", ondelete="RESTRICT"))
    note: Mapped[str] = mapped_column(Text, default="")
    external_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id", ondelete="SET NULL"))
    audience: Mapped[int] = mapped_column(Integer, default=0)  # people in scope, 在职, login
    assigned: Mapped[int] = mapped_column(Integer, default=0)  # assignments created
    already_assigned: Mapped[int] = mapped_column(Integer, default=0)  # had a live one
    results: Mapped[str] = mapped_column(Text, default="[]")  # JSON: per mapped course
    ledger_seq: Mapped[int | None] = mapped_column(Integer)

    risk_type: Mapped[RiskType] = relationship()
