"""HR pages for people: employees, departments, positions, a manager's team, the
ID-number reveal, and the employee CSV import (upload → preview → apply)."""

from __future__ import annotations

import json
import posixpath
from collections import defaultdict
from datetime import date, datetime
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload, selectinload

from lms.auth.permissions import HR_ROLES, can_view_employee, report_ids_query, roles_required
from lms.extensions import db
from lms.field_errors import show_on_form
from lms.ledger import LedgerEntry
from lms.people import csv_import, idnumber
from lms.people.forms import (
    DepartmentForm,
    EmployeeFilterForm,
    EmployeeForm,
    ImportApplyForm,
    ImportUploadForm,
    PositionForm,
    RevealForm,
    TeamFilterForm,
    status_choices,
)
from lms.people.importer import (
    EmployeeImport,
    ImportRefused,
    apply_import,
    fingerprint,
    stage_upload,
    staged_text,
    validate_text,
)
from lms.people.models import Department, Employee, EmployeeTag, Position
from lms.people.services import (
    EmployeeInput,
    ServiceError,
    create_department,
    create_position,
    department_subtree_query,
    reveal_id_number,
    save_employee,
    update_department,
    update_position,
)
from lms.people.vault import IdNumberVault

bp = Blueprint("people", __name__)

PER_PAGE = 50
PREVIEW_ROWS = 50
# Headcounts count everyone still on the books.
GONE_STATUSES = ("left",)
CHINA = ZoneInfo("Asia/Shanghai")
# Extensions that are certainly not CSV; everything else is judged by its content.
EXCEL_EXTENSIONS = {".xlsx", ".xlsm", ".xls", ".et", ".ods", ".numbers"}
TEXT_EXTENSIONS = {".csv", ".txt", ".tsv", ""}
CSV_TEMPLATE_HEADERS = ("工号", "姓名", "部门编码", "岗位编码", "直属上级工号", "入职日期", "状态",
                        "身份证号", "邮箱")


def _vault() -> IdNumberVault:
    return current_app.extensions["id_vault"]


def _china_today() -> date:
    """Hire-date and ID-number checks use the Chinese calendar date."""
    return datetime.now(CHINA).date()




def _filter_args(**values) -> dict[str, object]:
    """Current filters for pager links, without empty ones."""
    return {k: v for k, v in values.items() if v not in (None, "", False)}


# ---------------------------------------------------------------------------
# Departments: shared helpers
# ---------------------------------------------------------------------------


def _department_tree() -> tuple[list[tuple[Department, int]], dict[int | None, list[Department]]]:
    """All departments in tree order with their depth, plus the children of each (one query)."""
    departments = db.session.execute(select(Department).order_by(Department.code)).scalars().all()
    ids = {d.id for d in departments}
    children: dict[int | None, list[Department]] = defaultdict(list)
    for dept in departments:
        # A parent missing from the list cannot happen with the FK; be safe anyway.
        children[dept.parent_id if dept.parent_id in ids else None].append(dept)
    ordered: list[tuple[Department, int]] = []
    seen: set[int] = set()

    def walk(parent: int | None, depth: int) -> None:
        for dept in children.get(parent, []):
            if dept.id in seen:
                continue
            seen.add(dept.id)
            ordered.append((dept, depth))
            walk(dept.id, depth + 1)

    walk(None, 0)
    return ordered, children


def _department_choices(blank: str | None = None, exclude: int | None = None
                        ) -> list[tuple[object, str]]:
    ordered, _children = _department_tree()
    choices: list[tuple[object, str]] = [("", blank)] if blank is not None else []
    choices += [(d.id, f"{'— ' * depth}{d.name} ({d.code})")
                for d, depth in ordered if d.id != exclude]
    return choices


def _position_choices(blank: str) -> list[tuple[object, str]]:
    rows = db.session.execute(select(Position.id, Position.name, Position.code)
                              .order_by(Position.code)).all()
    return [("", blank), *((pid, f"{name} ({code})") for pid, name, code in rows)]


def _employee_options():
    return (joinedload(Employee.department), joinedload(Employee.position),
            joinedload(Employee.manager), selectinload(Employee.tag_rows))


