"""Helpers of the risk and performance API tests (import as ``from risk_support import ...``)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from courses.models import Course, CourseVersion, Enrollment, Lesson
from integrations.risk.models import RiskType, RiskTypeCourse
from integrations.tokens import issue_token
from lms.compliance.models import Assignment
from lms.extensions import db


def make_token(*scopes: str, name: str = "risk-system") -> str:
    issued = issue_token(db.session, name=name, scopes=list(scopes), actor_id=None)
    db.session.commit()
    return issued.secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def at(day: date, hour: int = 10) -> datetime:
    """``hour`` o'clock Beijing time on ``day``, in UTC."""
    return datetime(day.year, day.month, day.day, hour - 8, 0, tzinfo=UTC)


def course(code: str, topic: str, *, published: bool = True) -> Course:
    """A one-lesson document course, its version 1 published (or left a draft)."""
    row = Course(code=code, title_zh=f"课程{code}", risk_topic=topic)
    version = CourseVersion(course=row, number=1, status="draft")
    db.session.add_all([row, version])
    db.session.flush()
    db.session.add(Lesson(version=version, position=1, kind="document", title="阅读",
                          body="制度全文。"))
    db.session.flush()
    if published:
        version.status, version.content_hash = "published", code.lower().ljust(64, "0")[:64]
    db.session.commit()
    return row


def risk_type(code: str, *mapped: tuple[Course, int]) -> RiskType:
    row = RiskType(code=code, name_zh=f"风险{code}", name_en=code.replace("_", " "))
    row.courses = [RiskTypeCourse(course_id=c.id, due_working_days=days) for c, days in mapped]
    db.session.add(row)
    db.session.commit()
    return row


def assign(user, course_row: Course, due: date, *, status: str = "open", cycle: int = 1,
           completed: datetime | None = None, source: str = "manual",
           superseded: datetime | None = None) -> Assignment:
    """An assignment as the engine leaves it (with its enrolment, complete or not; an
    earlier round's enrolment is ``superseded``)."""
    version = course_row.versions[0]
    enrolment = Enrollment(user_id=user.id, version_id=version.id, source="assigned",
                           completed_at=completed, cycle=cycle, superseded_at=superseded)
    db.session.add(enrolment)
    db.session.flush()
    row = Assignment(user_id=user.id, employee_id=user.employee_id, course_id=course_row.id,
                     version_id=version.id, enrollment_id=enrolment.id, source=source,
                     cycle=cycle, trigger_date=date(2026, 9, 1), due_date=due, status=status,
                     completed_at=completed, assigned_at=at(date(2026, 9, 1)))
    db.session.add(row)
    db.session.commit()
    return row
