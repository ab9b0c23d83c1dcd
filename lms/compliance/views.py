"""HR pages for mandatory training: assignment rules (list, create, edit with a reach
preview, "apply now"), the assignment list with filters, assigning by hand, extending a
due date and waiving an assignment.

Views parse and render; the services in ``lms.compliance.rules``/``manual`` and the
engine validate and write, and each view commits once. Due dates are Chinese local dates
counted on the work calendar the admin maintains (``load_calendar``).
"""

from __future__ import annotations

import json
from datetime import date, datetime

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import exists, select
from sqlalchemy.orm import joinedload

from assessments.attempt_grants import (
    GrantRefused,
    exam_standings,
    grant_attempts,
    grants_of,
)
from assessments.exams import Exam
from courses.enrolment import department_choices, parse_employee_nos
from courses.models import Course, CourseVersion, Lesson
from lms.auth.permissions import HR_ROLES, roles_required
from lms.compliance.engine import evaluate_rule, local_date
from lms.compliance.forms import (
    APPLIES_TO_LABELS,
    ActionForm,
    AssignForm,
    AssignmentFilterForm,
    ExtendForm,
    GrantAttemptsForm,
    RuleForm,
    WaiveForm,
    assignment_source_label,
    assignment_status_label,
)
from lms.compliance.manual import (
    LIVE_STATUSES,
    AssignmentFilters,
    assign_by_hand,
    assignments_query,
    extend,
    waive,
)
from lms.compliance.models import Assignment, AssignmentRule
from lms.compliance.regulation.workflow import regulation_owners
from lms.compliance.rules import (
    create_rule,
    input_of,
    preview_count,
    rule_counts,
    rule_links,
    tag_counts,
    update_rule,
)
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.field_errors import save_or_show
from lms.people.models import Position
from lms.workday_overrides import load_calendar
from lms.workdays import UnknownYearError, WorkCalendar

bp = Blueprint("compliance", __name__)

PER_PAGE = 50


def clock() -> datetime:
    """The time these pages act at (UTC); tests replace it to stand on a given day."""
    return utcnow()


@bp.context_processor
def _labels() -> dict[str, object]:
    return {"assignment_status_label": assignment_status_label,
            "assignment_source_label": assignment_source_label,
            "applies_to_label": lambda code: str(APPLIES_TO_LABELS.get(code, code)),
            "json_list": lambda text: json.loads(text or "[]")}


def _course_choices(blank: str) -> list[tuple[object, str]]:
    """Courses by code; those without a published version are marked (a rule may wait
    for one, an assignment by hand cannot)."""
    published = exists().where(CourseVersion.course_id == Course.id,
                               CourseVersion.status == "published")
    rows = db.session.execute(select(Course.id, Course.code, Course.title_zh, published)
                              .order_by(Course.code)).all()
    return [("", blank), *((cid, f"{code} · {title}" + (
        "" if has else f" ({_('no published version yet')})")) for cid, code, title, has in rows)]


def _position_choices() -> list[tuple[object, str]]:
    rows = db.session.execute(select(Position.id, Position.name, Position.code)
                              .order_by(Position.code)).all()
    return [(pid, f"{name} ({code})") for pid, name, code in rows]


# --- rules --------------------------------------------------------------------------------


@bp.get("/compliance/rules")
@roles_required(*HR_ROLES)
def rules():
    owners = regulation_owners(db.session)
    rows = db.session.scalars(select(AssignmentRule).options(joinedload(AssignmentRule.course))
                              .order_by(AssignmentRule.name)).all()
    return render_template("compliance/rules.html",
                           rules=[r for r in rows if r.id not in owners],
                           regulation_rules=[(r, owners[r.id]) for r in rows if r.id in owners],
                           links=rule_links(db.session, [r.id for r in rows]),
                           counts=rule_counts(db.session, today=local_date(clock())),
                           run_form=ActionForm())