# ---------------------------------------------------------------------------
# Employees
# ---------------------------------------------------------------------------


@bp.get("/hr/employees")
@roles_required(*HR_ROLES)
def employees():
    form = EmployeeFilterForm(formdata=request.args)
    form.department.choices = _department_choices(blank=_("All departments"))
    form.position.choices = _position_choices(_("All positions"))
    form.status.choices = status_choices(blank=_("All statuses"))
    form.validate()
    ok = {name for name, field in form._fields.items() if not field.errors}

    stmt = select(Employee).options(*_employee_options()).order_by(Employee.employee_no)
    q = form.q.data if "q" in ok else None
    department = form.department.data if "department" in ok else None
    position = form.position.data if "position" in ok else None
    status = form.status.data if "status" in ok else None
    tag = form.tag.data if "tag" in ok else None
    if tag:
        stmt = stmt.where(Employee.tag_rows.any(EmployeeTag.tag == tag))
    if q:
        stmt = stmt.where(or_(Employee.name.icontains(q, autoescape=True),
                              Employee.employee_no.icontains(q, autoescape=True)))
    if department:
        stmt = stmt.where(Employee.department_id.in_(department_subtree_query(department)))
    if position:
        stmt = stmt.where(Employee.position_id == position)
    if status:
        stmt = stmt.where(Employee.status == status)
    page = db.paginate(stmt, page=request.args.get("page", 1, type=int), per_page=PER_PAGE,
                       error_out=False)
    return render_template(
        "people/employees.html", form=form, page=page,
        filters=_filter_args(q=q, department=department, position=position, status=status,
                             tag=tag),
    )


@bp.get("/employees/<int:employee_id>")
@login_required
def employee_detail(employee_id: int):
    emp = db.session.get(Employee, employee_id, options=_employee_options())
    # 404 rather than 403: do not confirm that the record exists.
    if emp is None or not can_view_employee(db.session, current_user, emp):
        abort(404)
    return render_template("people/employee_detail.html", employee=emp, reveal_form=RevealForm())


def _employee_form(emp: Employee | None):
    form = EmployeeForm(obj=emp)
    form.department_id.choices = _department_choices(blank=_("— choose —"))
    form.position_id.choices = _position_choices(_("— none —"))
    form.status.choices = status_choices()
    if request.method == "GET":
        form.id_number.data = ""
        if emp is not None and emp.manager is not None:
            form.manager_no.data = emp.manager.employee_no
        if emp is None:
            form.status.data = "active"
    if form.validate_on_submit():
        data = EmployeeInput(
            employee_no=form.employee_no.data, name=form.name.data,
            department_id=form.department_id.data, position_id=form.position_id.data,
            manager_no=form.manager_no.data or None, hire_date=form.hire_date.data,
            status=form.status.data, email=form.email.data or None,
            id_number=form.id_number.data or None, tags=form.tags.pieces(),
        )
        try:
            saved, changed = save_employee(db.session, _vault(), emp, data,
                                           actor_id=current_user.id)
            db.session.commit()
        except ServiceError as exc:
            db.session.rollback()
            show_on_form(form, exc)
        except IntegrityError:
            # Someone else took the employee no. or ID number between check and commit.
            db.session.rollback()
            flash(_("Someone else changed the same data at the same moment; nothing was "
                    "saved. Check the values and save again."), "error")
        else:
            if emp is None:
                flash(_("Employee %(no)s created.", no=saved.employee_no), "success")
            elif changed:
                flash(_("Employee %(no)s updated.", no=saved.employee_no), "success")
            else:
                flash(_("Nothing was changed."), "info")
            return redirect(url_for("people.employee_detail", employee_id=saved.id))
    if request.method == "POST" and form.id_number.data:
        # Never send a full ID number back to the browser; ask for it again instead.
        form.id_number.data = ""
        form.id_number.errors = [*form.id_number.errors, _(
            "For privacy the ID number is not shown again; enter it again before saving.")]
    status = 400 if request.method == "POST" else 200
    return render_template("people/employee_form.html", form=form, employee=emp), status


@bp.route("/hr/employees/new", methods=["GET", "POST"])
@roles_required(*HR_ROLES)
def employee_new():
    return _employee_form(None)


