"""/api/v1/performance/kpi: the risk-control training KPI for performance appraisal, per
employee or per manager's team, for a month or quarter — the very figures of the
/reports/kpi page and its download (``lms.reports.kpi``; definitions there).

Paged by ``limit``/``offset`` over a stable order (department code and employee no.;
teams by department name and manager no., as on the page); ``total`` counts every row
and ``totals`` sums the figures over every employee in scope (a team view's rows
overlap — a manager's team includes their leads' teams — so they are not summed).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import Field
from sqlalchemy import select

from integrations.api import ApiError, ApiModel, endpoint
from integrations.tokens import ApiToken
from lms.compliance.engine import local_date
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.people.models import Department, Employee
from lms.reports import kpi as kpi_mod
from lms.reports.periods import Period, as_of_day, parse_period, period_of
from lms.workday_overrides import load_calendar

__all__ = ["clock", "performance_kpi"]


def _unknown(field: str, message: str) -> ApiError:
    """A code that names nothing here: 422 naming the query field."""
    return ApiError(422, message, field=field, details=[{"field": field, "message": message}])


PERIOD_PATTERN = r"^(20[0-9]{2}|2100)(-(0[1-9]|1[0-2])|-?[Qq][1-4])$"


def clock() -> datetime:
    """The time the KPI is computed at (UTC); tests replace it to stand on a given day."""
    return utcnow()


def _number(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


class KpiQuery(ApiModel):
    period: str | None = Field(None, max_length=16,
                               description="YYYY-MM (a month) or YYYY-Qn (a quarter); "
                                           "default: the current month",
                               # documented, checked by parse_period (its messages say
                               # what is wrong: "month 13 is out of range 1..12")
                               json_schema_extra={"pattern": PERIOD_PATTERN})
    department: str | None = Field(None, min_length=1, max_length=32,
                                   pattern=r"^[^\x00-\x1f\x7f]*$",
                                   description="Department code; its sub-departments are "
                                               "included")
    view: Literal["employee", "team"] = Field("employee", description="Per employee, or "
                                              "per manager (everyone below them)")
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0)


class PeriodOut(ApiModel):
    key: str
    kind: str
    start: date
    end: date
    as_of: date = Field(description="The last day the figures look at: the period's last "
                                    "day once it is over, else today")
    closed: bool = Field(description="The period is over: its figures no longer change")


class DepartmentRef(ApiModel):
    code: str
    name: str


class PersonRef(ApiModel):
    employee_no: str
    name: str


class KpiFiguresOut(ApiModel):
    due: int
    completed: int
    on_time: int
    overdue: int
    overdue_working_days: int | None
    completion_rate: float | None = Field(description="completed / due, percent")
    on_time_rate: float | None = Field(description="on time / due, percent")
    average_exam_score: float | None
    exams_taken: int
    signatures_outstanding: int


class EmployeeKpiOut(KpiFiguresOut):
    employee_no: str
    name: str
    status: str
    department: DepartmentRef
    position: str | None
    manager: PersonRef | None


class TeamKpiOut(KpiFiguresOut):
    manager: PersonRef
    department: DepartmentRef
    people: int = Field(description="People reporting to the manager at any depth")


class KpiOut(ApiModel):
    period: PeriodOut
    view: str
    department: DepartmentRef | None
    total: int = Field(description="Rows in all (employees or managers)")
    limit: int
    offset: int
    totals: KpiFiguresOut = Field(description="Sums over every employee in scope")
    rows: list[EmployeeKpiOut | TeamKpiOut]


def _figures(f: kpi_mod.KpiFigures) -> dict[str, object]:
    return {"due": f.due, "completed": f.completed, "on_time": f.on_time,
            "overdue": f.overdue, "overdue_working_days": f.overdue_days,
            "completion_rate": _number(f.completion_rate),
            "on_time_rate": _number(f.on_time_rate),
            "average_exam_score": _number(f.average_score), "exams_taken": f.exams,
            "signatures_outstanding": f.signatures_outstanding}


def _period(raw: str | None, today: date) -> Period:
    if raw is None or not raw.strip():
        return period_of(today, "month")
    try:
        return parse_period(raw)
    except ValueError as exc:
        raise ApiError(400, str(exc), code="validation_failed", field="period",
                       details=[{"field": "period", "message": str(exc)}]) from None


def _department_codes(ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(db.session.execute(select(Department.id, Department.code)
                                   .where(Department.id.in_(ids))).all())


def _employee_rows(rows: list[kpi_mod.KpiRow]) -> list[EmployeeKpiOut]:
    codes = _department_codes({r.department_id for r in rows})
    return [EmployeeKpiOut(
        employee_no=r.employee_no, name=r.name, status=r.status,
        department=DepartmentRef(code=codes.get(r.department_id, ""), name=r.department),
        position=r.position,
        manager=PersonRef(employee_no=r.manager_no, name=r.manager_name or "")
        if r.manager_no else None, **_figures(r.figures)) for r in rows]


def _team_rows(teams: list[kpi_mod.TeamRow]) -> list[TeamKpiOut]:
    codes = dict(db.session.execute(
        select(Employee.id, Department.code).join(Department,
                                                  Department.id == Employee.department_id)
        .where(Employee.id.in_([t.manager_id for t in teams]))).all()) if teams else {}
    return [TeamKpiOut(
        manager=PersonRef(employee_no=t.employee_no, name=t.name),
        department=DepartmentRef(code=codes.get(t.manager_id, ""), name=t.department),
        people=t.people, **_figures(t.figures)) for t in teams]


@endpoint("/performance/kpi", summary="The risk-control training KPI per employee or per "
          "manager's team for a month or quarter", tag="performance",
          scope="performance:read", query=KpiQuery, response=KpiOut, errors=(422,))
def performance_kpi(query: KpiQuery, token: ApiToken) -> KpiOut:
    """The figures of Reports → KPI and its download, per employee (``view=employee``:
    every 在职 employee in scope and anyone else with something due in the period) or
    per manager (``view=team``: sums over everyone reporting to them at any depth).
    A bad ``period`` answers 400 naming it; an unknown department 422."""
    today = local_date(clock())
    period = _period(query.period, today)
    department = None
    if query.department is not None:
        department = db.session.scalar(select(Department)
                                       .where(Department.code == query.department))
        if department is None:
            raise _unknown("department", f"Unknown department {query.department}.")
    scope = kpi_mod.KpiScope(department_id=department.id if department else None)
    rows = kpi_mod.employee_kpis(db.session, period, today=today,
                                 calendar=load_calendar(db.session), scope=scope)
    page: list[EmployeeKpiOut | TeamKpiOut]
    if query.view == "team":
        teams = kpi_mod.team_kpis(db.session, rows)
        total = len(teams)
        page = list(_team_rows(teams[query.offset:query.offset + query.limit]))
    else:
        total = len(rows)
        page = list(_employee_rows(rows[query.offset:query.offset + query.limit]))
    as_of = as_of_day(period, today)
    return KpiOut(
        period=PeriodOut(key=period.key, kind=period.kind, start=period.start, end=period.end,
                         as_of=as_of, closed=today > period.end),
        view=query.view,
        department=DepartmentRef(code=department.code, name=department.name)
        if department else None,
        total=total, limit=query.limit, offset=query.offset,
        totals=KpiFiguresOut(**_figures(kpi_mod.total(rows))), rows=page)
