"""Report pages: HR's training dashboard with drill-down, the completion report with
filters and streamed CSV/XLSX downloads, the risk-control training KPI (per employee
and per manager's team; a manager sees their own team only) with its download for the
performance system, and the department × period performance report (XLSX, PDF).

Views parse and check (role, then the objects: a department, employee or period the
user may not see answers 404), call ``queries``/``kpi``/``performance_report`` and
render. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from flask import Blueprint, Response, abort, current_app, render_template, request
from flask_babel import format_date
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from courses.enrolment import department_choices
from courses.models import Course
from lms.auth.permissions import is_in_team, roles_required
from lms.compliance import team
from lms.compliance.engine import local_date
from lms.compliance.learner import due_info
from lms.compliance.regulation import dashboard as reg_dashboard
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.paging import Page
from lms.people.labels import status_label
from lms.people.models import EMPLOYEE_STATUSES, Department, Employee, Position
from lms.reports import kpi as kpi_mod
from lms.reports import performance_report, queries
from lms.reports.export import Sheet, csv_response, xlsx_response
from lms.reports.forms import CompletionFilterForm, KpiForm, PerformanceForm
from lms.reports.periods import MemoCalendar, Period, as_of_day, period_of, recent_periods
from lms.workday_overrides import load_calendar
from lms.workdays import UnknownYearError

bp = Blueprint("reports", __name__)

REPORT_ROLES = ("hr", "admin", "auditor")
KPI_ROLES = (*REPORT_ROLES, "manager")
PER_PAGE = 50
KPI_PER_PAGE = 100

STATE_LABELS = {
    "overdue": _l("Overdue"),
    "due": _l("Outstanding"),
    "suspended": _l("Suspended"),
    "waived": _l("Waived"),
    "completed-late": _l("Completed late"),
    "completed-on-time": _l("Completed on time"),
}


def today() -> date:
    """The reports' calendar date (Asia/Shanghai); tests monkeypatch it."""
    return local_date(utcnow())


def _sees_everyone() -> bool:
    return current_user.has_role(*REPORT_ROLES)


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {"state_label": lambda code: str(STATE_LABELS.get(code, code)),
            "pct": lambda value: "—" if value is None else f"{value} %",
            "month_label": lambda day: format_date(day, "MMM")}


def _course_choices() -> list[tuple[int, str]]:
    rows = db.session.execute(select(Course.id, Course.code, Course.title_zh)
                              .order_by(Course.code)).all()
    return [(cid, f"{code} · {title}") for cid, code, title in rows]


def _position_choices() -> list[tuple[int, str]]:
    rows = db.session.execute(select(Position.id, Position.name, Position.code)
                              .order_by(Position.code)).all()
    return [(pid, f"{name} ({code})") for pid, name, code in rows]


# --- dashboard ------------------------------------------------------------------------


def _department_arg() -> Department | None:
    """``?department=`` of the dashboard: absent means the whole company; anything that
    is not an existing department is a 404 (a stale or forged link)."""
    raw = request.args.get("department")
    if raw in (None, ""):
        return None
    if not raw.isdigit():
        abort(404)
    return db.session.get(Department, int(raw)) or abort(404)


def _ancestors(department: Department | None) -> list[Department]:
    chain: list[Department] = []
    seen: set[int] = set()
    while department is not None and department.id not in seen:
        seen.add(department.id)
        chain.append(department)
        department = department.parent
    return list(reversed(chain))


def clock() -> datetime:
    """The moment the regulation clock is read at (UTC); tests replace it."""
    return utcnow()


@dataclass(frozen=True)
class RegulationClock:
    """The regulation dashboard in a few figures: open updates by urgency, the nearest
    deadline not yet passed, and the on-time rate of the last ``window_days``."""

    open_total: int
    by_urgency: dict[str, int]
    nearest: reg_dashboard.OpenItem | None
    rate: reg_dashboard.RateRow
    window_days: int

    @property
    def overdue(self) -> int:
        return self.by_urgency.get("overdue", 0)


