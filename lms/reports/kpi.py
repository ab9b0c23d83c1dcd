"""The risk-control training KPI that goes into performance appraisal: per employee and
period, and per manager for their team (everyone reporting to them at any depth).

Definitions (a period is a month or quarter of local Asia/Shanghai dates,
``lms.reports.periods``; its **as-of day** is its last day once it is over, else today,
and the **cutoff** is local midnight after the as-of day — so a closed period's KPI does
not change when people catch up later):

- **due**: the employee's assignments whose due date falls in the period and that were
  neither waived nor suspended at the cutoff (status waived/suspended with
  ``waived_at``/``suspended_at`` before it). The due date is the current one: an
  extension or a resumption moves it, and the assignment with it.
- **completed**: due assignments completed before the cutoff.
- **on time**: completed ones whose local completion date is on or before the due date.
- **overdue**: due assignments not completed at the cutoff whose due date is before
  the as-of day.
- **overdue days**: working days (Chinese calendar with the admin's overrides,
  ``load_calendar``) past the due date, summed over the due assignments: for those
  completed late, up to the local completion date; for those still open at the cutoff,
  up to the as-of day. None when the calendar does not know a year involved.
- **average exam score**: the mean over exams of the employee's best score in the
  period — attempts submitted from the period's start to the cutoff, on exam lessons of
  a course version the employee was assigned; None when no exam was sat.
- **signatures outstanding**: policy (signature) lessons of the due assignments' course
  versions that the employee had not signed at the cutoff, counted for due assignments
  not completed at the cutoff (a completed course had every signature), a signature
  counting when made after the assignment was given (a re-training round signs again).
- **completion rate** = completed / due, **on-time rate** = on time / due, percentages
  with one decimal (``periods.percent``); a dash when nothing was due.

A manager's team figures are the sums over everyone below them (not themself); the
team's average exam score is the mean over all the team's (employee, exam) bests.
The employee table lists every active employee in scope and anyone else with something
due in the period.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import Date, and_, case, exists, func, literal, or_, select, type_coerce
from sqlalchemy.orm import Session, aliased

from assessments.exams import ExamAttempt
from assessments.policies import Signature
from courses.models import Lesson
from lms.auth.permissions import report_ids_query
from lms.compliance.models import Assignment
from lms.people.labels import status_label
from lms.people.models import Department, Employee, Position, User
from lms.people.services import department_subtree_query
from lms.reports.periods import MemoCalendar, Period, as_of_day, local_midnight_utc, percent
from lms.reports.queries import local_done_date
from lms.workdays import UnknownYearError, WorkCalendar

__all__ = ["KpiFigures", "KpiRow", "KpiScope", "TeamRow", "employee_kpis", "kpi_header",
           "kpi_line", "team_header", "team_kpis", "team_line", "total"]


@dataclass(frozen=True)
class KpiScope:
    """Whose KPI: a department with its sub-departments, a manager's reports at any
    depth, one employee — any combination (all of them apply)."""

    department_id: int | None = None
    manager_id: int | None = None  # an employee id
    employee_id: int | None = None


@dataclass
class KpiFigures:
    """The counts a KPI line carries (sums, so a team adds its people up)."""

    due: int = 0
    completed: int = 0
    on_time: int = 0
    overdue: int = 0
    overdue_days: int | None = 0
    score_sum: int = 0
    exams: int = 0
    signatures_outstanding: int = 0

    @property
    def completion_rate(self) -> Decimal | None:
        return percent(self.completed, self.due)

    @property
    def on_time_rate(self) -> Decimal | None:
        return percent(self.on_time, self.due)

    @property
    def average_score(self) -> Decimal | None:
        if not self.exams:
            return None
        return (Decimal(self.score_sum) / self.exams).quantize(Decimal("0.1"))

    def add(self, other: KpiFigures) -> None:
        self.due += other.due
        self.completed += other.completed
        self.on_time += other.on_time
        self.overdue += other.overdue
        if self.overdue_days is None or other.overdue_days is None:
            self.overdue_days = None
        else:
            self.overdue_days += other.overdue_days
        self.score_sum += other.score_sum
        self.exams += other.exams
        self.signatures_outstanding += other.signatures_outstanding


@dataclass
class KpiRow:
    """One employee's KPI for the period."""

    employee_id: int
    employee_no: str
    name: str
    status: str
    department_id: int
    department: str
    position: str | None
    manager_id: int | None
    manager_no: str | None
    manager_name: str | None
    figures: KpiFigures = field(default_factory=KpiFigures)


@dataclass
class TeamRow:
    """A manager and the sums over everyone reporting to them (at any depth) in scope."""

    manager_id: int
    employee_no: str
    name: str
    department: str
    people: int = 0
    figures: KpiFigures = field(default_factory=KpiFigures)


