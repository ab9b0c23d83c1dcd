"""Receiving a risk signal: it becomes targeted assignments of the courses its risk type
is mapped to, for the 在职 people with a login in its scope.

Set-based through the assignment engine (``insert_assignments`` + ``enrol_assigned``):
one INSERT ... SELECT per mapped course whatever the size of the scope. The engine's
unique keys deduplicate: a person with a live (open or suspended) assignment of the
course gets nothing new and is counted as ``already_assigned``. A person who completed
the course before gets a fresh round (source ``risk`` is re-training, like a
recertification): the signal says the training did not hold.

Decisions an integrator sees:

- a risk type with no course mapped (or none with a published version) is **accepted**:
  the signal is recorded (it is evidence that the risk was reported) and nothing is
  assigned; the response says so (``unmapped``/``skipped``);
- ``external_id`` is an idempotency key across all senders: the same key again returns
  the first signal and does nothing more, whatever the rest of the body says;
- due dates are N Chinese working days (``due_working_days`` of each mapping) after the
  local (Asia/Shanghai) date the signal was received.

Nothing here commits; the API view owns the transaction.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import Select, func, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from courses.models import Course, CourseVersion
from integrations.risk.models import SCOPE_KINDS, SEVERITIES, RiskSignal, RiskType, RiskTypeCourse
from lms import ledger
from lms.compliance.engine import (
    departments_with_subtrees,
    enrol_assigned,
    insert_assignments,
    latest_published_version,
    local_date,
)
from lms.compliance.manual import overdue_condition
from lms.compliance.models import Assignment
from lms.field_errors import ErrorCollector, FieldErrors
from lms.people.models import Department, Employee, Position, User
from lms.reports.queries import count_if
from lms.workdays import UnknownYearError, WorkCalendar

__all__ = ["MAX_NOTE", "CourseResult", "Progress", "RiskSignalError", "SignalInput",
           "SignalOutcome", "course_results", "progress", "receive_signal", "scope_label"]

MAX_NOTE = 2000
MAX_FUTURE = timedelta(minutes=5)  # clock skew tolerated for occurred_at
LEDGER_KIND = "risk.signal_received"
MAX_LEDGER_NOS = 1000


class RiskSignalError(FieldErrors):
    """A signal refused; messages keyed by the body's field path (``scope.code``)."""


@dataclass(frozen=True)
class SignalInput:
    risk_type: str
    severity: str
    scope_kind: str
    scope_code: str  # department or position code, or the employee number
    note: str = ""
    external_id: str | None = None
    occurred_at: datetime | None = None

    @property
    def scope_field(self) -> str:
        return "scope.employee_no" if self.scope_kind == "employee" else "scope.code"


@dataclass
class CourseResult:
    """What the signal did for one mapped course (stored as JSON with the signal)."""

    course_id: int
    course_code: str
    title: str
    due_working_days: int
    version_id: int | None = None
    version_number: int | None = None
    due_date: str | None = None  # ISO local date
    assigned: int = 0
    already_assigned: int = 0
    skipped: str | None = None  # "no_published_version"


@dataclass
class SignalOutcome:
    signal: RiskSignal
    created: bool  # False: an earlier signal with the same external_id, returned as is


def _find_external(session: Session, external_id: str | None) -> RiskSignal | None:
    if not external_id:
        return None
    return session.scalar(select(RiskSignal).where(RiskSignal.external_id == external_id))


def _resolve(session: Session, data: SignalInput, now: datetime
             ) -> tuple[RiskType, dict[str, int]]:
    """The risk type and the scope's foreign key, or every problem at once."""
    errors = ErrorCollector(RiskSignalError)
    risk_type = session.scalar(select(RiskType).where(RiskType.code == data.risk_type))
    if risk_type is None:
        errors.add("risk_type", _l("Unknown risk type %(code)s.", code=data.risk_type))
    if data.severity not in SEVERITIES:
        errors.add("severity", _l("Severity must be one of %(values)s.",
                                  values=", ".join(SEVERITIES)))
    scope: dict[str, int] = {}
    if data.scope_kind not in SCOPE_KINDS:
        errors.add("scope.kind", _l("Scope kind must be one of %(values)s.",
                                    values=", ".join(SCOPE_KINDS)))
    else:
        model, column, key, unknown = {
            "department": (Department, Department.code, "department_id",
                           _l("Unknown department %(code)s.", code=data.scope_code)),
            "position": (Position, Position.code, "position_id",
                         _l("Unknown position %(code)s.", code=data.scope_code)),
            "employee": (Employee, Employee.employee_no, "employee_id",
                         _l("Unknown employee number %(code)s.", code=data.scope_code)),
        }[data.scope_kind]
        found = session.scalar(select(model.id).where(column == data.scope_code))
        if found is None:
            errors.add(data.scope_field, unknown)
        else:
            scope[key] = found
    if len(data.note) > MAX_NOTE:
        errors.add("note", _l("Keep the note to %(n)d characters or fewer.", n=MAX_NOTE))
    if data.occurred_at is not None and data.occurred_at > now + MAX_FUTURE:
        errors.add("occurred_at", _l("occurred_at lies in the future."))
    errors.raise_if_any()
    assert risk_type is not None
    return risk_type, scope