@bp.route("/hr/employees/<int:employee_id>/edit", methods=["GET", "POST"])
@roles_required(*HR_ROLES)
def employee_edit(employee_id: int):
    emp = db.session.get(Employee, employee_id, options=_employee_options()) or abort(404)
    return _employee_form(emp)


@bp.post("/hr/employees/<int:employee_id>/reveal-id")
@roles_required("hr")  # admins administer the system; only HR may read ID numbers
def reveal_id(employee_id: int):
    emp = db.session.get(Employee, employee_id, options=_employee_options()) or abort(404)
    form = RevealForm()
    if form.validate_on_submit():
        try:
            number = reveal_id_number(db.session, _vault(), emp, reason=form.reason.data,
                                      actor_id=current_user.id)
        except ServiceError as exc:
            db.session.rollback()
            show_on_form(form, exc)
        else:
            db.session.commit()
            return render_template("people/reveal.html", employee=emp, number=number,
                                   reason=form.reason.data)
    return render_template("people/employee_detail.html", employee=emp, reveal_form=form), 400


# ---------------------------------------------------------------------------
# Departments
# ---------------------------------------------------------------------------


@bp.route("/hr/departments", methods=["GET", "POST"])
@roles_required(*HR_ROLES)
def departments():
    form = DepartmentForm()
    form.parent_id.choices = _department_choices(blank=_("— top level —"))
    status = 200
    if form.validate_on_submit():
        try:
            dept = create_department(db.session, code=form.code.data, name=form.name.data,
                                     parent_id=form.parent_id.data, actor_id=current_user.id)
            db.session.commit()
        except ServiceError as exc:
            db.session.rollback()
            show_on_form(form, exc)
        except IntegrityError:
            db.session.rollback()
            form.code.errors = [*form.code.errors, _("This code was just taken; choose another.")]
        else:
            flash(_("Department %(name)s added.", name=dept.name), "success")
            return redirect(url_for("people.departments"))
    if request.method == "POST":
        status = 400

    ordered, children = _department_tree()
    direct = dict(db.session.execute(
        select(Employee.department_id, func.count(Employee.id))
        .where(Employee.status.not_in(GONE_STATUSES)).group_by(Employee.department_id)
    ).all())
    total: dict[int, int] = {}
    for dept, _depth in reversed(ordered):  # children come after parents in tree order
        total[dept.id] = direct.get(dept.id, 0) + sum(total[c.id] for c in children.get(dept.id, []))
    return render_template("people/departments.html", form=form, children=children,
                           direct=direct, total=total), status


@bp.route("/hr/departments/<int:department_id>/edit", methods=["GET", "POST"])
@roles_required(*HR_ROLES)
def department_edit(department_id: int):
    dept = db.session.get(Department, department_id) or abort(404)
    form = DepartmentForm(obj=dept)
    form.parent_id.choices = _department_choices(blank=_("— top level —"), exclude=dept.id)
    if form.validate_on_submit():
        try:
            changed = update_department(db.session, dept, code=form.code.data,
                                        name=form.name.data, parent_id=form.parent_id.data,
                                        actor_id=current_user.id)
            db.session.commit()
        except ServiceError as exc:
            db.session.rollback()
            show_on_form(form, exc)
        except IntegrityError:
            db.session.rollback()
            form.code.errors = [*form.code.errors, _("This code was just taken; choose another.")]
        else:
            flash(_("Department %(name)s updated.", name=dept.name) if changed
                  else _("Nothing was changed."), "success" if changed else "info")
            return redirect(url_for("people.departments"))
    status = 400 if request.method == "POST" else 200
    return render_template("people/department_edit.html", form=form, department=dept), status


# ---------------------------------------------------------------------------
# Positions
# ---------------------------------------------------------------------------