def _rule_or_404(rule_id: int) -> AssignmentRule:
    return db.session.get(AssignmentRule, rule_id) or abort(404)


def _owned_elsewhere(rule: AssignmentRule | None):
    """A regulation update's audience rule is changed and switched on by the update's
    own steps (triage, push, close), never here: enabling it from this page would assign
    people before the briefing exists. Returns the redirect to the update, or None."""
    if rule is None:
        return None
    update_id = regulation_owners(db.session, [rule.id]).get(rule.id)
    if update_id is None:
        return None
    flash(_("This rule is the audience of a regulation update; change it on the update's "
            "page."), "error")
    return redirect(url_for("regulation.update_page", update_id=update_id)), 409


def _rule_page(rule: AssignmentRule | None):
    """New and edit share one page; the "Preview reach" button counts without saving."""
    if request.method == "GET" and rule is not None:
        form = RuleForm(obj=input_of(db.session, rule))
    else:
        form = RuleForm()
    form.course_id.choices = _course_choices(_("— choose —"))
    form.department_ids.choices = department_choices(db.session)
    form.position_ids.choices = _position_choices()
    status, preview, preview_tags = 200, None, []
    if request.method == "POST" and request.form.get("action") == "preview":
        # CSRF is checked for every POST by CSRFProtect; nothing is written here.
        effective_from = rule.effective_from if rule else local_date(clock())
        preview = preview_count(db.session, form.to_input(), effective_from=effective_from)
        preview_tags = tag_counts(db.session, form.tags.pieces())
    elif form.validate_on_submit():
        now = clock()
        if rule is None:
            saved, status = save_or_show(form, lambda: create_rule(
                db.session, form.to_input(), actor_id=current_user.id, now=now))
        else:
            saved, status = save_or_show(form, lambda: update_rule(
                db.session, rule, form.to_input(), actor_id=current_user.id, now=now))
        if saved is not None:
            if saved is False:
                flash(_("Nothing was changed."), "success")
            else:
                flash(_("Rule saved. Existing assignments are not changed; the rule applies "
                        "from its next run."), "success")
            return redirect(url_for(".rules"))
    elif request.method == "POST":
        status = 422
    return render_template("compliance/rule_form.html", form=form, rule=rule,
                           preview=preview, preview_tags=preview_tags), status


@bp.route("/compliance/rules/new", methods=["GET", "POST"])
@roles_required(*HR_ROLES)
def rule_new():
    return _rule_page(None)


@bp.route("/compliance/rules/<int:rule_id>/edit", methods=["GET", "POST"])
@roles_required(*HR_ROLES)
def rule_edit(rule_id: int):
    rule = _rule_or_404(rule_id)
    return _owned_elsewhere(rule) or _rule_page(rule)