def regulation_summary(day: date, now: datetime) -> RegulationClock:
    """Read with the regulation dashboard's own queries: every open update's clock (the
    open list, page by page: there are few) and the 90-day on-time rate."""
    calendar = load_calendar(db.session)
    by_urgency = dict.fromkeys(("overdue", "soon", "ok", "unknown"), 0)
    nearest = None
    page_no, total = 1, 0
    while True:
        page = reg_dashboard.open_updates(db.session, today=day, calendar=calendar,
                                          page=page_no, per_page=200)
        total = page.total
        for item in page.items:  # earliest deadline first
            by_urgency[item.clock.urgency] = by_urgency.get(item.clock.urgency, 0) + 1
            if nearest is None and not item.clock.overdue:
                nearest = item
        if page_no * 200 >= total:
            break
        page_no += 1
    overall, _per_source = reg_dashboard.on_time_rates(db.session, now=now)
    return RegulationClock(total, by_urgency, nearest, overall, reg_dashboard.WINDOW_DAYS)


@bp.get("/reports/")
@roles_required(*REPORT_ROLES)
def dashboard():
    department = _department_arg()
    dept_id = department.id if department else None
    day = today()
    overdue, overdue_total = queries.overdue_list(db.session, day, department_id=dept_id)
    calendar = MemoCalendar(load_calendar(db.session))
    overdue_days = {}
    for item in overdue:
        try:
            overdue_days[item.assignment_id] = calendar.late_days(item.due_date, day)
        except UnknownYearError:
            overdue_days[item.assignment_id] = None
    trend = queries.monthly_trend(db.session, day, department_id=dept_id)
    return render_template(
        "reports/dashboard.html", department=department, trail=_ancestors(department),
        today=day, headline=queries.headline(db.session, day, department_id=dept_id),
        departments=queries.completion_by_department(db.session, day, parent_id=dept_id),
        courses=queries.completion_by_course(db.session, day, department_id=dept_id),
        overdue=overdue, overdue_total=overdue_total, overdue_days=overdue_days,
        trend=trend, regulation=regulation_summary(day, clock()))


# --- completion report ----------------------------------------------------------------


def _completion_form() -> tuple[CompletionFilterForm, queries.CompletionFilters | None]:
    """The filter form filled from the query string, and the filters (None when a value
    is bad: the form then carries the messages)."""
    form = CompletionFilterForm(formdata=request.args)
    form.department.choices = [("", _("All departments")), *department_choices(db.session)]
    form.position.choices = [("", _("All positions")), *_position_choices()]
    form.course.choices = [("", _("All courses")), *_course_choices()]
    employee_id = None
    raw_employee = request.args.get("employee")
    if raw_employee:
        if not raw_employee.isdigit() or db.session.get(Employee, int(raw_employee)) is None:
            abort(404)
        employee_id = int(raw_employee)
    if not form.validate():
        return form, None
    return form, queries.CompletionFilters(
        department_id=form.department.value(), position_id=form.position.value(),
        course_id=form.course.value(), status=form.status.data or None,
        due_from=form.due_from.value(), due_to=form.due_to.value(), employee_id=employee_id,
        with_subdepartments=not form.exact.data)


def _filter_args(filters: queries.CompletionFilters) -> dict[str, Any]:
    args = {"department": filters.department_id, "position": filters.position_id,
            "course": filters.course_id, "status": filters.status,
            "due_from": filters.due_from.isoformat() if filters.due_from else None,
            "due_to": filters.due_to.isoformat() if filters.due_to else None,
            "employee": filters.employee_id,
            "exact": None if filters.with_subdepartments else "y"}
    return {k: v for k, v in args.items() if v is not None}