def _scope_ids(scope: KpiScope) -> Any:
    """SELECT of the ids of employees in scope; None for everyone (no IN to test)."""
    conditions = []
    if scope.department_id is not None:
        conditions.append(Employee.department_id.in_(
            department_subtree_query(scope.department_id)))
    if scope.manager_id is not None:
        conditions.append(Employee.id.in_(report_ids_query(scope.manager_id)))
    if scope.employee_id is not None:
        conditions.append(Employee.id == scope.employee_id)
    return select(Employee.id).where(*conditions) if conditions else None


def _due_conditions(period: Period, cutoff: Any, scope_ids: Any) -> list[Any]:
    """Assignments due in the period, not waived or suspended at the cutoff."""
    return [*([] if scope_ids is None else [Assignment.employee_id.in_(scope_ids)]),
            Assignment.due_date >= period.start, Assignment.due_date <= period.end,
            # NULL timestamps (never expected) fall out as "waived/suspended before"
            or_(Assignment.status != "waived", Assignment.waived_at >= cutoff),
            or_(Assignment.status != "suspended", Assignment.suspended_at >= cutoff)]


def employee_kpis(session: Session, period: Period, *, today: date, calendar: WorkCalendar,
                  scope: KpiScope = KpiScope()) -> list[KpiRow]:
    """Every employee's KPI in scope, by department code and employee no.: four queries
    (due assignments grouped by employee, due day and the day lateness ends; exam
    bests; outstanding signatures; people), whatever the number of people."""
    as_of = as_of_day(period, today)
    cutoff = local_midnight_utc(as_of + timedelta(days=1))
    start = local_midnight_utc(period.start)
    scope_ids = _scope_ids(scope)
    due_where = _due_conditions(period, cutoff, scope_ids)
    done = and_(Assignment.status == "completed", Assignment.completed_at.is_not(None),
                Assignment.completed_at < cutoff)
    done_day = local_done_date(session)

    # One pass over the due assignments, grouped by (employee, due date, the day their
    # lateness ends, done?): counts and working days late come out of the same rows.
    detail = (select(Assignment.employee_id, Assignment.due_date,
                     type_coerce(case((done, done_day), else_=literal(as_of, Date())),
                                 Date()).label("end_day"),
                     case((done, 1), else_=0).label("done"))
              .where(*due_where)
              .subquery())  # group on columns: PostgreSQL would not match bound CASEs
    memo = MemoCalendar(calendar)
    counts: dict[int, list[int]] = {}
    overdue_days: dict[int, int | None] = {}
    for employee_id, due, end, is_done, n in session.execute(
            select(detail.c.employee_id, detail.c.due_date, detail.c.end_day, detail.c.done,
                   func.count())
            .group_by(detail.c.employee_id, detail.c.due_date, detail.c.end_day,
                      detail.c.done)).all():
        sums = counts.setdefault(employee_id, [0, 0, 0, 0])  # due, done, on time, overdue
        sums[0] += n
        if is_done:
            sums[1] += n
            sums[2] += n if end <= due else 0
        elif due < as_of:
            sums[3] += n
        so_far = overdue_days.get(employee_id, 0)
        if so_far is not None:
            try:
                overdue_days[employee_id] = so_far + n * memo.late_days(due, end)
            except UnknownYearError:
                overdue_days[employee_id] = None

    best = (select(ExamAttempt.user_id, ExamAttempt.exam_id,
                   func.max(ExamAttempt.score).label("best"))
            .join(Lesson, Lesson.id == ExamAttempt.lesson_id)
            .where(ExamAttempt.submitted_at >= start, ExamAttempt.submitted_at < cutoff,
                   ExamAttempt.score.is_not(None),
                   exists().where(Assignment.user_id == ExamAttempt.user_id,
                                  Assignment.version_id == Lesson.version_id,
                                  *([] if scope_ids is None
                                    else [Assignment.employee_id.in_(scope_ids)])))
            .group_by(ExamAttempt.user_id, ExamAttempt.exam_id).subquery())
    scores = {employee_id: (int(total), int(n)) for employee_id, total, n in session.execute(
        select(User.employee_id, func.sum(best.c.best), func.count())
        .join(User, User.id == best.c.user_id)
        .where(User.employee_id.is_not(None)).group_by(User.employee_id)).all()}

    signed = exists().where(Signature.user_id == Assignment.user_id,
                            Signature.policy_version_id == Lesson.policy_version_id,
                            Signature.signed_at >= Assignment.assigned_at,
                            Signature.signed_at < cutoff)
    unsigned = dict(session.execute(
        select(Assignment.employee_id, func.count())
        .join(Lesson, and_(Lesson.version_id == Assignment.version_id, Lesson.kind == "policy"))
        .where(*due_where, ~done, ~signed).group_by(Assignment.employee_id)).all())

    manager = aliased(Employee)
    people = session.execute(
        select(Employee.id, Employee.employee_no, Employee.name, Employee.status,
               Department.id, Department.name, Position.name, Employee.manager_id,
               manager.employee_no,
               manager.name)
        .join(Department, Department.id == Employee.department_id)
        .outerjoin(Position, Position.id == Employee.position_id)
        .outerjoin(manager, manager.id == Employee.manager_id)
        .where(*([] if scope_ids is None else [Employee.id.in_(scope_ids)]))
        .order_by(Department.code, Employee.employee_no)).all()
    rows = []
    for person in people:
        employee_id, status = person[0], person[3]
        if status != "active" and employee_id not in counts:
            continue
        due, completed, on_time, overdue = (int(v) for v in counts.get(employee_id,
                                                                       (0, 0, 0, 0)))
        score_sum, exams = scores.get(employee_id, (0, 0))
        figures = KpiFigures(due, completed, on_time, overdue,
                             overdue_days.get(employee_id, 0), score_sum, exams,
                             int(unsigned.get(employee_id, 0)))
        rows.append(KpiRow(*person, figures=figures))
    return rows


