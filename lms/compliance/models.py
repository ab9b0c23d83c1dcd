"""Assignment rules and assignments.

An ``Assignment`` is the obligation ("this person must complete this course by this
date"); the ``Enrollment`` it creates is where the learning is recorded. One live
(open or suspended) assignment per person and course; every assignment, completed,
waived or suspended, stays on record, and ``cycle`` numbers re-training rounds.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from courses.models import Course, CourseVersion
from lms.dbtypes import UTCDateTime, utcnow
from lms.extensions import db
from lms.people.models import Employee, User

ASSIGNMENT_STATUSES = ("open", "completed", "suspended", "waived")
ASSIGNMENT_SOURCES = ("rule", "manual", "retraining", "recurrence", "risk")
APPLIES_TO = ("everyone", "new_hires")
# Employee statuses that suspend open assignments (not counted overdue, kept on record);
# coming back to 在职 resumes them.
SUSPENDING_STATUSES = ("leaving", "absconded", "unpaid_leave", "left")
MAX_DUE_WORKING_DAYS = 250
MAX_RECUR_MONTHS = 120


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class AssignmentRule(db.Model):
    """Who must take a course, and by when (N Chinese working days from the trigger)."""

    __tablename__ = "assignment_rules"
    __table_args__ = (
        CheckConstraint(_in("applies_to", APPLIES_TO), name="applies_to"),
        CheckConstraint(f"due_working_days >= 1 AND due_working_days <= {MAX_DUE_WORKING_DAYS}",
                        name="due_working_days"),
        CheckConstraint(f"recur_months IS NULL OR (recur_months >= 1 AND recur_months <= "
                        f"{MAX_RECUR_MONTHS})", name="recur_months"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="RESTRICT"),
                                           index=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    applies_to: Mapped[str] = mapped_column(String(16), default="everyone")
    due_working_days: Mapped[int] = mapped_column(Integer, default=10)
    include_subdepartments: Mapped[bool] = mapped_column(Boolean, default=True)
    roles: Mapped[str] = mapped_column(Text, default="[]")  # JSON: any of these (empty: any)
    statuses: Mapped[str] = mapped_column(Text, default='["active"]')  # JSON employee statuses
    # JSON: employees carrying any of these tags (empty: any), see lms.people.tags
    tags: Mapped[str] = mapped_column(Text, default="[]", server_default="[]")
    hired_from: Mapped[date | None] = mapped_column(Date)
    hired_to: Mapped[date | None] = mapped_column(Date)
    retrain_on_new_version: Mapped[bool] = mapped_column(Boolean, default=True)
    # recertify: a new round N months after each completion (None: once is enough)
    recur_months: Mapped[int | None] = mapped_column(Integer)
    effective_from: Mapped[date] = mapped_column(Date)  # new hires: hired on/after this day
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    course: Mapped[Course] = relationship()


class RuleDepartment(db.Model):
    __tablename__ = "assignment_rule_departments"

    rule_id: Mapped[int] = mapped_column(
        ForeignKey("assignment_rules.id", ondelete="CASCADE"), primary_key=True)
    department_id: Mapped[int] = mapped_column(
        ForeignKey("departments.id", ondelete="RESTRICT"), primary_key=True)


class RulePosition(db.Model):
    __tablename__ = "assignment_rule_positions"

    rule_id: Mapped[int] = mapped_column(
        ForeignKey("assignment_rules.id", ondelete="CASCADE"), primary_key=True)
    position_id: Mapped[int] = mapped_column(
        ForeignKey("positions.id", ondelete="RESTRICT"), primary_key=True)


class Assignment(db.Model):
    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("user_id", "course_id", "cycle", name="uq_assignments_user_course_cycle"),
        CheckConstraint(_in("status", ASSIGNMENT_STATUSES), name="status"),
        CheckConstraint(_in("source", ASSIGNMENT_SOURCES), name="source"),
        CheckConstraint("cycle >= 1", name="cycle"),
        # One live obligation per person and course.
        Index("uq_assignments_live", "user_id", "course_id", unique=True,
              sqlite_where=text("status IN ('open', 'suspended')"),
              postgresql_where=text("status IN ('open', 'suspended')")),
        Index("ix_assignments_status_due", "status", "due_date"),
        Index("ix_assignments_course_status", "course_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    employee_id: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="RESTRICT"),
                                             index=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="RESTRICT"))
    version_id: Mapped[int] = mapped_column(ForeignKey("course_versions.id",
                                                       ondelete="RESTRICT"), index=True)
    # the round of learning that fulfils this obligation (set when the person is enrolled)
    enrollment_id: Mapped[int | None] = mapped_column(
        ForeignKey("enrollments.id", ondelete="RESTRICT"), index=True)
    rule_id: Mapped[int | None] = mapped_column(
        ForeignKey("assignment_rules.id", ondelete="RESTRICT"), index=True)
    # source "risk": the risk signal (integrations.risk) the assignment answers; a table
    # name, not an import, since the risk module sits in a layer above this one
    risk_signal_id: Mapped[int | None] = mapped_column(
        ForeignKey("risk_signals.id", ondelete="RESTRICT"), index=True)
    source: Mapped[str] = mapped_column(String(16))
    cycle: Mapped[int] = mapped_column(Integer, default=1)
    trigger_date: Mapped[date] = mapped_column(Date)  # local (Asia/Shanghai) date
    due_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="open")
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    assigned_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id",
                                                                  ondelete="SET NULL"))
    reason: Mapped[str] = mapped_column(Text, default="")
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    waived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    waived_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    waive_reason: Mapped[str | None] = mapped_column(Text)
    extensions: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    employee: Mapped[Employee] = relationship()
    course: Mapped[Course] = relationship()
    version: Mapped[CourseVersion] = relationship()
