"""Regulation update pages: the dashboard (clocks, on-time rate), the list of all
updates, entering one by hand, and one update's page with its details, its history and
the action forms its state allows.

Trainers and HR act; auditors read. Views parse a form, call one service of
``workflow``/``intake`` through ``save_or_show`` (one commit; a refusal rolls back and
is shown on the form; an update no longer in the expected state answers 409) and
redirect back to the update.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import exists, select

from courses.enrolment import department_choices
from courses.models import Course, CourseVersion
from courses.topics import topic_label
from lms.auth.permissions import roles_required
from lms.compliance.engine import local_date
from lms.compliance.forms import assignment_status_label
from lms.compliance.regulation import dashboard, intake, workflow
from lms.compliance.regulation.clock import read_clock
from lms.compliance.regulation.forms import (
    AudienceForm,
    BriefingForm,
    CloseForm,
    CourseMaterialForm,
    ManualUpdateForm,
    NotRelevantForm,
    PushForm,
    StateFilterForm,
    TriageForm,
)
from lms.compliance.regulation.models import OPEN_STATES, UPDATE_STATES, RegulationUpdate
from lms.compliance.regulation.workflow import WorkflowError, state_label
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.field_errors import save_or_show
from lms.people.models import Position
from lms.workday_overrides import load_calendar
from lms.workdays import UnknownYearError

bp = Blueprint("regulation", __name__)

ACT_ROLES = ("trainer", "hr")
VIEW_ROLES = ("trainer", "hr", "auditor")
T = TypeVar("T")


def clock() -> datetime:
    """The time these pages act at (UTC); tests replace it to stand on a given day."""
    return utcnow()


URGENCY_LABELS = {
    "overdue": _l("Overdue"),
    "soon": _l("Due soon"),
    "ok": _l("On track"),
    "unknown": _l("No calendar for the year"),
}
# existing badge colours of app.css: red, amber, green, neutral
URGENCY_CLASSES = {"overdue": "due-overdue", "soon": "due-suspended",
                   "ok": "due-completed-on-time", "unknown": ""}


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {"state_label": state_label, "topic_label": topic_label,
            "urgency_label": lambda code: str(URGENCY_LABELS.get(code, code)),
            "urgency_class": lambda code: URGENCY_CLASSES.get(code, ""),
            "assignment_status_label": assignment_status_label,
            "can_act": current_user.is_authenticated and current_user.has_role(*ACT_ROLES)}


def _update_or_404(update_id: int) -> RegulationUpdate:
    return db.session.get(RegulationUpdate, update_id) or abort(404)


def _page_arg(name: str = "page") -> int:
    return max(1, request.args.get(name, 1, type=int) or 1)


def _calendar_errors(action: Callable[[], T]) -> Callable[[], T]:
    """Turn a missing holiday calendar into a message on the form (nothing written)."""
    def run() -> T:
        try:
            return action()
        except UnknownYearError as exc:
            raise WorkflowError.one(_(
                "The holiday calendar for %(year)d is not known yet; ask an administrator "
                "to enter it in the work calendar.", year=exc.year)) from exc
    return run


# --- dashboard and lists -----------------------------------------------------------------


@bp.get("/regulation")
@roles_required(*VIEW_ROLES)
def dashboard_page():
    now = clock()
    today = local_date(now)
    open_page = dashboard.open_updates(db.session, today=today,
                                       calendar=load_calendar(db.session), page=_page_arg())
    overall, per_source = dashboard.on_time_rates(db.session, now=now)
    return render_template("regulation/dashboard.html", open_page=open_page, today=today,
                           overall=overall, per_source=per_source,
                           window_days=dashboard.WINDOW_DAYS)


@bp.get("/regulation/updates")
@roles_required(*VIEW_ROLES)
def updates():
    form = StateFilterForm(request.args)
    state = form.state.data if form.state.data in UPDATE_STATES else None
    page = dashboard.updates_page(db.session, state=state, page=_page_arg())
    return render_template("regulation/updates.html", page=page, form=form, state=state,
                           today=local_date(clock()), open_states=OPEN_STATES)


@bp.route("/regulation/updates/new", methods=["GET", "POST"])
@roles_required(*ACT_ROLES)
def update_new():
    form = ManualUpdateForm()
    status = 200
    if form.validate_on_submit():
        now = clock()
        saved, status = save_or_show(form, _calendar_errors(lambda: intake.enter_manually(
            db.session, title=form.title.data, summary=form.summary.data,
            link=form.link.data, published_on=form.published_on.data,
            actor_id=current_user.id, detected_at=now, calendar=load_calendar(db.session),
            deadline_working_days=intake.configured_deadline_days())))
        if saved is not None:
            flash(_("Update entered. Its clock runs until %(day)s.",
                    day=saved.deadline_date.isoformat()), "success")
            return redirect(url_for(".update_page", update_id=saved.id))
    elif request.method == "POST":
        status = 422
    return render_template("regulation/new.html", form=form), status


# --- one update ---------------------------------------------------------------------------


def _position_choices() -> list[tuple[object, str]]:
    rows = db.session.execute(select(Position.id, Position.name, Position.code)
                              .order_by(Position.code)).all()
    return [(pid, f"{name} ({code})") for pid, name, code in rows]


def _with_audience_choices(form: Any) -> Any:
    form.department_ids.choices = department_choices(db.session)
    form.position_ids.choices = _position_choices()
    return form


def _course_choices() -> list[tuple[object, str]]:
    """Courses with a published version (what a push can assign), by code."""
    published = exists().where(CourseVersion.course_id == Course.id,
                               CourseVersion.status == "published")
    rows = db.session.execute(select(Course.id, Course.code, Course.title_zh)
                              .where(published).order_by(Course.code)).all()
    return [("", _("— choose —")), *((cid, f"{code} · {title}") for cid, code, title in rows)]


def _forms_for(row: RegulationUpdate) -> dict[str, Any]:
    """The (unbound) forms the update's state allows."""
    forms: dict[str, Any] = {}
    if row.state == "new":
        triage = _with_audience_choices(TriageForm(formdata=None))
        triage.topic.data = row.topic or ""
        forms["triage"] = triage
        forms["not_relevant"] = NotRelevantForm(formdata=None)
    if row.state in workflow.AUDIENCE_STATES:
        forms["audience"] = _with_audience_choices(
            AudienceForm(formdata=None, obj=workflow.audience_of(db.session, row)))
    if row.state == "triaged":
        briefing = BriefingForm(formdata=None, prefix="briefing")
        briefing.title.data = row.title[:200]
        forms["briefing"] = briefing
        course = CourseMaterialForm(formdata=None, prefix="course")
        course.course_id.choices = _course_choices()
        forms["course"] = course
    if row.state == "material_ready":
        forms["push"] = PushForm(formdata=None)
    if row.state == "pushed":
        forms["close"] = CloseForm(formdata=None)
    return forms


