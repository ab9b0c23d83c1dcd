"""A manager's view of their team's mandatory training (read side, nothing is written).

Everything is scoped to the manager's reports at any depth (``report_ids_query``, a
recursive CTE) in SQL, and every filter is applied inside that scope, so an id from
another manager's tree in a filter finds nothing. The headline counts are one GROUP BY
over the same scope; the table is paginated with LIMIT/OFFSET and only the rows of one
page get their overdue working days counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, and_, case, cast, func, literal, select
from sqlalchemy.orm import Session

from courses.models import Course, CourseVersion
from lms.auth.permissions import report_ids_query
from lms.compliance.learner import due_info
from lms.compliance.models import Assignment
from lms.paging import Page as BasePage
from lms.people.models import Department, Employee
from lms.workday_overrides import load_calendar

__all__ = ["TEAM_STATUSES", "Page", "TeamFilters", "TeamRow", "TeamSummary",
           "completed_local_date", "course_choices", "department_choices", "team_page",
           "team_summary"]

# Status filter values: the stored statuses plus "overdue" (open and past its due date).
TEAM_STATUSES = ("open", "overdue", "completed", "suspended", "waived")
PER_PAGE = 50


@dataclass(frozen=True)
class TeamFilters:
    direct_only: bool = False
    department_id: int | None = None
    course_id: int | None = None
    status: str | None = None
    employee_id: int | None = None


@dataclass(frozen=True)
class TeamRow:
    """One line of the table: a report and one of their assignments (or none)."""

    employee_id: int
    employee_no: str
    name: str
    employee_status: str
    department: str
    direct: bool
    assignment_id: int | None
    course_code: str | None
    title_zh: str | None
    title_en: str | None
    version_number: int | None
    cycle: int | None
    status: str | None
    due_date: date | None
    completed_at: datetime | None
    state: str  # none, waived, or a learner state (due, overdue, suspended, completed-*)
    overdue_working_days: int | None


@dataclass
class Page(BasePage):
    """A page of the team table."""

    items: list[TeamRow]


@dataclass(frozen=True)
class TeamSummary:
    assigned: int = 0
    completed: int = 0
    on_time: int = 0
    overdue: int = 0
    suspended: int = 0
    waived: int = 0


def _people_conditions(manager_id: int, f: TeamFilters) -> list[Any]:
    conditions: list[Any] = [Employee.id.in_(report_ids_query(manager_id))]
    if f.direct_only:
        conditions.append(Employee.manager_id == manager_id)
    if f.department_id is not None:
        conditions.append(Employee.department_id == f.department_id)
    if f.employee_id is not None:
        conditions.append(Employee.id == f.employee_id)
    return conditions


def _status_condition(status: str, today: date) -> Any:
    if status == "overdue":
        return and_(Assignment.status == "open", Assignment.due_date < today)
    return Assignment.status == status


def completed_local_date(session: Session) -> Any:
    """The Asia/Shanghai date of ``completed_at`` in SQL (China keeps UTC+8 all year);
    also what ``lms.reports`` counts "on time" with."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone("Asia/Shanghai", Assignment.completed_at), Date)
    return func.date(Assignment.completed_at, "+8 hours")


def team_summary(session: Session, manager_id: int, filters: TeamFilters, today: date
                 ) -> TeamSummary:
    """Counts over the team's assignments in scope (people and course filters; the status
    filter is ignored so the headline stays whole): one GROUP BY query.
    Overdue = open and past due; on time = completed on or before the due date (local)."""
    bucket = case(
        (and_(Assignment.status == "open", Assignment.due_date < today), literal("overdue")),
        (and_(Assignment.status == "completed",
              completed_local_date(session) <= Assignment.due_date), literal("on_time")),
        else_=Assignment.status,
    ).label("bucket")
    scoped = (select(bucket).join(Employee, Employee.id == Assignment.employee_id)
              .where(*_people_conditions(manager_id, filters)))
    if filters.course_id is not None:
        scoped = scoped.where(Assignment.course_id == filters.course_id)
    sub = scoped.subquery()  # group on a column: PostgreSQL would not match bound CASEs
    counts = dict(session.execute(
        select(sub.c.bucket, func.count()).group_by(sub.c.bucket)).all())
    on_time = counts.get("on_time", 0)
    return TeamSummary(assigned=sum(counts.values()), completed=on_time + counts.get(
        "completed", 0), on_time=on_time, overdue=counts.get("overdue", 0),
        suspended=counts.get("suspended", 0), waived=counts.get("waived", 0))