def _state(row: Any, day: date, calendar: MemoCalendar) -> tuple[str, int | None]:
    """The row's state as the team page shows it, and its working days late (overdue:
    up to today; completed late: up to the completion day)."""
    if row.status == "waived":
        return "waived", None
    info = due_info(due=row.due_date, status=row.status, completed_at=row.completed_at,
                    today=day, calendar=calendar)  # type: ignore[arg-type]
    if info.state == "overdue":
        return info.state, info.working_days
    if info.state == "completed-late" and info.completed_on is not None:
        try:
            return info.state, calendar.late_days(row.due_date, info.completed_on)
        except UnknownYearError:
            return info.state, None
    return info.state, None


def _bad_filters(form: Any, template: str = "reports/completion.html", **context: Any):
    return render_template(template, form=form, page=None, lines=[], filters={},
                           **context), 400


@bp.get("/reports/completion")
@roles_required(*REPORT_ROLES)
def completion():
    form, filters = _completion_form()
    if filters is None:
        return _bad_filters(form)
    day = today()
    stmt = queries.completion_rows(db.session, filters, day)
    total = queries.count_rows(db.session, stmt)
    page = Page([], 1, PER_PAGE, total)
    page.page = max(1, min(request.args.get("page", 1, type=int), page.pages))
    rows = db.session.execute(stmt.limit(PER_PAGE).offset((page.page - 1) * PER_PAGE)).all()
    calendar = MemoCalendar(load_calendar(db.session))
    page.items = [(row, *_state(row, day, calendar)) for row in rows]
    employee = db.session.get(Employee, filters.employee_id) if filters.employee_id else None
    return render_template("reports/completion.html", form=form, page=page,
                           filters=_filter_args(filters), today=day, employee=employee)


def _completion_header() -> list[str]:
    return [_("Employee no."), _("Full name"), _("Department"), _("Position"),
            _("Employee status"), _("Course code"), _("Course"), _("Version"), _("Round"),
            _("Status"), _("Due date"), _("Completed at"), _("Overdue (working days)")]


def _completion_lines(filters: queries.CompletionFilters, day: date) -> Iterator[list[Any]]:
    """The report's rows as cells, straight from a streamed SELECT (labels looked up
    once, working days through the memo: a million rows stay a loop of dict lookups)."""
    calendar = MemoCalendar(load_calendar(db.session))
    stmt = queries.completion_rows(db.session, filters, day)
    states = {code: str(label) for code, label in STATE_LABELS.items()}
    statuses = {code: status_label(code) for code in EMPLOYEE_STATUSES}
    for row in queries.iter_rows(db.session, stmt):
        state, days = _state(row, day, calendar)
        yield [row.employee_no, row.name, row.department, row.position,
               statuses.get(row.employee_status, row.employee_status), row.course_code,
               row.title_zh, row.version_number, row.cycle, states.get(state, state),
               row.due_date, row.completed_at, days]


@bp.get("/reports/completion.csv")
@roles_required(*REPORT_ROLES)
def completion_csv():
    form, filters = _completion_form()
    if filters is None:
        return _bad_filters(form)
    day = today()
    return csv_response(f"completion-{day.isoformat()}.csv", _completion_header(),
                        _completion_lines(filters, day))


@bp.get("/reports/completion.xlsx")
@roles_required(*REPORT_ROLES)
def completion_xlsx():
    form, filters = _completion_form()
    if filters is None:
        return _bad_filters(form)
    day = today()
    return xlsx_response(f"completion-{day.isoformat()}.xlsx", [Sheet(
        _("Completion"), _completion_header(), _completion_lines(filters, day),
        widths=(12, 12, 18, 14, 10, 16, 30, 8, 8, 14, 12, 17, 12))])


# --- KPI ------------------------------------------------------------------------------


def _period_datalist(day: date) -> list[Period]:
    return [*recent_periods(day, "month", 12), *recent_periods(day, "quarter", 4)]


def _with_default_period(day: date) -> MultiDict:
    args = MultiDict(request.args)
    if not (args.get("period") or "").strip():
        args["period"] = period_of(day, "month").key
    return args