def _render(row: RegulationUpdate, status: int = 200, *, posted: dict[str, Any] | None = None,
            preview: dict[str, int] | None = None):
    """The update's page; ``posted`` replaces a default form by the one just submitted
    (with its values and errors) when it still fits the state."""
    forms = _forms_for(row)
    for name, form in (posted or {}).items():
        if name in forms:
            forms[name] = form
    now = clock()
    today = local_date(now)
    reading = (read_clock(today, row.deadline_date, load_calendar(db.session))
               if row.state in OPEN_STATES else None)
    rule_audience = workflow.audience_of(db.session, row)
    return render_template(
        "regulation/update.html", update=row, forms=forms, reading=reading, today=today,
        history=dashboard.history(db.session, row.id), preview=preview or {},
        counts=workflow.assignment_counts(db.session, row),
        audience_size=(workflow.audience_size(db.session, rule_audience)
                       if rule_audience is not None and row.state in workflow.AUDIENCE_STATES
                       else None),
        show_ledger=current_user.has_role("auditor", "admin"),
        hr=current_user.has_role("hr", "admin")), status


@bp.get("/regulation/updates/<int:update_id>")
@roles_required(*VIEW_ROLES)
def update_page(update_id: int):
    return _render(_update_or_404(update_id))


def _act(row: RegulationUpdate, name: str, form: Any, action: Callable[[], Any],
         success: Callable[[Any], str]):
    """Run one workflow step for a posted form: redirect on success, else the page
    again with the form's errors (422) or the refusal (409)."""
    if not form.validate_on_submit():
        return _render(row, 422, posted={name: form})
    result, status = save_or_show(form, _calendar_errors(action))
    if result is None and status != 200:
        db.session.refresh(row)
        return _render(row, status, posted={name: form})
    flash(success(result), "success")
    return redirect(url_for(".update_page", update_id=row.id))