def team_page(session: Session, manager_id: int, filters: TeamFilters, today: date, *,
              page: int = 1, per_page: int = PER_PAGE) -> Page:
    """Reports with their assignments (people without any show once, unless a course or
    status filter asks for assignments), by employee no., course and cycle."""
    assignment_on = Assignment.employee_id == Employee.id
    needs_assignment = filters.course_id is not None or filters.status is not None
    if filters.course_id is not None:
        assignment_on = and_(assignment_on, Assignment.course_id == filters.course_id)
    if filters.status is not None:
        assignment_on = and_(assignment_on, _status_condition(filters.status, today))
    stmt = (select(Employee.id, Employee.employee_no, Employee.name, Employee.status,
                   Department.name, Employee.manager_id == manager_id, Assignment.id,
                   Course.code, Course.title_zh, Course.title_en, CourseVersion.number,
                   Assignment.cycle, Assignment.status, Assignment.due_date,
                   Assignment.completed_at)
            .join(Department, Department.id == Employee.department_id)
            .outerjoin(Assignment, assignment_on)
            .outerjoin(Course, Course.id == Assignment.course_id)
            .outerjoin(CourseVersion, CourseVersion.id == Assignment.version_id)
            .where(*_people_conditions(manager_id, filters)))
    if needs_assignment:
        stmt = stmt.where(Assignment.id.is_not(None))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    page = max(1, min(page, max(1, math.ceil(total / per_page))))
    rows = session.execute(stmt.order_by(Employee.employee_no, Course.code, Assignment.cycle)
                           .limit(per_page).offset((page - 1) * per_page)).all()
    calendar = load_calendar(session) if rows else None
    items = []
    for row in rows:
        (emp_id, no, name, emp_status, dept, direct, a_id, code, zh, en, number, cycle,
         status, due, completed_at) = row
        state, overdue_days = "none", None
        if a_id is not None and status == "waived":
            state = "waived"
        elif a_id is not None:
            info = due_info(due=due, status=status, completed_at=completed_at, today=today,
                            calendar=calendar)
            state = info.state
            overdue_days = info.working_days if info.state == "overdue" else None
        items.append(TeamRow(emp_id, no, name, emp_status, dept, bool(direct), a_id, code, zh,
                             en, number, cycle, status, due, completed_at, state, overdue_days))
    return Page(items, page, per_page, total)


def department_choices(session: Session, manager_id: int) -> list[tuple[int, str]]:
    """Departments where the manager's reports are (nobody else's departments)."""
    rows = session.execute(
        select(Department.id, Department.name).where(Department.id.in_(
            select(Employee.department_id).where(Employee.id.in_(report_ids_query(manager_id)))))
        .order_by(Department.code)).all()
    return [(dept_id, name) for dept_id, name in rows]


def course_choices(session: Session, manager_id: int) -> list[tuple[int, str, str]]:
    """Courses assigned to anyone in the team: (id, code, Chinese title)."""
    rows = session.execute(
        select(Course.id, Course.code, Course.title_zh).where(Course.id.in_(
            select(Assignment.course_id).where(
                Assignment.employee_id.in_(report_ids_query(manager_id)))))
        .order_by(Course.code)).all()
    return [(course_id, code, title) for course_id, code, title in rows]
