"""Evidence pack pages: find an employee, download their pack (all courses or one
course), and check whether an uploaded PDF is an untampered pack of ours.

HR, admins and auditors may export anyone's pack; a manager only their own reports'
(``can_view_employee``); anyone else gets a 404 for an employee they may not see, so
the page does not confirm the record exists. An export is a POST: it writes its ledger
entry.
"""

from __future__ import annotations

import io

from flask import Blueprint, abort, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from sqlalchemy import select
from wtforms import StringField
from wtforms.validators import Length, Optional

from courses.models import Course, CourseVersion, Enrollment
from lms.auth.permissions import can_view_employee, roles_required
from lms.evidence.export import export_pack, recognise_pack
from lms.evidence.fonts import FontError
from lms.evidence.pdf import PdfRenderError
from lms.evidence.signing import SigningError
from lms.extensions import db
from lms.field_errors import save_or_show
from lms.people.models import Department, Employee, Position, User

bp = Blueprint("evidence", __name__)

EXPORT_ROLES = ("hr", "admin", "auditor", "manager")
EVERYONE_ROLES = ("hr", "admin", "auditor")  # may export any employee's pack
MAX_PDF_BYTES = 50 * 1024 * 1024


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


class LookupForm(FlaskForm):
    class Meta:
        csrf = False  # a GET search

    employee_no = StringField(_l("Employee no."), filters=[_strip],
                              validators=[Optional(), Length(max=32)])


class ExportForm(FlaskForm):
    course = StringField(_l("Course code"), filters=[_strip],
                         validators=[Optional(), Length(max=32)])


class VerifyForm(FlaskForm):
    file = FileField(_l("Evidence pack (PDF)"),
                     validators=[FileRequired(message=_l("Choose a PDF file."))])


def _may_export(employee: Employee) -> bool:
    if current_user.has_role(*EVERYONE_ROLES):
        return True
    return current_user.has_role("manager") and can_view_employee(db.session, current_user,
                                                                  employee)


def _employee_or_404(employee_id: int) -> Employee:
    employee = db.session.get(Employee, employee_id)
    if employee is None or not _may_export(employee):
        abort(404)
    return employee


def _courses_of(employee: Employee) -> list[tuple[Course, int, int]]:
    """(course, rounds, completed rounds) the employee has records of: one query."""
    rows = db.session.execute(
        select(Course, Enrollment.completed_at)
        .join(CourseVersion, CourseVersion.course_id == Course.id)
        .join(Enrollment, Enrollment.version_id == CourseVersion.id)
        .join(User, User.id == Enrollment.user_id)
        .where(User.employee_id == employee.id)
        .order_by(Course.code)).all()
    out: dict[int, list] = {}
    for course, completed_at in rows:
        entry = out.setdefault(course.id, [course, 0, 0])
        entry[1] += 1
        entry[2] += completed_at is not None
    return [tuple(v) for v in out.values()]


@bp.get("/evidence")
@roles_required(*EXPORT_ROLES)
def index():
    form = LookupForm(formdata=request.args)
    status = 200
    if form.employee_no.data and form.validate():
        employee = db.session.scalar(select(Employee).where(
            Employee.employee_no == form.employee_no.data))
        if employee is not None and _may_export(employee):
            return redirect(url_for("evidence.employee", employee_id=employee.id))
        form.employee_no.errors = [_("No employee with this number that you may see.")]
        status = 404
    from lms.evidence.bulk_views import bulk_panel  # the bulk-export form and recent jobs

    return render_template("evidence/index.html", form=form, **bulk_panel()), status


def _employee_page(employee: Employee, form: ExportForm, status: int = 200):
    details = db.session.execute(
        select(Department.name, Position.name).select_from(Employee)
        .join(Department, Department.id == Employee.department_id)
        .outerjoin(Position, Position.id == Employee.position_id)
        .where(Employee.id == employee.id)).one()
    return render_template("evidence/employee.html", employee=employee, form=form,
                           department=details[0], position=details[1],
                           courses=_courses_of(employee)), status


@bp.get("/evidence/employees/<int:employee_id>")
@roles_required(*EXPORT_ROLES)
def employee(employee_id: int):
    return _employee_page(_employee_or_404(employee_id), ExportForm())


@bp.post("/evidence/employees/<int:employee_id>/pack")
@roles_required(*EXPORT_ROLES)
def download(employee_id: int):
    employee = _employee_or_404(employee_id)
    form = ExportForm()
    if not form.validate_on_submit():
        return _employee_page(employee, form, 400)
    by = f"{current_user.display_name} ({current_user.username})"
    try:
        exported, status = save_or_show(form, lambda: export_pack(
            db.session, employee, course_code=form.course.data or None, actor=current_user,
            generated_by=by))
    except (FontError, PdfRenderError, SigningError) as exc:
        db.session.rollback()
        flash(_("The evidence pack could not be made: %(reason)s", reason=str(exc)), "error")
        return _employee_page(employee, form, 503)
    if exported is None:
        return _employee_page(employee, form, status)
    response = send_file(io.BytesIO(exported.pdf), mimetype="application/pdf",
                         as_attachment=True, download_name=exported.filename)
    response.headers["X-Evidence-Pack"] = exported.pack_id
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/evidence/verify", methods=["GET", "POST"])
@roles_required(*EXPORT_ROLES)
def verify():
    form = VerifyForm()
    verdict = None
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            data = form.file.data.read(MAX_PDF_BYTES + 1)
            if len(data) > MAX_PDF_BYTES:
                form.file.errors = [_("The file is larger than %(n)d MB.",
                                      n=MAX_PDF_BYTES // (1024 * 1024))]
                status = 413
            else:
                verdict = recognise_pack(db.session, data)
                status = 200 if verdict.ok else 422
        else:
            status = 400
    return render_template("evidence/verify.html", form=form, verdict=verdict), status