def _preview(row: RegulationUpdate, name: str, form: Any):
    """"Preview audience": count without saving (the CSRF token is still checked)."""
    return _render(row, posted={name: form},
                   preview={name: workflow.audience_size(db.session, form.to_audience())})


@bp.post("/regulation/updates/<int:update_id>/triage")
@roles_required(*ACT_ROLES)
def triage(update_id: int):
    row = _update_or_404(update_id)
    form = _with_audience_choices(TriageForm())
    if request.form.get("action") == "preview":
        return _preview(row, "triage", form)
    return _act(row, "triage", form, lambda: workflow.triage(
        db.session, row, topic=form.topic.data, audience=form.to_audience(),
        note=form.note.data, actor_id=current_user.id, now=clock()),
        lambda _r: _("Triaged as relevant. Next: prepare the material."))


@bp.post("/regulation/updates/<int:update_id>/not-relevant")
@roles_required(*ACT_ROLES)
def not_relevant(update_id: int):
    row = _update_or_404(update_id)
    form = NotRelevantForm()
    return _act(row, "not_relevant", form, lambda: workflow.mark_not_relevant(
        db.session, row, reason=form.reason.data, actor_id=current_user.id, now=clock()),
        lambda _r: _("Marked as not relevant. The decision and its reason are recorded."))


@bp.post("/regulation/updates/<int:update_id>/audience")
@roles_required(*ACT_ROLES)
def audience(update_id: int):
    row = _update_or_404(update_id)
    form = _with_audience_choices(AudienceForm())
    if request.form.get("action") == "preview":
        return _preview(row, "audience", form)
    return _act(row, "audience", form, lambda: workflow.change_audience(
        db.session, row, audience=form.to_audience(), actor_id=current_user.id, now=clock()),
        lambda changed: _("Audience saved.") if changed else _("Nothing was changed."))


@bp.post("/regulation/updates/<int:update_id>/briefing")
@roles_required(*ACT_ROLES)
def briefing(update_id: int):
    row = _update_or_404(update_id)
    form = BriefingForm(prefix="briefing")
    return _act(row, "briefing", form, lambda: workflow.material_briefing(
        db.session, row, title=form.title.data, body=form.body.data,
        require_signature=bool(form.require_signature.data), actor_id=current_user.id,
        now=clock()),
        lambda version: _("Briefing published as course %(code)s version %(n)d. Next: push "
                          "it.", code=version.course.code, n=version.number))


@bp.post("/regulation/updates/<int:update_id>/course")
@roles_required(*ACT_ROLES)
def course_material(update_id: int):
    row = _update_or_404(update_id)
    form = CourseMaterialForm(prefix="course")
    form.course_id.choices = _course_choices()
    return _act(row, "course", form, lambda: workflow.material_course(
        db.session, row, course_id=form.course_id.data, actor_id=current_user.id,
        now=clock()),
        lambda version: _("Course %(code)s version %(n)d chosen. Next: push it.",
                          code=version.course.code, n=version.number))


@bp.post("/regulation/updates/<int:update_id>/push")
@roles_required(*ACT_ROLES)
def push(update_id: int):
    row = _update_or_404(update_id)
    form = PushForm()
    return _act(row, "push", form, lambda: workflow.push(
        db.session, row, due_working_days=form.due_working_days.data,
        actor_id=current_user.id, now=clock(), calendar=load_calendar(db.session)),
        lambda r: (_("Pushed on time: %(n)d people assigned.", n=r.assigned) if r.on_time
                   else _("Pushed after the deadline: %(n)d people assigned.", n=r.assigned)))


@bp.post("/regulation/updates/<int:update_id>/close")
@roles_required(*ACT_ROLES)
def close(update_id: int):
    row = _update_or_404(update_id)
    form = CloseForm()
    return _act(row, "close", form, lambda: workflow.close(
        db.session, row, note=form.note.data, stop_assigning=bool(form.stop_assigning.data),
        actor_id=current_user.id, now=clock()),
        lambda _r: _("Closed."))
