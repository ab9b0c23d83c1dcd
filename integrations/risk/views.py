"""Pages of the risk module: the risk types and the courses each one calls for, and the
risk signals received with what they did.

Who: an **admin** creates and edits risk types and their course mappings (the mapping
decides what people are assigned when a signal comes, like an assignment rule); **HR**
may view the types and mappings, read-only. The signals page is for HR, trainers,
admins and auditors. Views parse and render; ``catalog`` validates and writes, and each
view commits once.
"""

from __future__ import annotations

from datetime import date

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import exists, func, select
from sqlalchemy.orm import joinedload

from courses.models import Course, CourseVersion
from courses.topics import topic_label
from integrations.risk.catalog import (
    create_risk_type,
    remove_mapping,
    set_mapping,
    update_risk_type,
)
from integrations.risk.forms import ActionForm, MappingForm, RiskTypeForm
from integrations.risk.models import RiskSignal, RiskType, RiskTypeCourse
from integrations.risk.signals import Progress, course_results, progress, scope_label
from lms.auth.permissions import roles_required
from lms.compliance.engine import local_date
from lms.compliance.forms import assignment_status_label
from lms.compliance.models import MAX_DUE_WORKING_DAYS, Assignment
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.field_errors import save_or_show
from lms.paging import Page
from lms.people.models import Employee

bp = Blueprint("risk", __name__)

EDIT_ROLES = ("admin",)
VIEW_ROLES = ("admin", "hr")
SIGNAL_ROLES = ("hr", "trainer", "admin", "auditor")
PER_PAGE = 50


def today() -> date:
    """The pages' calendar date (Asia/Shanghai); tests monkeypatch it."""
    return local_date(utcnow())


@bp.context_processor
def _labels() -> dict[str, object]:
    return {
        "severity_label": lambda code: {"low": _("Low"), "medium": _("Medium"),
                                        "high": _("High"),
                                        "critical": _("Critical")}.get(code, code),
        "scope_kind_label": lambda code: {"department": _("Department (with sub-departments)"),
                                          "position": _("Position"),
                                          "employee": _("Employee")}.get(code, code),
        "topic_label": topic_label,
        "assignment_status_label": assignment_status_label,
        "can_edit": current_user.is_authenticated and current_user.has_role(*EDIT_ROLES),
    }


# --- risk types --------------------------------------------------------------------------


@bp.get("/admin/risk")
@roles_required(*VIEW_ROLES)
def types():
    rows = db.session.scalars(select(RiskType).options(
        joinedload(RiskType.courses).joinedload(RiskTypeCourse.course))
        .order_by(RiskType.code)).unique().all()
    signals = dict(db.session.execute(select(RiskSignal.risk_type_id, func.count())
                                      .group_by(RiskSignal.risk_type_id)).all())
    return render_template("risk/types.html", types=rows, signals=signals)


def _type_or_404(type_id: int) -> RiskType:
    return db.session.get(RiskType, type_id) or abort(404)


@bp.route("/admin/risk/new", methods=["GET", "POST"])
@roles_required(*EDIT_ROLES)
def type_new():
    form = RiskTypeForm()
    status = 200
    if form.validate_on_submit():
        saved, status = save_or_show(form, lambda: create_risk_type(
            db.session, form.to_input(), actor_id=current_user.id, now=utcnow()))
        if saved is not None:
            flash(_("Risk type %(code)s created; now map the courses it calls for.",
                    code=saved.code), "success")
            return redirect(url_for(".type_edit", type_id=saved.id))
    elif request.method == "POST":
        status = 422
    return render_template("risk/type_form.html", form=form, risk_type=None), status


def _course_choices() -> list[tuple[object, str]]:
    """Courses by code; those without a published version are marked (a signal skips
    them until one is published)."""
    published = exists().where(CourseVersion.course_id == Course.id,
                               CourseVersion.status == "published")
    rows = db.session.execute(select(Course.id, Course.code, Course.title_zh,
                                     published.label("published"))
                              .order_by(Course.code)).all()
    blank: tuple[object, str] = ("", _("— choose —"))
    return [blank, *[(cid, f"{code} · {title}" + ("" if ok else " " + _("(no published "
                                                                        "version yet)")))
                     for cid, code, title, ok in rows]]


def _type_page(risk_type: RiskType, *, form: RiskTypeForm | None = None,
               mapping_form: MappingForm | None = None, status: int = 200):
    if form is None:
        form = RiskTypeForm(obj=risk_type, formdata=None)
    if mapping_form is None:
        mapping_form = MappingForm(formdata=None)
    mapping_form.course_id.choices = _course_choices()
    mappings = db.session.execute(
        select(RiskTypeCourse, Course).join(Course, Course.id == RiskTypeCourse.course_id)
        .where(RiskTypeCourse.risk_type_id == risk_type.id).order_by(Course.code)).all()
    published = set(db.session.scalars(select(CourseVersion.course_id).where(
        CourseVersion.status == "published",
        CourseVersion.course_id.in_([c.id for _m, c in mappings]))).all())
    return render_template("risk/type_form.html", form=form, risk_type=risk_type,
                           mapping_form=mapping_form, mappings=mappings, published=published,
                           action_form=ActionForm(), max_days=MAX_DUE_WORKING_DAYS), status