@bp.post("/compliance/rules/<int:rule_id>/run")
@roles_required(*HR_ROLES)
def rule_run(rule_id: int):
    """"Apply now": evaluate the rule at once instead of waiting for the next tick."""
    rule = _rule_or_404(rule_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    if (owned := _owned_elsewhere(rule)) is not None:
        return owned
    if not rule.is_active:
        flash(_("This rule is disabled; enable it before applying it."), "error")
        return redirect(url_for(".rules"))
    try:
        run = evaluate_rule(db.session, rule, calendar=load_calendar(db.session), now=clock(),
                            actor_id=current_user.id)
        db.session.commit()
    except UnknownYearError as exc:
        db.session.rollback()
        flash(_("The holiday calendar for %(year)d is not known yet; ask an administrator to "
                "enter it in the work calendar.", year=exc.year), "error")
        return redirect(url_for(".rules"))
    if run.version_id is None:
        flash(_("The course has no published version yet; nobody was assigned."), "error")
    else:
        flash(_("Rule applied: %(assigned)d assigned, %(retrained)d assigned again for "
                "re-training, %(enrolled)d enrolled.", assigned=run.assigned,
                retrained=run.retrained, enrolled=run.enrolled), "success")
    return redirect(url_for(".rules"))


# --- assignments --------------------------------------------------------------------------


def _days_left(calendar: WorkCalendar, assignment: Assignment, today: date) -> int | None:
    """Working days until an open assignment's due date (negative: overdue by that many)."""
    if assignment.status != "open":
        return None
    try:
        return calendar.workdays_between(today, assignment.due_date)
    except UnknownYearError:
        return None


def _filter_args(**values: object) -> dict[str, object]:
    return {k: v for k, v in values.items() if v not in (None, "", False)}


@bp.get("/compliance/assignments")
@roles_required(*HR_ROLES)
def assignments():
    form = AssignmentFilterForm(formdata=request.args)
    form.course.choices = _course_choices(_("All courses"))
    form.department.choices = [("", _("All departments")), *department_choices(db.session)]
    form.validate()
    ok = {name for name, f in form._fields.items() if not f.errors}

    def value(name: str):
        return form[name].data if name in ok else None

    filters = AssignmentFilters(course_id=value("course"), department_id=value("department"),
                                status=value("status") or None,
                                overdue_only=bool(value("overdue")),
                                due_before=value("due_before"))
    today = local_date(clock())
    page = db.paginate(assignments_query(filters, today=today),
                       page=request.args.get("page", 1, type=int), per_page=PER_PAGE,
                       error_out=False)
    calendar = load_calendar(db.session)
    rows = [(a, _days_left(calendar, a, today)) for a in page.items]
    args = _filter_args(course=filters.course_id, department=filters.department_id,
                        status=filters.status, overdue="y" if filters.overdue_only else None,
                        due_before=filters.due_before.isoformat() if filters.due_before else None)
    return render_template("compliance/assignments.html", form=form, page=page, rows=rows,
                           today=today, filters=args, here=request.full_path)


def _assignment_or_404(assignment_id: int) -> Assignment:
    return db.session.get(Assignment, assignment_id, options=[
        joinedload(Assignment.employee), joinedload(Assignment.course),
        joinedload(Assignment.version)]) or abort(404)


def _assignment_page(assignment: Assignment, *, extend_form: ExtendForm | None = None,
                     waive_form: WaiveForm | None = None,
                     grant_form: GrantAttemptsForm | None = None, status: int = 200):
    history = db.session.scalars(
        select(Assignment).where(Assignment.user_id == assignment.user_id,
                                 Assignment.course_id == assignment.course_id)
        .options(joinedload(Assignment.version)).order_by(Assignment.cycle)).all()
    today = local_date(clock())
    extend_form = extend_form or ExtendForm(formdata=None, next=request.args.get("next", ""))
    waive_form = waive_form or WaiveForm(formdata=None, next=request.args.get("next", ""))
    # The exams of the round this assignment is fulfilled by (none before enrolment).
    exams = grants = []
    if assignment.enrollment_id is not None:
        exams = exam_standings(db.session, enrollment_id=assignment.enrollment_id,
                               version_id=assignment.version_id)
        grants = grants_of(db.session, enrollment_id=assignment.enrollment_id)
    return render_template(
        "compliance/assignment.html", a=assignment, history=history, today=today,
        days_left=_days_left(load_calendar(db.session), assignment, today),
        extend_form=extend_form, waive_form=waive_form, exams=exams, grants=grants,
        grant_form=grant_form, grant_form_class=GrantAttemptsForm,
        live=assignment.status in LIVE_STATUSES), status


@bp.get("/compliance/assignments/<int:assignment_id>")
@roles_required(*HR_ROLES)
def assignment(assignment_id: int):
    return _assignment_page(_assignment_or_404(assignment_id))


def _back(next_url: str | None, assignment_id: int) -> str:
    """Back to the list the action came from (only a local assignment-list URL)."""
    base = url_for(".assignments")
    if next_url and next_url.startswith(base) and not next_url.startswith("//"):
        return next_url
    return url_for(".assignment", assignment_id=assignment_id)


@bp.post("/compliance/assignments/<int:assignment_id>/extend")
@roles_required(*HR_ROLES)
def assignment_extend(assignment_id: int):
    item = _assignment_or_404(assignment_id)
    form = ExtendForm()
    status = 422
    if form.validate_on_submit():
        saved, status = save_or_show(form, lambda: extend(
            db.session, item, new_due_date=form.new_due_date.data, reason=form.reason.data,
            actor_id=current_user.id, calendar=load_calendar(db.session), now=clock()))
        if saved is not None:
            flash(_("Due date moved to %(date)s.", date=item.due_date.isoformat()), "success")
            return redirect(_back(form.next.data, item.id))
    return _assignment_page(_assignment_or_404(assignment_id), extend_form=form, status=status)


@bp.post("/compliance/assignments/<int:assignment_id>/waive")
@roles_required(*HR_ROLES)
def assignment_waive(assignment_id: int):
    item = _assignment_or_404(assignment_id)
    form = WaiveForm()
    status = 422
    if form.validate_on_submit():
        saved, status = save_or_show(form, lambda: waive(
            db.session, item, reason=form.reason.data, actor_id=current_user.id, now=clock()))
        if saved is not None:
            flash(_("Assignment waived; it stays on record."), "success")
            return redirect(_back(form.next.data, item.id))
    return _assignment_page(_assignment_or_404(assignment_id), waive_form=form, status=status)


@bp.post("/compliance/assignments/<int:assignment_id>/grant-attempts")
@roles_required(*HR_ROLES)
def assignment_grant_attempts(assignment_id: int):
    """Extra attempts at one exam of the assignment's course version (another version's
    exam: 404) for the round the assignment is fulfilled by."""
    item = _assignment_or_404(assignment_id)
    form = GrantAttemptsForm()
    exam_id = db.session.scalar(
        select(Exam.id).join(Lesson, Lesson.id == Exam.lesson_id)
        .where(Exam.id == form.exam_id.data, Lesson.version_id == item.version_id)
    ) if isinstance(form.exam_id.data, int) else None
    if exam_id is None:
        abort(404)
    status = 422
    if form.validate_on_submit():
        def grant():
            if item.status not in LIVE_STATUSES or item.enrollment_id is None:
                raise GrantRefused.one(_l(
                    "Extra attempts are granted only for an open or suspended assignment "
                    "whose learner is enrolled; this one is %(status)s.",
                    status=assignment_status_label(item.status)))
            return grant_attempts(db.session, enrollment_id=item.enrollment_id,
                                  exam_id=exam_id, extra=form.extra.data,
                                  reason=form.reason.data, actor_id=current_user.id,
                                  now=clock())

        saved, status = save_or_show(form, grant)
        if saved is not None:
            flash(_("%(n)d extra attempts granted; the learner can now take the exam "
                    "%(allowed)d times in all.", n=saved.extra, allowed=saved.allowed),
                  "success")
            return redirect(url_for(".assignment", assignment_id=item.id) + "#exams")
    return _assignment_page(_assignment_or_404(assignment_id), grant_form=form, status=status)


@bp.route("/compliance/assign", methods=["GET", "POST"])
@roles_required(*HR_ROLES)
def assign():
    form = AssignForm()
    form.course_id.choices = _course_choices(_("— choose —"))
    if request.method == "GET" and request.args.get("course_id", "").isdigit():
        form.course_id.data = int(request.args["course_id"])
    report, status = None, 200
    if form.validate_on_submit():
        report, status = save_or_show(form, lambda: assign_by_hand(
            db.session, actor_id=current_user.id, course_id=form.course_id.data,
            employee_nos=parse_employee_nos(form.employee_nos.data),
            due_date=form.due_date.data, due_working_days=form.due_working_days.data,
            reason=form.reason.data or "", calendar=load_calendar(db.session), now=clock()))
    elif request.method == "POST":
        status = 422
    return render_template("compliance/assign.html", form=form, report=report), status