def team_kpis(session: Session, rows: Iterable[KpiRow], *, top_manager_id: int | None = None
              ) -> list[TeamRow]:
    """Per manager, the sums over the employee rows below them at any depth. With
    ``top_manager_id`` (a manager looking at their own team) the chain stops there, so
    their own managers are not listed. Managers come by department name, employee no."""
    rows = list(rows)
    chain = dict(session.execute(select(Employee.id, Employee.manager_id)
                                 .where(Employee.manager_id.is_not(None))).all())
    teams: dict[int, TeamRow] = {}
    for row in rows:
        boss, seen = row.manager_id, set()
        while boss is not None and boss not in seen:
            seen.add(boss)
            team = teams.get(boss)
            if team is None:
                team = teams[boss] = TeamRow(boss, "", "", "")
            team.people += 1
            team.figures.add(row.figures)
            if boss == top_manager_id:
                break
            boss = chain.get(boss)
    if not teams:
        return []
    names = {eid: (no, name, dept) for eid, no, name, dept in session.execute(
        select(Employee.id, Employee.employee_no, Employee.name, Department.name)
        .join(Department, Department.id == Employee.department_id)
        .where(Employee.id.in_(list(teams)))).all()}
    for manager_id, team in teams.items():
        team.employee_no, team.name, team.department = names.get(manager_id, ("", "", ""))
    return sorted(teams.values(), key=lambda t: (t.department, t.employee_no))


def total(rows: Iterable[KpiRow]) -> KpiFigures:
    """The sums over the rows (a department's or a team's total line)."""
    out = KpiFigures()
    for row in rows:
        out.add(row.figures)
    return out


# --- the KPI table (pages, downloads for the performance system, the report) ---------


def kpi_header() -> list[str]:
    return [_("Period"), _("Employee no."), _("Full name"), _("Department"), _("Position"),
            _("Employee status"), _("Manager's employee no."), _("Manager"), _("Due"),
            _("Completed"), _("On time"), _("Completion rate (%)"), _("On-time rate (%)"),
            _("Overdue"), _("Overdue (working days)"), _("Average exam score"),
            _("Exams taken"), _("Signatures outstanding")]


def kpi_line(period: Period, row: KpiRow) -> list[Any]:
    f = row.figures
    return [period.key, row.employee_no, row.name, row.department, row.position,
            status_label(row.status), row.manager_no, row.manager_name, f.due, f.completed,
            f.on_time, f.completion_rate, f.on_time_rate, f.overdue, f.overdue_days,
            f.average_score, f.exams, f.signatures_outstanding]


def team_header() -> list[str]:
    return [_("Period"), _("Manager's employee no."), _("Manager"), _("Department"),
            _("People"), _("Due"), _("Completed"), _("On time"), _("Completion rate (%)"),
            _("On-time rate (%)"), _("Overdue"), _("Overdue (working days)"),
            _("Average exam score"), _("Exams taken"), _("Signatures outstanding")]


def team_line(period: Period, row: TeamRow) -> list[Any]:
    f = row.figures
    return [period.key, row.employee_no, row.name, row.department, row.people, f.due,
            f.completed, f.on_time, f.completion_rate, f.on_time_rate, f.overdue,
            f.overdue_days, f.average_score, f.exams, f.signatures_outstanding]