class KpiContext:
    """Who the KPI is about for this user and request: everyone (HR, admin, auditor) or
    the manager's own team; a department or employee outside that answers 404."""

    def __init__(self, form: KpiForm, scope: kpi_mod.KpiScope, manager_id: int | None,
                 employee: Employee | None) -> None:
        self.form = form
        self.scope = scope
        self.manager_id = manager_id  # set when a manager sees their own team
        self.employee = employee


def _kpi_context(day: date, form_class: type = KpiForm) -> KpiContext | None:
    """The form and scope, or None for a manager without an employee record."""
    form = form_class(formdata=_with_default_period(day))
    manager_id = None
    if _sees_everyone():
        form.department.choices = [("", _("All departments")), *department_choices(db.session)]
    else:
        manager_id = current_user.employee_id
        if manager_id is None:
            return None
        allowed = team.department_choices(db.session, manager_id)
        raw = request.args.get("department")
        if raw and raw not in {str(dept_id) for dept_id, _name in allowed}:
            abort(404)  # another team's department: not theirs to see
        form.department.choices = [("", _("All my team's departments")), *allowed]
    employee = None
    raw_employee = request.args.get("employee")
    if raw_employee:
        if not raw_employee.isdigit():
            abort(404)
        employee = db.session.get(Employee, int(raw_employee)) or abort(404)
        if manager_id is not None and not is_in_team(db.session, manager_id, employee.id):
            abort(404)
    form.validate()
    scope = kpi_mod.KpiScope(department_id=form.department.value(), manager_id=manager_id,
                             employee_id=employee.id if employee else None)
    return KpiContext(form, scope, manager_id, employee)


def _kpi_rows(ctx: KpiContext, period: Period, day: date
              ) -> tuple[list[kpi_mod.KpiRow], list[kpi_mod.TeamRow]]:
    rows = kpi_mod.employee_kpis(db.session, period, today=day,
                                 calendar=load_calendar(db.session), scope=ctx.scope)
    teams = kpi_mod.team_kpis(db.session, rows, top_manager_id=ctx.manager_id)
    return rows, teams


def _kpi_page(ctx: KpiContext, day: date, period: Period | None,
              rows: list[kpi_mod.KpiRow], teams: list[kpi_mod.TeamRow], status: int):
    page = Page([], 1, KPI_PER_PAGE, len(rows))
    page.page = max(1, min(request.args.get("page", 1, type=int), page.pages))
    page.items = rows[(page.page - 1) * KPI_PER_PAGE: page.page * KPI_PER_PAGE]
    args = {"period": period.key if period else None,
            "department": ctx.scope.department_id, "employee": ctx.scope.employee_id}
    return render_template(
        "reports/kpi.html", form=ctx.form, rows=rows, page=page, teams=teams,
        total=kpi_mod.total(rows), period=period, today=day,
        filters={k: v for k, v in args.items() if v is not None},
        as_of=as_of_day(period, day) if period else None, employee=ctx.employee,
        own_team=ctx.manager_id is not None, periods=_period_datalist(day)), status


def _kpi_period(ctx: KpiContext) -> Period | None:
    """The period asked for, or None when any filter is bad (the form says which)."""
    return None if ctx.form.errors else ctx.form.period.value()


@bp.get("/reports/kpi")
@roles_required(*KPI_ROLES)
def kpi():
    day = today()
    ctx = _kpi_context(day)
    if ctx is None:
        return render_template("reports/kpi.html", form=None, rows=None)
    period = _kpi_period(ctx)
    if period is None:
        return _kpi_page(ctx, day, None, [], [], 400)
    rows, teams = _kpi_rows(ctx, period, day)
    return _kpi_page(ctx, day, period, rows, teams, 200)


EMPLOYEE_WIDTHS = (9, 12, 12, 18, 14, 10, 12, 12, 7, 7, 7, 10, 10, 7, 10, 10, 8, 10)
TEAM_WIDTHS = (9, 12, 12, 18, 7, 7, 7, 7, 10, 10, 7, 10, 10, 8, 10)