def audience(session: Session, signal: RiskSignal) -> Select:
    """SELECT (employee id, user id) of the people the signal reaches: 在职 employees with
    an enabled login in its department (with every sub-department), position, or the
    one employee."""
    stmt = (select(Employee.id.label("employee_id"), User.id.label("user_id"))
            .join(User, User.employee_id == Employee.id)
            .where(User.is_enabled.is_(True), Employee.status == "active"))
    if signal.scope_kind == "department":
        assert signal.department_id is not None
        return stmt.where(Employee.department_id.in_(
            departments_with_subtrees([signal.department_id])))
    if signal.scope_kind == "position":
        return stmt.where(Employee.position_id == signal.position_id)
    return stmt.where(Employee.id == signal.employee_id)


def _plan(session: Session, risk_type: RiskType, today: date, calendar: WorkCalendar
          ) -> list[tuple[CourseResult, CourseVersion | None]]:
    """Each mapped course (by code) with its newest published version and due date;
    a year the calendar does not know is refused before anything is written."""
    rows = session.execute(
        select(RiskTypeCourse.due_working_days, Course)
        .join(Course, Course.id == RiskTypeCourse.course_id)
        .where(RiskTypeCourse.risk_type_id == risk_type.id)
        .order_by(Course.code)).all()
    plan = []
    for days, course in rows:
        result = CourseResult(course_id=course.id, course_code=course.code,
                              title=course.title_zh, due_working_days=days)
        version = latest_published_version(session, course.id)
        if version is None:
            result.skipped = "no_published_version"
        else:
            result.version_id, result.version_number = version.id, version.number
            try:
                result.due_date = calendar.add_workdays(today, days).isoformat()
            except UnknownYearError as exc:
                raise RiskSignalError.one(_l(
                    "The holiday calendar for %(year)d is not known yet, so no due date can "
                    "be counted; ask an administrator to enter it in the work calendar.",
                    year=exc.year)) from None
        plan.append((result, version))
    return plan


def _assign(session: Session, signal: RiskSignal, people: Any, result: CourseResult,
            *, trigger: date, now: datetime) -> list[tuple[int, int]]:
    """One course to everyone in ``people`` (the engine's insert): the next cycle of the
    course for each person; the live-assignment index skips those who have one."""
    prev = Assignment.__table__.alias("prev")
    last_cycle = (select(func.max(prev.c.cycle))
                  .where(prev.c.user_id == people.c.user_id,
                         prev.c.course_id == result.course_id)
                  .scalar_subquery())
    assert result.version_id is not None and result.due_date is not None
    return insert_assignments(
        session, people, course_id=result.course_id, version_id=result.version_id,
        rule_id=None, source="risk", cycle=func.coalesce(last_cycle, 0) + 1,
        trigger=literal(trigger), due=date.fromisoformat(result.due_date), now=now,
        reason=f"risk signal #{signal.id}: {signal.risk_type.code} ({signal.severity})",
        extra={"risk_signal_id": signal.id})


def _insert_signal(session: Session, signal: RiskSignal) -> RiskSignal | None:
    """Insert under a savepoint; None when a concurrent request won the external_id."""
    try:
        with session.begin_nested():
            session.add(signal)
            session.flush()
    except IntegrityError:
        return None
    return signal


