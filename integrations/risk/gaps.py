"""Training gaps for the risk module: per department and risk topic, how many 在职 people
are assigned, how many assignments are completed, open and overdue; and who is still
untrained (open), with their working days overdue.

The risk topic is the course's ``risk_topic``; each row also names the risk types
mapped to the courses it counts. Only each person's **current** assignment of a course
counts (the latest round: an earlier completed round does not hide an open re-training)
and only open or completed ones (suspended people are away, waived ones were excused),
as on HR's dashboard (``lms.reports.queries``). A department row counts the people
whose own department it is; ``department=`` narrows to a department with its
sub-departments. Everything is aggregated in SQL (GROUP BY); only the listed people
come back row by row, a page at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, exists, func, select
from sqlalchemy.orm import Session, aliased

from courses.models import Course
from integrations.risk.models import RiskType, RiskTypeCourse
from lms.compliance.manual import overdue_condition
from lms.compliance.models import Assignment
from lms.people.models import Department, Employee
from lms.people.services import department_subtree_query
from lms.reports.periods import MemoCalendar, percent
from lms.reports.queries import count_if
from lms.workdays import UnknownYearError, WorkCalendar

__all__ = ["GapFilters", "GapPerson", "GapRow", "gap_people", "gap_rows"]

COUNTED_STATUSES = ("open", "completed")


@dataclass(frozen=True)
class GapFilters:
    department_id: int | None = None  # with its sub-departments
    topic: str | None = None  # a course risk topic
    risk_type_id: int | None = None  # courses mapped to this risk type
    overdue_only: bool = False  # the people list: overdue ones only


@dataclass
class GapRow:
    department_code: str
    department_name: str
    topic: str
    people: int = 0  # distinct people with a counted assignment
    people_open: int = 0  # ... with at least one open (untrained)
    people_overdue: int = 0  # ... with at least one overdue
    assigned: int = 0  # counted assignments (person x course)
    completed: int = 0
    open: int = 0
    overdue: int = 0
    risk_types: list[str] = field(default_factory=list)

    @property
    def completion_rate(self) -> Decimal | None:
        return percent(self.completed, self.assigned)


@dataclass
class GapPerson:
    employee_no: str
    name: str
    department_code: str
    topic: str
    course_code: str
    course_title: str
    due_date: date
    overdue: bool
    days_overdue: int | None  # working days past the due date; None: unknown year


def _conditions(filters: GapFilters) -> list[Any]:
    later = aliased(Assignment)
    out = [Assignment.status.in_(COUNTED_STATUSES), Employee.status == "active",
           ~exists().where(later.user_id == Assignment.user_id,
                           later.course_id == Assignment.course_id,
                           later.cycle > Assignment.cycle)]
    if filters.department_id is not None:
        out.append(Employee.department_id.in_(department_subtree_query(filters.department_id)))
    if filters.topic is not None:
        out.append(Course.risk_topic == filters.topic)
    if filters.risk_type_id is not None:
        out.append(Assignment.course_id.in_(select(RiskTypeCourse.course_id).where(
            RiskTypeCourse.risk_type_id == filters.risk_type_id)))
    return out


def _base(*columns: Any):
    return (select(*columns).select_from(Assignment)
            .join(Employee, Employee.id == Assignment.employee_id)
            .join(Department, Department.id == Employee.department_id)
            .join(Course, Course.id == Assignment.course_id))


def gap_rows(session: Session, filters: GapFilters, *, today: date) -> list[GapRow]:
    """One row per (department, topic) with any counted assignment, by department code
    and topic: one GROUP BY for the counts, one DISTINCT for the risk types."""
    is_open = Assignment.status == "open"
    late = overdue_condition(today)
    where = _conditions(filters)
    rows: dict[tuple[int, str], GapRow] = {}
    for dept_id, code, name, topic, *counts in session.execute(
            _base(Department.id, Department.code, Department.name, Course.risk_topic,
                  func.count(func.distinct(Assignment.employee_id)),
                  func.count(func.distinct(case((is_open, Assignment.employee_id)))),
                  func.count(func.distinct(case((late, Assignment.employee_id)))),
                  func.count(), count_if(Assignment.status == "completed"), count_if(is_open),
                  count_if(late))
            .where(*where)
            .group_by(Department.id, Department.code, Department.name, Course.risk_topic)
            .order_by(Department.code, Course.risk_topic)).all():
        rows[(dept_id, topic)] = GapRow(code, name, topic, *(int(n) for n in counts))
    if rows:
        for dept_id, topic, risk_code in session.execute(
                _base(Department.id, Course.risk_topic, RiskType.code)
                .join(RiskTypeCourse, RiskTypeCourse.course_id == Assignment.course_id)
                .join(RiskType, RiskType.id == RiskTypeCourse.risk_type_id)
                .where(*where).distinct()).all():
            rows[(dept_id, topic)].risk_types.append(risk_code)
    out = list(rows.values())
    for row in out:
        row.risk_types.sort()
    return out


def gap_people(session: Session, filters: GapFilters, *, today: date, calendar: WorkCalendar,
               limit: int, offset: int) -> tuple[list[GapPerson], int]:
    """The untrained: (a page of) open current assignments in scope, soonest due first,
    and how many there are in all."""
    where = [*_conditions(filters), Assignment.status == "open"]
    if filters.overdue_only:
        where.append(overdue_condition(today))
    total = session.scalar(_base(func.count()).where(*where)) or 0
    memo = MemoCalendar(calendar)
    people = []
    for no, name, dept, topic, course, title, due in session.execute(
            _base(Employee.employee_no, Employee.name, Department.code, Course.risk_topic,
                  Course.code, Course.title_zh, Assignment.due_date)
            .where(and_(*where))
            .order_by(Assignment.due_date, Employee.employee_no, Course.code)
            .limit(limit).offset(offset)).all():
        try:
            days: int | None = memo.late_days(due, today)
        except UnknownYearError:
            days = None
        people.append(GapPerson(no, name, dept, topic, course, title, due, due < today, days))
    return people, int(total)
