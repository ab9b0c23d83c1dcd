"""Putting learners on course versions, until the assignment engine does it by rule.

HR enrols people by hand (a department with its sub-departments and/or a list of
employee numbers); trainees enrol themselves in published optional courses. Both are
idempotent — enrolling someone twice is a no-op that is counted, never an error — and
each change is recorded in the ledger in the caller's transaction. Nothing commits here.

Also the read side of "My learning": the learner's courses with progress in one
aggregate query, a course's lessons with the learner's progress, and the lesson-order
gate. Every lesson kind records its completion in ``LessonProgress.completed_at`` (video
by watch time, documents by reading time; exam lessons will set it when an attempt
passes), so the gate needs to know nothing about kinds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from courses.models import (
    Course,
    CourseVersion,
    Enrollment,
    Lesson,
    LessonProgress,
    MediaAsset,
    current_round,
)
from lms import ledger
from lms.dbtypes import utcnow
from lms.people.models import Department, Employee, User
from lms.people.services import department_subtree_query

__all__ = [
    "MAX_EMPLOYEE_NOS",
    "CourseRow",
    "EnrolmentError",
    "EnrolmentReport",
    "LessonRow",
    "blocking_lesson",
    "course_outline",
    "current_enrolment",
    "department_choices",
    "enrol_people",
    "learner_courses",
    "parse_employee_nos",
    "published_versions",
    "self_enrol",
    "self_enrol_options",
]

# Only people in this status (在职) are enrolled by hand; others are reported.
ENROLLABLE_STATUS = "active"
MAX_EMPLOYEE_NOS = 5000
_SEPARATORS = re.compile(r"[\s,，;；、]+")


class EnrolmentError(ValueError):
    """Enrolment refused; ``field`` names the form field the message belongs to."""

    def __init__(self, message: Any, field: str = "") -> None:
        super().__init__(str(message))
        self.message = message
        self.field = field


@dataclass
class EnrolmentReport:
    """What a manual enrolment did, person by person (employee numbers)."""

    course_code: str
    version_number: int
    enrolled: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    no_login: list[str] = field(default_factory=list)
    not_active: list[tuple[str, str]] = field(default_factory=list)  # (employee no., status)
    unknown: list[str] = field(default_factory=list)
    ledger_seq: int | None = None


def parse_employee_nos(text: str | None) -> list[str]:
    """Employee numbers from pasted text (one per line, or separated by commas, spaces,
    semicolons — Chinese punctuation too), de-duplicated in their given order."""
    seen: dict[str, None] = {}
    for token in _SEPARATORS.split(text or ""):
        if token:
            seen.setdefault(token, None)
    return list(seen)


def department_choices(session: Session) -> list[tuple[int, str]]:
    """All departments in tree order, indented by depth (one query), for a <select>."""
    departments = session.execute(select(Department).order_by(Department.code)).scalars().all()
    ids = {d.id for d in departments}
    children: dict[int | None, list[Department]] = {}
    for dept in departments:
        children.setdefault(dept.parent_id if dept.parent_id in ids else None, []).append(dept)
    out: list[tuple[int, str]] = []
    stack = [(d, 0) for d in reversed(children.get(None, []))]
    seen: set[int] = set()
    while stack:
        dept, depth = stack.pop()
        if dept.id in seen:
            continue
        seen.add(dept.id)
        out.append((dept.id, f"{'— ' * depth}{dept.name} ({dept.code})"))
        stack.extend((c, depth + 1) for c in reversed(children.get(dept.id, [])))
    return out


def published_versions(session: Session) -> list[tuple[CourseVersion, Course]]:
    """Every published version, by course code then number (for the HR picker)."""
    rows = session.execute(
        select(CourseVersion, Course).join(Course, Course.id == CourseVersion.course_id)
        .where(CourseVersion.status == "published")
        .order_by(Course.code, CourseVersion.number)
    ).all()
    return [(v, c) for v, c in rows]


def _published_version(session: Session, version_id: int) -> tuple[CourseVersion, Course]:
    row = session.execute(
        select(CourseVersion, Course).join(Course, Course.id == CourseVersion.course_id)
        .where(CourseVersion.id == version_id)
    ).first()
    if row is None or row[0].status != "published":
        raise EnrolmentError(_l("Choose a published course version."), "version_id")
    return row[0], row[1]


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, Any]]) -> set[int]:
    """Insert enrolments, skipping ones that exist (even one committed a moment ago by a
    concurrent request); return the user ids actually inserted."""
    if not rows:
        return set()
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # no conflict target: either key (the current round, or user/version/cycle) skips
    stmt = (insert(Enrollment.__table__).on_conflict_do_nothing()
            .returning(Enrollment.__table__.c.user_id))
    return set(session.execute(stmt, rows).scalars().all())


def enrol_people(
    session: Session,
    *,
    version_id: int,
    actor_id: int,
    department_id: int | None = None,
    include_subdepartments: bool = True,
    employee_nos: Sequence[str] = (),
) -> EnrolmentReport:
    """Enrol the chosen people's logins on a published version, in bulk.

    People already enrolled are skipped and counted; a person without a (enabled) login
    or not 在职 is reported and not enrolled; unknown employee numbers are reported.
    One ledger entry "enrolment.manual" records the run when anyone was enrolled.
    """
    version, course = _published_version(session, version_id)
    if department_id is None and not employee_nos:
        raise EnrolmentError(_l("Choose a department or enter employee numbers."),
                             "employee_nos")
    if len(employee_nos) > MAX_EMPLOYEE_NOS:
        raise EnrolmentError(_l("Enter at most %(n)d employee numbers at a time.",
                                n=MAX_EMPLOYEE_NOS), "employee_nos")
    department = None
    if department_id is not None:
        department = session.get(Department, department_id)
        if department is None:
            raise EnrolmentError(_l("Choose a department from the list."), "department_id")

    stmt = (select(Employee.employee_no, Employee.status, User.id, User.is_enabled)
            .outerjoin(User, User.employee_id == Employee.id))
    conditions = []
    if department is not None:
        conditions.append(
            Employee.department_id.in_(department_subtree_query(department.id))
            if include_subdepartments else Employee.department_id == department.id)
    if employee_nos:
        conditions.append(Employee.employee_no.in_(list(employee_nos)))
    stmt = stmt.where(or_(*conditions)).order_by(Employee.employee_no)
    people = session.execute(stmt).all()

    report = EnrolmentReport(course_code=course.code, version_number=version.number)
    found = {row.employee_no for row in people}
    report.unknown = [no for no in employee_nos if no not in found]
    candidates: dict[int, str] = {}
    for no, status, user_id, enabled in people:
        if status != ENROLLABLE_STATUS:
            report.not_active.append((no, status))
        elif user_id is None or not enabled:
            report.no_login.append(no)
        else:
            candidates[user_id] = no

    inserted = _insert_ignoring_duplicates(session, [
        {"user_id": uid, "version_id": version.id, "source": "manual",
         "enrolled_by_id": actor_id, "created_at": utcnow()}
        for uid in candidates
    ])
    for uid, no in candidates.items():
        (report.enrolled if uid in inserted else report.already).append(no)

    if report.enrolled:
        entry = ledger.append(session, kind="enrolment.manual",
                              subject=f"course_version:{version.id}", actor_id=actor_id,
                              payload={
                                  "course_code": course.code,
                                  "version_number": version.number,
                                  "content_hash": version.content_hash,
                                  "department": department.code if department else None,
                                  "include_subdepartments": bool(
                                      department and include_subdepartments),
                                  "enrolled": len(report.enrolled),
                                  "already_enrolled": len(report.already),
                                  "no_login": len(report.no_login),
                                  "not_active": len(report.not_active),
                                  "unknown": len(report.unknown),
                                  "employee_nos": report.enrolled,
                              })
        report.ledger_seq = entry.seq
    return report


def self_enrol(session: Session, user: User, version_id: int) -> tuple[Enrollment, bool]:
    """Enrol ``user`` themself on a published optional course; (enrolment, created).

    Enrolling again returns the existing enrolment and writes nothing.
    """
    version, course = _published_version(session, version_id)
    if not course.is_optional:
        raise EnrolmentError(_l("This course is not open for self-enrolment."))
    existing = current_enrolment(session, user.id, version.id)
    if existing is not None:
        return existing, False
    inserted = _insert_ignoring_duplicates(session, [
        {"user_id": user.id, "version_id": version.id, "source": "self",
         "enrolled_by_id": user.id, "created_at": utcnow()}])
    enrolment = current_enrolment(session, user.id, version.id)
    assert enrolment is not None
    if not inserted:  # a concurrent request (double click) got there first
        return enrolment, False
    ledger.append(session, kind="enrolment.self", subject=f"course_version:{version.id}",
                  actor_id=user.id, payload={
                      "user": user.username,
                      "employee_no": user.employee.employee_no if user.employee else None,
                      "course_code": course.code,
                      "version_number": version.number,
                      "content_hash": version.content_hash,
                  })
    return enrolment, True


def self_enrol_options(session: Session, user_id: int) -> list[tuple[CourseVersion, Course]]:
    """The newest published version of each optional course the user is not on yet."""
    newer = aliased(CourseVersion)
    rows = session.execute(
        select(CourseVersion, Course).join(Course, Course.id == CourseVersion.course_id)
        .where(Course.is_optional.is_(True), CourseVersion.status == "published",
               ~select(newer.id).where(newer.course_id == CourseVersion.course_id,
                                       newer.status == "published",
                                       newer.number > CourseVersion.number).exists(),
               ~select(Enrollment.id).where(Enrollment.user_id == user_id,
                                            Enrollment.version_id == CourseVersion.id).exists())
        .order_by(Course.code)
    ).all()
    return [(v, c) for v, c in rows]


# --- the learner's view --------------------------------------------------------------


@dataclass(frozen=True)
class CourseRow:
    """One line of "My learning"."""

    version_id: int
    version_number: int
    course_code: str
    title_zh: str
    title_en: str
    source: str
    enrolled_at: datetime
    completed_at: datetime | None
    lessons: int
    done: int
    started: int
    cycle: int = 1  # recertification round (1: the first time)

    @property
    def status(self) -> str:
        """'completed', 'in_progress' or 'not_started'."""
        if self.completed_at is not None:
            return "completed"
        return "in_progress" if self.started or self.done else "not_started"

    @property
    def percent(self) -> int:
        if self.completed_at is not None:
            return 100
        return int(100 * self.done / self.lessons) if self.lessons else 0


def learner_courses(session: Session, user_id: int) -> list[CourseRow]:
    """The user's enrolments with lesson counts and progress, in ONE aggregate query."""
    progress = aliased(LessonProgress)
    rows = session.execute(
        select(
            Enrollment.version_id, CourseVersion.number, Course.code, Course.title_zh,
            Course.title_en, Enrollment.source, Enrollment.created_at, Enrollment.completed_at,
            func.count(func.distinct(Lesson.id)),
            func.count(progress.completed_at),
            func.count(progress.id),
            Enrollment.cycle,
        )
        .join(CourseVersion, CourseVersion.id == Enrollment.version_id)
        .join(Course, Course.id == CourseVersion.course_id)
        .outerjoin(Lesson, Lesson.version_id == Enrollment.version_id)
        .outerjoin(progress, and_(progress.lesson_id == Lesson.id,
                                  progress.enrollment_id == Enrollment.id))
        .where(Enrollment.user_id == user_id, current_round())
        .group_by(Enrollment.id, Enrollment.version_id, CourseVersion.number, Course.code,
                  Course.title_zh, Course.title_en, Enrollment.source, Enrollment.created_at,
                  Enrollment.completed_at, Enrollment.cycle)
        .order_by(Enrollment.completed_at.is_not(None), Enrollment.created_at.desc(),
                  Enrollment.id.desc())
    ).all()
    return [CourseRow(*row) for row in rows]