def receive_signal(session: Session, data: SignalInput, *, calendar: WorkCalendar,
                   now: datetime, token_id: int | None = None) -> SignalOutcome:
    """Record the signal and assign its risk type's courses to its scope (see the module
    docstring); one ``risk.signal_received`` ledger entry with the counts."""
    earlier = _find_external(session, data.external_id)
    if earlier is not None:
        return SignalOutcome(earlier, created=False)
    risk_type, scope = _resolve(session, data, now)
    today = local_date(now)
    plan = _plan(session, risk_type, today, calendar)
    signal = _insert_signal(session, RiskSignal(
        risk_type=risk_type, severity=data.severity, scope_kind=data.scope_kind,
        scope_code=data.scope_code, note=data.note.strip(), external_id=data.external_id,
        occurred_at=data.occurred_at, received_at=now, token_id=token_id, **scope))
    if signal is None:
        earlier = _find_external(session, data.external_id)
        assert earlier is not None
        return SignalOutcome(earlier, created=False)

    people = audience(session, signal).subquery()
    signal.audience = session.scalar(select(func.count()).select_from(people)) or 0
    inserted: list[tuple[int, int]] = []
    for result, _version in plan:
        if result.skipped or not signal.audience:
            continue
        rows = _assign(session, signal, people, result, trigger=today, now=now)
        result.assigned = len(rows)
        result.already_assigned = signal.audience - len(rows)
        inserted.extend(rows)
    if inserted:
        enrol_assigned(session, Assignment.__table__.c.risk_signal_id == signal.id, now=now)
    results = [result for result, _version in plan]
    signal.assigned = sum(r.assigned for r in results)
    signal.already_assigned = sum(r.already_assigned for r in results)
    signal.results = json.dumps([asdict(r) for r in results], ensure_ascii=False)
    signal.ledger_seq = _record(session, signal, results, inserted).seq
    return SignalOutcome(signal, created=True)


def _record(session: Session, signal: RiskSignal, results: list[CourseResult],
            inserted: list[tuple[int, int]]):
    ids = ",".join(str(u) for u in sorted(u for u, _e in inserted))
    employee_ids = sorted({e for _u, e in inserted})[:MAX_LEDGER_NOS]
    numbers = sorted(session.scalars(select(Employee.employee_no)
                                     .where(Employee.id.in_(employee_ids))).all()
                     ) if employee_ids else []
    return ledger.append(session, kind=LEDGER_KIND, subject=f"risk_signal:{signal.id}",
                         actor_id=None, payload={
                             "risk_type": signal.risk_type.code, "severity": signal.severity,
                             "scope": {"kind": signal.scope_kind, "code": signal.scope_code},
                             "external_id": signal.external_id,
                             "occurred_at": signal.occurred_at.isoformat()
                             if signal.occurred_at else None,
                             "token_id": signal.token_id, "audience": signal.audience,
                             "assigned": signal.assigned,
                             "already_assigned": signal.already_assigned,
                             "courses": [{"code": r.course_code, "version_id": r.version_id,
                                          "due_date": r.due_date, "assigned": r.assigned,
                                          "already_assigned": r.already_assigned,
                                          "skipped": r.skipped} for r in results],
                             "user_ids_sha256": hashlib.sha256(ids.encode()).hexdigest(),
                             "employee_nos": numbers,
                         })


# --- the read side ---------------------------------------------------------------------


def course_results(signal: RiskSignal) -> list[CourseResult]:
    return [CourseResult(**row) for row in json.loads(signal.results or "[]")]


@dataclass
class Progress:
    """Where the signal's own assignments stand now (overdue: open past the due date)."""

    assigned: int = 0
    completed: int = 0
    open: int = 0
    overdue: int = 0
    suspended: int = 0
    waived: int = 0

    def add(self, other: Progress) -> None:
        for name in ("assigned", "completed", "open", "overdue", "suspended", "waived"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def progress(session: Session, signal_ids: list[int], today: date
             ) -> dict[int, dict[int, Progress]]:
    """signal id -> course id -> progress, in one GROUP BY over the signals' assignments."""
    if not signal_ids:
        return {}
    status = Assignment.status
    out: dict[int, dict[int, Progress]] = {}
    for signal_id, course_id, *counts in session.execute(
            select(Assignment.risk_signal_id, Assignment.course_id, func.count(),
                   count_if(status == "completed"), count_if(status == "open"),
                   count_if(overdue_condition(today)),
                   count_if(status == "suspended"), count_if(status == "waived"))
            .where(Assignment.risk_signal_id.in_(signal_ids))
            .group_by(Assignment.risk_signal_id, Assignment.course_id)).all():
        out.setdefault(signal_id, {})[course_id] = Progress(*(int(n) for n in counts))
    return out


def scope_label(session: Session, signal: RiskSignal) -> str:
    """The scope's current name ("上海徐家汇店", "店员", "王芳")."""
    if signal.scope_kind == "department":
        return session.scalar(select(Department.name)
                              .where(Department.id == signal.department_id)) or ""
    if signal.scope_kind == "position":
        return session.scalar(select(Position.name)
                              .where(Position.id == signal.position_id)) or ""
    return session.scalar(select(Employee.name).where(Employee.id == signal.employee_id)) or ""