@bp.route("/hr/positions", methods=["GET", "POST"])
@roles_required(*HR_ROLES)
def positions():
    form = PositionForm()
    if form.validate_on_submit():
        try:
            pos = create_position(db.session, code=form.code.data, name=form.name.data,
                                  actor_id=current_user.id)
            db.session.commit()
        except ServiceError as exc:
            db.session.rollback()
            show_on_form(form, exc)
        except IntegrityError:
            db.session.rollback()
            flash(_("This code or name was just taken; choose another."), "error")
        else:
            flash(_("Position %(name)s added.", name=pos.name), "success")
            return redirect(url_for("people.positions"))
    rows = db.session.execute(
        select(Position, func.count(Employee.id))
        .outerjoin(Employee, and_(Employee.position_id == Position.id,
                                  Employee.status.not_in(GONE_STATUSES)))
        .group_by(Position.id).order_by(Position.code)
    ).all()
    status = 400 if request.method == "POST" else 200
    return render_template("people/positions.html", form=form, rows=rows), status


@bp.route("/hr/positions/<int:position_id>/edit", methods=["GET", "POST"])
@roles_required(*HR_ROLES)
def position_edit(position_id: int):
    pos = db.session.get(Position, position_id) or abort(404)
    form = PositionForm(obj=pos)
    if form.validate_on_submit():
        try:
            changed = update_position(db.session, pos, code=form.code.data, name=form.name.data,
                                      actor_id=current_user.id)
            db.session.commit()
        except ServiceError as exc:
            db.session.rollback()
            show_on_form(form, exc)
        except IntegrityError:
            db.session.rollback()
            flash(_("This code or name was just taken; choose another."), "error")
        else:
            flash(_("Position %(name)s updated.", name=pos.name) if changed
                  else _("Nothing was changed."), "success" if changed else "info")
            return redirect(url_for("people.positions"))
    status = 400 if request.method == "POST" else 200
    return render_template("people/position_edit.html", form=form, position=pos), status


# ---------------------------------------------------------------------------
# A manager's team
# ---------------------------------------------------------------------------


@bp.get("/team")
@roles_required("manager")
def team():
    form = TeamFilterForm(formdata=request.args)
    form.status.choices = status_choices(blank=_("All statuses"))
    form.validate()
    me = current_user.employee_id
    page = None
    status = form.status.data if not form.status.errors else None
    direct = bool(form.direct.data)
    if me is not None:
        stmt = (select(Employee).options(*_employee_options())
                .where(Employee.id.in_(report_ids_query(me)))
                .order_by(Employee.employee_no))
        if direct:
            stmt = stmt.where(Employee.manager_id == me)
        if status:
            stmt = stmt.where(Employee.status == status)
        page = db.paginate(stmt, page=request.args.get("page", 1, type=int), per_page=PER_PAGE,
                           error_out=False)
    return render_template("people/team.html", form=form, page=page,
                           filters=_filter_args(status=status, direct="y" if direct else None))


# ---------------------------------------------------------------------------
# CSV import
# ---------------------------------------------------------------------------


def _upload_problem(filename: str) -> str | None:
    """A specific message for files that are plainly not CSV, judged by name."""
    ext = posixpath.splitext(filename.lower())[1]
    if ext in EXCEL_EXTENSIONS:
        return _("This is an Excel workbook (%(ext)s), not a CSV file. In Excel use "
                 "\"Save as\" → \"CSV UTF-8 (comma delimited)\" and upload that file.", ext=ext)
    if ext not in TEXT_EXTENSIONS:
        return _("Only CSV files (.csv) can be imported; %(name)s is not one.", name=filename)
    return None


def _staged_or_404(import_id: int) -> EmployeeImport:
    """Only the uploader or HR may see a staged import (it holds ID numbers)."""
    staged = db.session.get(EmployeeImport, import_id)
    if staged is None or (staged.uploaded_by_id != current_user.id
                          and not current_user.has_role("hr")):
        abort(404)
    return staged