@bp.route("/admin/risk/<int:type_id>", methods=["GET", "POST"])
@roles_required(*VIEW_ROLES)
def type_edit(type_id: int):
    risk_type = _type_or_404(type_id)
    if request.method == "GET":
        return _type_page(risk_type)
    if not current_user.has_role(*EDIT_ROLES):
        abort(403)
    form = RiskTypeForm()
    if not form.validate_on_submit():  # (a missing CSRF token was refused before: 400)
        return _type_page(risk_type, form=form, status=422)
    changed, status = save_or_show(form, lambda: update_risk_type(
        db.session, risk_type, form.to_input(code=risk_type.code), actor_id=current_user.id,
        now=utcnow()))
    if changed is None:
        return _type_page(risk_type, form=form, status=status)
    flash(_("Changes saved.") if changed else _("Nothing was changed."), "success")
    return redirect(url_for(".type_edit", type_id=risk_type.id))


@bp.post("/admin/risk/<int:type_id>/courses")
@roles_required(*EDIT_ROLES)
def mapping_set(type_id: int):
    risk_type = _type_or_404(type_id)
    form = MappingForm()
    form.course_id.choices = _course_choices()
    if not form.validate_on_submit():  # e.g. due days that are not a number
        return _type_page(risk_type, mapping_form=form, status=422)
    saved, status = save_or_show(form, lambda: set_mapping(
        db.session, risk_type, course_id=form.course_id.data,
        due_working_days=form.due_working_days.data, actor_id=current_user.id, now=utcnow()))
    if saved is None:
        return _type_page(risk_type, mapping_form=form, status=status)
    flash(_("%(course)s: due within %(n)d working days of a signal.",
            course=saved.course.code, n=saved.due_working_days), "success")
    return redirect(url_for(".type_edit", type_id=risk_type.id))


@bp.post("/admin/risk/<int:type_id>/courses/<int:course_id>/remove")
@roles_required(*EDIT_ROLES)
def mapping_remove(type_id: int, course_id: int):
    risk_type = _type_or_404(type_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    removed, _status = save_or_show(ActionForm(), lambda: remove_mapping(
        db.session, risk_type, course_id, actor_id=current_user.id))
    if not removed:
        abort(404)
    flash(_("The course is no longer assigned by this risk type's signals; assignments "
            "already made stay."), "success")
    return redirect(url_for(".type_edit", type_id=risk_type.id))


# --- signals -----------------------------------------------------------------------------


@bp.get("/risk/signals")
@roles_required(*SIGNAL_ROLES)
def signals():
    total = db.session.scalar(select(func.count()).select_from(RiskSignal)) or 0
    page = Page([], 1, PER_PAGE, total)
    page.page = max(1, min(request.args.get("page", 1, type=int), page.pages))
    rows = db.session.scalars(
        select(RiskSignal).options(joinedload(RiskSignal.risk_type))
        .order_by(RiskSignal.received_at.desc(), RiskSignal.id.desc())
        .limit(PER_PAGE).offset((page.page - 1) * PER_PAGE)).all()
    day = today()
    per_signal = progress(db.session, [s.id for s in rows], day)
    totals = {}
    for signal in rows:
        acc = Progress()
        for p in per_signal.get(signal.id, {}).values():
            acc.add(p)
        totals[signal.id] = acc
    page.items = list(rows)
    return render_template("risk/signals.html", page=page, totals=totals,
                           scopes={s.id: scope_label(db.session, s) for s in rows})


@bp.get("/risk/signals/<int:signal_id>")
@roles_required(*SIGNAL_ROLES)
def signal(signal_id: int):
    row = db.session.get(RiskSignal, signal_id) or abort(404)
    day = today()
    per_course = progress(db.session, [row.id], day).get(row.id, {})
    total = db.session.scalar(select(func.count()).select_from(Assignment)
                              .where(Assignment.risk_signal_id == row.id)) or 0
    page = Page([], 1, PER_PAGE, total)
    page.page = max(1, min(request.args.get("page", 1, type=int), page.pages))
    page.items = db.session.execute(
        select(Assignment, Employee.employee_no, Employee.name, Course.code)
        .join(Employee, Employee.id == Assignment.employee_id)
        .join(Course, Course.id == Assignment.course_id)
        .where(Assignment.risk_signal_id == row.id)
        .order_by(Employee.employee_no, Course.code)
        .limit(PER_PAGE).offset((page.page - 1) * PER_PAGE)).all()
    return render_template("risk/signal.html", signal=row, results=course_results(row),
                           per_course=per_course, page=page, today=day,
                           scope_name=scope_label(db.session, row))