@dataclass(frozen=True)
class LessonRow:
    """A lesson of a course page with the learner's progress on it."""

    lesson: Lesson
    duration: float | None
    watched_seconds: float
    completed_at: datetime | None
    unlocked: bool

    @property
    def percent(self) -> int:
        if self.completed_at is not None:
            return 100
        if not self.duration:
            return 0
        return min(100, int(100 * self.watched_seconds / self.duration))


def course_outline(session: Session, user_id: int, version_id: int
                   ) -> tuple[Enrollment, list[LessonRow]] | None:
    """The user's current enrolment on a version and its lessons in order with progress,
    or None when the user is not enrolled (the caller answers 404: nobody browses
    others')."""
    enrolment = current_enrolment(session, user_id, version_id)
    if enrolment is None:
        return None
    rows = session.execute(
        select(Lesson, MediaAsset.duration_seconds, LessonProgress.watched_seconds,
               LessonProgress.completed_at)
        .outerjoin(MediaAsset, MediaAsset.id == Lesson.media_id)
        .outerjoin(LessonProgress, and_(LessonProgress.lesson_id == Lesson.id,
                                        LessonProgress.enrollment_id == enrolment.id))
        .where(Lesson.version_id == version_id)
        .order_by(Lesson.position)
    ).all()
    out: list[LessonRow] = []
    open_so_far = True
    for lesson, duration, watched, completed_at in rows:
        out.append(LessonRow(lesson, duration, watched or 0.0, completed_at, open_so_far))
        open_so_far = open_so_far and completed_at is not None
    return enrolment, out


def current_enrolment(session: Session, user_id: int, version_id: int) -> Enrollment | None:
    """The user's current round on a version (never a superseded one), or None."""
    return session.execute(
        select(Enrollment).where(Enrollment.user_id == user_id,
                                 Enrollment.version_id == version_id, current_round())
    ).scalar_one_or_none()


def blocking_lesson(session: Session, enrollment_id: int, lesson: Lesson) -> Lesson | None:
    """The first earlier lesson of the same version the enrolment has not completed, or
    None when ``lesson`` is open. Lessons must be done in order."""
    done = select(LessonProgress.id).where(LessonProgress.lesson_id == Lesson.id,
                                           LessonProgress.enrollment_id == enrollment_id,
                                           LessonProgress.completed_at.is_not(None))
    return session.execute(
        select(Lesson).where(Lesson.version_id == lesson.version_id,
                             Lesson.position < lesson.position, ~done.exists())
        .order_by(Lesson.position).limit(1)
    ).scalar_one_or_none()