@bp.route("/hr/import", methods=["GET", "POST"])
@roles_required(*HR_ROLES)
def import_upload():
    form = ImportUploadForm()
    error: str | None = None
    if form.validate_on_submit():
        upload = form.file.data
        # Browsers send a bare name; old IE sent a full Windows path.
        filename = posixpath.basename((upload.filename or "").replace("\\", "/")) or "upload.csv"
        data = upload.read()
        error = _upload_problem(filename)
        if error is None:
            try:
                text = csv_import.decode_upload(data)
                result = validate_text(db.session, _vault(), text, today=_china_today(),
                                       max_rows=current_app.config["IMPORT_MAX_ROWS"])
            except csv_import.ImportFileError as exc:
                error = str(exc)
            else:
                staged = stage_upload(db.session, _vault(), data=data, text=text,
                                      filename=filename, row_count=result.record_count,
                                      uploaded_by_id=current_user.id)
                db.session.commit()
                return redirect(url_for("people.import_preview", import_id=staged.id))

    recent = select(EmployeeImport).options(joinedload(EmployeeImport.uploaded_by)).order_by(
        EmployeeImport.id.desc()).limit(10)
    if not current_user.has_role("hr"):
        recent = recent.where(EmployeeImport.uploaded_by_id == current_user.id)
    imports = db.session.execute(recent).scalars().all()
    status = 400 if request.method == "POST" else 200
    return render_template("people/import_upload.html", form=form, error=error,
                           imports=imports), status


@bp.get("/hr/import/template.csv")
@roles_required(*HR_ROLES)
def import_template():
    # The BOM makes Excel on Chinese Windows read the headers as UTF-8, not GBK.
    body = "\ufeff" + ",".join(CSV_TEMPLATE_HEADERS) + "\r\n"
    return Response(body.encode("utf-8"), mimetype="text/csv", headers={
        "Content-Disposition": "attachment; filename=employee-import-template.csv"})


@bp.get("/hr/import/<int:import_id>")
@roles_required(*HR_ROLES)
def import_preview(import_id: int):
    staged = _staged_or_404(import_id)
    context: dict[str, object] = {"staged": staged}
    if staged.applied_at is not None:
        entry = db.session.execute(
            select(LedgerEntry).where(LedgerEntry.subject == f"employee_import:{staged.id}",
                                      LedgerEntry.kind == "employees.imported")
        ).scalars().first()
        context["ledger_entry"] = entry
        context["counts"] = json.loads(entry.payload) if entry is not None else None
        return render_template("people/import_preview.html", **context)
    try:
        result = validate_text(db.session, _vault(), staged_text(_vault(), staged),
                               today=_china_today(),
                               max_rows=current_app.config["IMPORT_MAX_ROWS"])
    except csv_import.ImportFileError as exc:
        context["file_error"] = str(exc)
        return render_template("people/import_preview.html", **context)
    form = ImportApplyForm(fingerprint=fingerprint(staged, result))
    shown = result.rows[:PREVIEW_ROWS]
    departments = dict(db.session.execute(
        select(Department.id, Department.name).where(
            Department.id.in_({r.department_id for r in shown}))).all())
    positions = dict(db.session.execute(
        select(Position.id, Position.name).where(
            Position.id.in_({r.position_id for r in shown if r.position_id}))).all())
    earlier = db.session.execute(
        select(EmployeeImport).where(EmployeeImport.sha256 == staged.sha256,
                                     EmployeeImport.applied_at.is_not(None),
                                     EmployeeImport.id != staged.id)
        .order_by(EmployeeImport.applied_at.desc())
    ).scalars().first()
    context.update(result=result, rows=shown, departments=departments, positions=positions,
                   form=form, earlier=earlier, mask_id=idnumber.mask)
    return render_template("people/import_preview.html", **context)


@bp.post("/hr/import/<int:import_id>/apply")
@roles_required(*HR_ROLES)
def import_apply(import_id: int):
    staged = _staged_or_404(import_id)
    form = ImportApplyForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        outcome = apply_import(db.session, _vault(), staged, actor_id=current_user.id,
                               today=_china_today(), expected_fingerprint=form.fingerprint.data,
                               max_rows=current_app.config["IMPORT_MAX_ROWS"])
        db.session.commit()
    except ImportRefused as exc:
        db.session.rollback()
        flash(str(exc.message), "error")
    except IntegrityError:
        db.session.rollback()
        flash(_("Nothing was imported: while the import ran, another change took an employee "
                "no. or ID number used in this file. Check the preview again."), "error")
    else:
        flash(_("Import applied: %(created)d employees created, %(updated)d updated, "
                "%(unchanged)d unchanged.", created=outcome.created, updated=outcome.updated,
                unchanged=outcome.unchanged), "success")
    return redirect(url_for("people.import_preview", import_id=import_id))