def _kpi_download(kind: str):
    day = today()
    ctx = _kpi_context(day)
    if ctx is None:
        abort(404)
    period = _kpi_period(ctx)
    if period is None:
        return _kpi_page(ctx, day, None, [], [], 400)
    rows, teams = _kpi_rows(ctx, period, day)
    name = f"risk-training-kpi-{period.key}"
    people = (kpi_mod.kpi_line(period, r) for r in rows)
    managers = (kpi_mod.team_line(period, t) for t in teams)
    if kind == "xlsx":
        return xlsx_response(f"{name}.xlsx", [
            Sheet(_("Employees"), kpi_mod.kpi_header(), people, widths=EMPLOYEE_WIDTHS),
            Sheet(_("Manager teams"), kpi_mod.team_header(), managers, widths=TEAM_WIDTHS)])
    if request.args.get("table") == "teams":
        return csv_response(f"{name}-teams.csv", kpi_mod.team_header(), managers)
    return csv_response(f"{name}.csv", kpi_mod.kpi_header(), people)


@bp.get("/reports/kpi.csv")
@roles_required(*KPI_ROLES)
def kpi_csv():
    return _kpi_download("csv")


@bp.get("/reports/kpi.xlsx")
@roles_required(*KPI_ROLES)
def kpi_xlsx():
    return _kpi_download("xlsx")


# --- performance report (department x period) -----------------------------------------


def _performance_form(day: date) -> PerformanceForm:
    form = PerformanceForm(formdata=_with_default_period(day))
    form.department.choices = [("", _("— choose —")), *department_choices(db.session)]
    form.validate()
    return form


def _performance_page(form: PerformanceForm, day: date, status: int, *,
                      args: dict[str, Any] | None = None, pdf_error: str | None = None):
    return render_template("reports/performance.html", form=form, args=args,
                           periods=_period_datalist(day), pdf_error=pdf_error,
                           pdf_available=performance_report.pdf_available()
                           and pdf_error is None), status


@bp.get("/reports/performance")
@roles_required(*REPORT_ROLES)
def performance():
    day = today()
    form = _performance_form(day)
    if not request.args.get("department"):
        form.department.errors = []  # nothing chosen yet: no message before the first try
        return _performance_page(form, day, 200)
    if form.errors:
        return _performance_page(form, day, 400)
    return _performance_page(form, day, 200, args={
        "department": form.department.value(), "period": form.period.value().key})


def _performance_report(day: date):
    """(the report, None) for valid inputs, else (None, the page with the messages)."""
    form = _performance_form(day)
    if form.errors:
        return None, _performance_page(form, day, 400)
    department = db.session.get(Department, form.department.value()) or abort(404)
    report = performance_report.build(db.session, department, form.period.value(), today=day,
                                      calendar=load_calendar(db.session))
    return report, None


@bp.get("/reports/performance.xlsx")
@roles_required(*REPORT_ROLES)
def performance_xlsx():
    report, refused = _performance_report(today())
    if report is None:
        return refused
    return xlsx_response(performance_report.filename(report, "xlsx"),
                         performance_report.sheets(report))


@bp.get("/reports/performance.pdf")
@roles_required(*REPORT_ROLES)
def performance_pdf():
    day = today()
    report, refused = _performance_report(day)
    if report is None:
        return refused
    try:
        data = performance_report.pdf(report)
    except performance_report.PdfUnavailable as exc:
        current_app.logger.error("performance report PDF failed: %s", exc)
        return _performance_page(_performance_form(day), day, 503, pdf_error=str(exc), args={
            "department": report.department.id, "period": report.period.key})
    return Response(data, mimetype="application/pdf", headers={
        "Content-Disposition":
            f'attachment; filename="{performance_report.filename(report, "pdf")}"',
        "Cache-Control": "no-store"})
