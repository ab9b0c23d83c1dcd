"""The risk-prevention training performance report (风险防控培训绩效报告) of one department
(with its sub-departments) for one period: the KPI of ``lms.reports.kpi`` summed per
sub-department, per employee and per manager's team, as XLSX and as PDF.

The PDF is HTML rendered by the evidence module's ``render_pdf`` (xhtml2pdf with an
embedded CJK font, no network); the XLSX goes through ``lms.reports.export``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, datetime

from flask import current_app, render_template
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session

from lms.dbtypes import utcnow
from lms.people.models import Department
from lms.reports import kpi
from lms.reports.export import Sheet
from lms.reports.periods import Period, as_of_day
from lms.reports.queries import department_closure
from lms.workdays import WorkCalendar

__all__ = ["PdfUnavailable", "PerformanceReport", "UnitRow", "build", "filename", "pdf",
           "pdf_available", "sheets"]


@dataclass
class UnitRow:
    """A line of the summary: the department as a whole, a sub-department (rolled up),
    or the department's own people outside any sub-department."""

    label: str
    code: str
    kind: str  # total, sub, own
    people: int = 0
    figures: kpi.KpiFigures = field(default_factory=kpi.KpiFigures)


@dataclass
class PerformanceReport:
    department: Department
    period: Period
    as_of: date
    generated_at: datetime
    units: list[UnitRow]
    employees: list[kpi.KpiRow]
    teams: list[kpi.TeamRow]


def build(session: Session, department: Department, period: Period, *, today: date,
          calendar: WorkCalendar) -> PerformanceReport:
    """Compute the report: the employee KPI over the department's subtree, summed per
    direct sub-department (through the tree's closure) and per manager."""
    rows = kpi.employee_kpis(session, period, today=today, calendar=calendar,
                             scope=kpi.KpiScope(department_id=department.id))
    children = session.execute(select(Department.id, Department.name, Department.code)
                               .where(Department.parent_id == department.id)
                               .order_by(Department.code)).all()
    closure = department_closure(select(Department.id).where(
        Department.parent_id == department.id))
    under = dict((descendant, ancestor) for ancestor, descendant in session.execute(
        select(closure.c.ancestor, closure.c.descendant)).all())
    total = UnitRow(department.name, department.code, "total")
    own = UnitRow(department.name, department.code, "own")
    subs = {cid: UnitRow(name, code, "sub") for cid, name, code in children}
    for row in rows:
        unit = subs.get(under.get(row.department_id, -1), own)
        for target in (total, unit):
            target.people += 1
            target.figures.add(row.figures)
    units = [total, *([own] if own.people else []), *subs.values()]
    return PerformanceReport(department, period, as_of_day(period, today), utcnow(), units,
                             rows, kpi.team_kpis(session, rows))


def filename(report: PerformanceReport, extension: str) -> str:
    """ASCII file name: the department code and the period."""
    code = "".join(c if c.isalnum() or c in "-_" else "-" for c in report.department.code)
    return f"risk-training-performance-{code}-{report.period.key}.{extension}"


def title(report: PerformanceReport) -> str:
    return _("Risk-prevention training performance report")


def _unit_label(unit: UnitRow) -> str:
    if unit.kind == "total":
        return _("%(name)s (whole department)", name=unit.label)
    if unit.kind == "own":
        return _("%(name)s (own staff, no sub-department)", name=unit.label)
    return unit.label


def sheets(report: PerformanceReport) -> list[Sheet]:
    summary_header = [_("Unit"), _("Department code"), _("People"), _("Due"), _("Completed"),
                      _("On time"), _("Completion rate (%)"), _("On-time rate (%)"),
                      _("Overdue"), _("Overdue (working days)"), _("Average exam score"),
                      _("Signatures outstanding")]

    def summary_rows():
        for unit in report.units:
            f = unit.figures
            yield [_unit_label(unit), unit.code, unit.people, f.due, f.completed, f.on_time,
                   f.completion_rate, f.on_time_rate, f.overdue, f.overdue_days,
                   f.average_score, f.signatures_outstanding]
        yield []
        yield [title(report)]
        yield [_("Period"), report.period.key]
        yield [_("Figures as of"), report.as_of]
        yield [_("Generated at"), report.generated_at]

    return [
        Sheet(_("Summary"), summary_header, summary_rows(),
              widths=(30, 14, 8, 8, 8, 8, 10, 10, 8, 10, 10, 10)),
        Sheet(_("Employees"), kpi.kpi_header(),
              (kpi.kpi_line(report.period, r) for r in report.employees),
              widths=(9, 12, 12, 18, 14, 10, 12, 12, 7, 7, 7, 10, 10, 7, 10, 10, 8, 10)),
        Sheet(_("Manager teams"), kpi.team_header(),
              (kpi.team_line(report.period, t) for t in report.teams),
              widths=(9, 12, 12, 18, 7, 7, 7, 7, 10, 10, 7, 10, 10, 8, 10)),
    ]


def _pct(value: object) -> str:
    return "—" if value is None else f"{value} %"


def _font_path() -> str | None:
    return current_app.config.get("EVIDENCE_FONT_PATH") or os.environ.get("EVIDENCE_FONT_PATH")


def pdf_available() -> bool:
    """Whether the evidence module's HTML-to-PDF renderer is installed here."""
    try:
        from lms.evidence import pdf as _pdf  # noqa: F401
    except ImportError:
        return False
    return True


class PdfUnavailable(RuntimeError):
    """No PDF can be made here (no CJK font, or the renderer failed); the message says
    why, and the XLSX is still there."""


def pdf(report: PerformanceReport) -> bytes:
    """The report as a PDF (A4 landscape, Chinese embedded); ``PdfUnavailable`` when the
    font or the renderer is missing or fails."""
    try:
        from lms.evidence.fonts import FontError, find_font
        from lms.evidence.pdf import PdfRenderError, font_face_css, render_pdf
    except ImportError as exc:
        raise PdfUnavailable(f"the PDF renderer is not installed ({exc})") from exc
    try:
        font = find_font(_font_path())
    except FontError as exc:
        raise PdfUnavailable(str(exc)) from exc
    html = render_template("reports/performance_pdf.html", report=report,
                           title=title(report), unit_label=_unit_label, pct=_pct,
                           font_css=font_face_css(font),
                           font_family=getattr(font, "family", "cjk"))
    try:
        return render_pdf(html, font, meta={
            "title": f"{title(report)} {report.department.name} {report.period.key}",
            "author": _("Compliance Academy"),
            "subject": title(report)})
    except PdfRenderError as exc:
        raise PdfUnavailable(str(exc)) from exc
