"""HR's hand-made assignment actions: assign by hand, extend a due date, waive.

Each action needs a reason and is one ledger entry naming the actor, the reason and
what changed, in the caller's transaction; nothing here commits. Assigning by hand is
set-based (one INSERT ... SELECT guarded by the unique keys), so a double click or a
concurrent rule run never creates a second live assignment; a person whose previous
assignment of the course is completed or waived gets the next cycle.

Also the read side of the HR assignment list (filters applied in SQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import Select, and_, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, contains_eager

from courses.enrolment import ENROLLABLE_STATUS, MAX_EMPLOYEE_NOS
from courses.models import Course, CourseVersion, Enrollment, current_round
from lms import ledger
from lms.compliance.engine import (
    enrol_assigned,
    insert_assignments,
    latest_published_version,
    local_date,
)
from lms.compliance.models import (
    ASSIGNMENT_STATUSES,
    MAX_DUE_WORKING_DAYS,
    Assignment,
)
from lms.dbtypes import utcnow
from lms.field_errors import ErrorCollector, FieldErrors
from lms.people.models import Employee, User
from lms.people.services import department_subtree_query
from lms.workdays import UnknownYearError, WorkCalendar

__all__ = [
    "LIVE_STATUSES",
    "MAX_REASON",
    "AssignReport",
    "AssignmentError",
    "AssignmentFilters",
    "assign_by_hand",
    "assignments_query",
    "extend",
    "overdue_condition",
    "waive",
]

LIVE_STATUSES = ("open", "suspended")
MAX_REASON = 500


class AssignmentError(FieldErrors):
    """An assignment action refused; messages keyed by form field ("" for the whole form)."""


def _errors() -> ErrorCollector:
    return ErrorCollector(AssignmentError)


def _insert(session: Session):
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _check_reason(errors: ErrorCollector, reason: str | None) -> str:
    reason = (reason or "").strip()
    if not reason:
        errors.add("reason", _l("Give a reason: it is kept as evidence with this change."))
    elif len(reason) > MAX_REASON:
        errors.add("reason", _l("Keep the reason to %(n)d characters or fewer.", n=MAX_REASON))
    return reason


def _check_working_day(errors: ErrorCollector, field_name: str, day: date,
                       calendar: WorkCalendar) -> bool:
    """Whether ``day`` is a working day; if not, say why and name the next one."""
    try:
        if calendar.is_workday(day):
            return True
        errors.add(field_name, _l(
            "%(date)s is not a working day (weekend or public holiday); the next working "
            "day is %(next)s.", date=day.isoformat(),
            next=calendar.add_workdays(day, 1).isoformat()))
    except UnknownYearError as exc:
        errors.add(field_name, _l(
            "The holiday calendar for %(year)d is not known yet; ask an administrator to "
            "enter it in the work calendar.", year=exc.year))
    return False


# --- assign by hand -------------------------------------------------------------------


@dataclass
class AssignReport:
    """What a hand-made assignment did, person by person (employee numbers)."""

    course_code: str
    version_number: int
    due_date: date
    assigned: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)  # already has a live assignment
    # completed this very version already: a new round needs a new version (learning
    # records are per person and version; see the closing note of issue 5)
    completed: list[str] = field(default_factory=list)
    no_login: list[str] = field(default_factory=list)
    not_active: list[tuple[str, str]] = field(default_factory=list)  # (employee no., status)
    unknown: list[str] = field(default_factory=list)
    enrolled: int = 0
    ledger_seq: int | None = None


def _due_date(errors: ErrorCollector, *, due_date: date | None, due_working_days: int | None,
              today: date, calendar: WorkCalendar) -> date | None:
    if due_date is not None and due_working_days is not None:
        errors.add("due_date", _l("Give either a due date or a number of working days, "
                                  "not both."))
        return None
    if due_date is None and due_working_days is None:
        errors.add("due_date", _l("Give a due date or a number of working days."))
        return None
    if due_working_days is not None:
        if not 1 <= due_working_days <= MAX_DUE_WORKING_DAYS:
            errors.add("due_working_days", _l(
                "Enter between 1 and %(max)d working days.", max=MAX_DUE_WORKING_DAYS))
            return None
        try:
            return calendar.add_workdays(today, due_working_days)
        except UnknownYearError as exc:
            errors.add("due_working_days", _l(
                "The holiday calendar for %(year)d is not known yet; ask an administrator "
                "to enter it in the work calendar.", year=exc.year))
            return None
    assert due_date is not None
    if due_date < today:
        errors.add("due_date", _l("%(date)s is in the past; choose today or a later working "
                                  "day.", date=due_date.isoformat()))
        return None
    return due_date if _check_working_day(errors, "due_date", due_date, calendar) else None


def assign_by_hand(
    session: Session,
    *,
    actor_id: int,
    course_id: int | None,
    employee_nos: Sequence[str],
    due_date: date | None = None,
    due_working_days: int | None = None,
    reason: str,
    calendar: WorkCalendar,
    now: datetime,
) -> AssignReport:
    """Assign the course's newest published version to the listed people, due on
    ``due_date`` or ``due_working_days`` working days from today (local date).

    Only 在职 people with an enabled login are assigned; the rest are reported. People
    with a live (open or suspended) assignment of the course are skipped and counted.
    The newly assigned are enrolled on the version (source "assigned", idempotent).
    """
    errors = _errors()
    reason = _check_reason(errors, reason)
    course = session.get(Course, course_id) if course_id is not None else None
    version = None
    if course is None:
        errors.add("course_id", _l("Choose a course."))
    else:
        version = latest_published_version(session, course.id)
        if version is None:
            errors.add("course_id", _l("This course has no published version yet."))
    if not employee_nos:
        errors.add("employee_nos", _l("Enter at least one employee number."))
    elif len(employee_nos) > MAX_EMPLOYEE_NOS:
        errors.add("employee_nos", _l("Enter at most %(n)d employee numbers at a time.",
                                      n=MAX_EMPLOYEE_NOS))
    today = local_date(now)
    due = _due_date(errors, due_date=due_date, due_working_days=due_working_days, today=today,
                    calendar=calendar)
    errors.raise_if_any()
    assert course is not None and version is not None and due is not None

    people = session.execute(
        select(Employee.employee_no, Employee.status, User.id, User.is_enabled)
        .outerjoin(User, User.employee_id == Employee.id)
        .where(Employee.employee_no.in_(list(employee_nos)))
        .order_by(Employee.employee_no)).all()
    report = AssignReport(course_code=course.code, version_number=version.number, due_date=due)
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
    done = set(session.scalars(select(Enrollment.user_id).where(
        Enrollment.version_id == version.id, Enrollment.completed_at.is_not(None),
        current_round(),
        Enrollment.user_id.in_(list(candidates)))).all()) if candidates else set()
    report.completed = [candidates.pop(uid) for uid in sorted(done, key=candidates.get)]

    inserted = _insert_assignments(session, list(candidates), course=course, version=version,
                                   today=today, due=due, reason=reason, actor_id=actor_id,
                                   now=now)
    for uid, no in candidates.items():
        (report.assigned if uid in inserted else report.already).append(no)
    report.enrolled = _enrol(session, sorted(inserted), course.id, actor_id, now)
    if report.assigned:
        report.ledger_seq = ledger.append(
            session, kind="assignment.manual", subject=f"course:{course.id}",
            actor_id=actor_id, payload={
                "course_code": course.code, "version_id": version.id,
                "version_number": version.number, "content_hash": version.content_hash,
                "due_date": due.isoformat(), "due_working_days": due_working_days,
                "reason": reason, "assigned": len(report.assigned),
                "already_assigned": len(report.already), "no_login": len(report.no_login),
                "completed_this_version": len(report.completed),
                "not_active": len(report.not_active), "unknown": len(report.unknown),
                "employee_nos": report.assigned,
            }).seq
    return report


def _insert_assignments(session: Session, user_ids: list[int], *, course: Course,
                        version: CourseVersion, today: date, due: date, reason: str,
                        actor_id: int, now: datetime) -> set[int]:
    """Through the engine's one insert; the cycle is one more than the person's latest
    cycle of the course (the live-assignment unique index skips people who have one)."""
    if not user_ids:
        return set()
    prev = Assignment.__table__.alias("prev")
    people = (select(User.id.label("user_id"), User.employee_id.label("employee_id"))
              .where(User.id.in_(user_ids), User.employee_id.is_not(None)).subquery())
    last_cycle = (select(func.max(prev.c.cycle))
                  .where(prev.c.user_id == people.c.user_id, prev.c.course_id == course.id)
                  .scalar_subquery())
    inserted = insert_assignments(
        session, people, course_id=course.id, version_id=version.id, rule_id=None,
        source="manual", cycle=func.coalesce(last_cycle, 0) + 1, trigger=literal(today),
        due=due, now=now, assigned_by_id=actor_id, reason=reason)
    return {user_id for user_id, _employee in inserted}


def _enrol(session: Session, user_ids: list[int], course_id: int, actor_id: int,
           now: datetime) -> int:
    """Enrol the newly assigned (the engine's one enrolment step; existing rounds are
    reused)."""
    if not user_ids:
        return 0
    a = Assignment.__table__.c
    return enrol_assigned(session, and_(a.course_id == course_id, a.rule_id.is_(None),
                                        a.user_id.in_(user_ids)), now=now, actor_id=actor_id)


# --- extend and waive -----------------------------------------------------------------


def _subject(assignment: Assignment) -> dict[str, object]:
    return {"employee_no": assignment.employee.employee_no,
            "course_code": assignment.course.code, "version_number": assignment.version.number,
            "cycle": assignment.cycle}


def _not_live(errors: ErrorCollector, assignment: Assignment, message) -> None:
    if assignment.status not in LIVE_STATUSES:
        errors.add("", message)


def _changed_meanwhile() -> AssignmentError:
    return AssignmentError.one(_l("This assignment was changed at the same moment; nothing "
                                  "was saved. Reload the page and try again."))


def extend(session: Session, assignment: Assignment, *, new_due_date: date | None, reason: str,
           actor_id: int, calendar: WorkCalendar, now: datetime | None = None) -> Assignment:
    """Move a live assignment's due date later, to a working day (not in the past when
    ``now`` is given); counts the extensions."""
    errors = _errors()
    reason = _check_reason(errors, reason)
    _not_live(errors, assignment, _l("Only an open or suspended assignment can be extended; "
                                     "this one is closed (%(status)s).",
                                     status=assignment.status))
    old_due = assignment.due_date
    if new_due_date is None:
        errors.add("new_due_date", _l("Enter the new due date."))
    elif new_due_date <= old_due:
        errors.add("new_due_date", _l("The new due date must be later than the current one "
                                      "(%(date)s).", date=old_due.isoformat()))
    elif now is not None and new_due_date < local_date(now):
        errors.add("new_due_date", _l("%(date)s is in the past; choose today or a later "
                                      "working day.", date=new_due_date.isoformat()))
    else:
        _check_working_day(errors, "new_due_date", new_due_date, calendar)
    errors.raise_if_any()
    assert new_due_date is not None
    a = Assignment.__table__.c
    stamp = now or utcnow()
    done = session.execute(
        update(Assignment.__table__)
        .where(a.id == assignment.id, a.status.in_(LIVE_STATUSES), a.due_date == old_due)
        .values(due_date=new_due_date, extensions=a.extensions + 1, updated_at=stamp)
        .returning(a.extensions)).scalar()
    if done is None:
        raise _changed_meanwhile()
    session.expire(assignment)
    ledger.append(session, kind="assignment.extended", subject=f"assignment:{assignment.id}",
                  actor_id=actor_id, payload={
                      **_subject(assignment), "reason": reason,
                      "due_date": {"old": old_due.isoformat(), "new": new_due_date.isoformat()},
                      "extensions": done,
                  })
    return assignment


def waive(session: Session, assignment: Assignment, *, reason: str, actor_id: int,
          now: datetime) -> Assignment:
    """Release a person from a live assignment; it stays on record as waived."""
    errors = _errors()
    reason = _check_reason(errors, reason)
    _not_live(errors, assignment, _l("Only an open or suspended assignment can be waived; "
                                     "this one is closed (%(status)s).",
                                     status=assignment.status))
    errors.raise_if_any()
    a = Assignment.__table__.c
    previous = assignment.status
    done = session.execute(
        update(Assignment.__table__)
        .where(a.id == assignment.id, a.status.in_(LIVE_STATUSES))
        .values(status="waived", waived_at=now, waived_by_id=actor_id, waive_reason=reason,
                updated_at=now)
        .returning(a.id)).scalar()
    if done is None:
        raise _changed_meanwhile()
    session.expire(assignment)
    ledger.append(session, kind="assignment.waived", subject=f"assignment:{assignment.id}",
                  actor_id=actor_id, payload={
                      **_subject(assignment), "reason": reason,
                      "status": {"old": previous, "new": "waived"},
                      "due_date": assignment.due_date.isoformat(),
                  })
    return assignment


# --- the HR list ----------------------------------------------------------------------


@dataclass(frozen=True)
class AssignmentFilters:
    course_id: int | None = None
    department_id: int | None = None  # with its sub-departments
    status: str | None = None
    overdue_only: bool = False
    due_before: date | None = None  # due on or before


def overdue_condition(today: date):
    """Overdue: still open after its due date (suspended ones are not counted)."""
    return (Assignment.status == "open") & (Assignment.due_date < today)


def assignments_query(filters: AssignmentFilters, *, today: date) -> Select:
    """SELECT Assignment (employee, department, course and version loaded) matching the
    filters, soonest due first."""
    stmt = (select(Assignment)
            .join(Assignment.employee).join(Employee.department)
            .join(Assignment.course).join(Assignment.version)
            .options(contains_eager(Assignment.employee).contains_eager(Employee.department),
                     contains_eager(Assignment.course), contains_eager(Assignment.version))
            .order_by(Assignment.due_date, Employee.employee_no, Course.code, Assignment.id))
    if filters.course_id is not None:
        stmt = stmt.where(Assignment.course_id == filters.course_id)
    if filters.department_id is not None:
        stmt = stmt.where(Employee.department_id.in_(
            department_subtree_query(filters.department_id)))
    if filters.status in ASSIGNMENT_STATUSES:
        stmt = stmt.where(Assignment.status == filters.status)
    if filters.overdue_only:
        stmt = stmt.where(overdue_condition(today))
    if filters.due_before is not None:
        stmt = stmt.where(Assignment.due_date <= filters.due_before)
    return stmt
