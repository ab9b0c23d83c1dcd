"""The learner's pages (My learning, course, lesson player, document reading), the
playback-session and heartbeat endpoints the player calls, HR's manual enrolment and
trainees' self-enrolment.

"My learning" shows due dates when a layer above registers a provider for them (see
``DUE_DATES_EXTENSION``); without one it lists the courses alone.

Every learner page shows only the current user's own enrolment: a course or lesson of a
version the user is not enrolled in answers 404, whoever asks. Any role may learn what
they are enrolled on (HR staff and managers are employees too), so learner pages require
a login with any role; self-enrolment requires the trainee role, manual enrolment HR.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from courses import tracking
from courses.enrolment import (
    EnrolmentError,
    blocking_lesson,
    course_outline,
    department_choices,
    enrol_people,
    learner_courses,
    parse_employee_nos,
    published_versions,
    self_enrol,
    self_enrol_options,
)
from courses.learning_forms import DocumentReadForm, ManualEnrolForm, SelfEnrolForm, parse_beat
from courses.models import Enrollment, Lesson, LessonProgress, current_round
from lms.auth.permissions import HR_ROLES, roles_required
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.people.models import ROLES

bp = Blueprint("learning", __name__)

LEARNER_ROLES = ROLES
SHANGHAI = ZoneInfo("Asia/Shanghai")

# Extension point for due dates: a layer above (lms.compliance) may register a callable
# ``(session, user_id, today) -> {version_id: DueInfo}`` under this key at app creation.
# courses must not import it, so this module only knows the shape below.
DUE_DATES_EXTENSION = "learning.due_dates"


class DueInfo(Protocol):
    """What "My learning" reads of a due date; ``state`` is one of due, overdue,
    suspended, completed-on-time, completed-late."""

    due_date: date
    state: str
    working_days: int | None


DueDates = Callable[[Any, int, date], Mapping[int, DueInfo]]


def today() -> date:
    """The learner's calendar date (Asia/Shanghai); tests monkeypatch it."""
    return utcnow().astimezone(SHANGHAI).date()


def _due_order(info: DueInfo | None) -> tuple:
    """Overdue first (longest overdue on top), then open deadlines soonest first, then
    the rest in their original order (the sort is stable)."""
    if info is not None and info.state == "overdue":
        return (0, info.due_date)
    if info is not None and info.state == "due":
        return (1, info.due_date)
    return (2,)


def _min_read_seconds() -> int:
    return int(current_app.config.get("DOCUMENT_MIN_READ_SECONDS",
                                      tracking.DEFAULT_MIN_READ_SECONDS))


def _client() -> tuple[str | None, str]:
    return request.remote_addr, request.user_agent.string


def _my_lesson(lesson_id: int) -> tuple[Lesson, int]:
    """The lesson and the current user's current enrolment (round) on its version; 404
    when the user is not enrolled."""
    row = db.session.execute(
        select(Lesson, Enrollment.id).join(Enrollment, Enrollment.version_id == Lesson.version_id)
        .where(Lesson.id == lesson_id, Enrollment.user_id == current_user.id, current_round())
    ).first()
    if row is None:
        abort(404)
    return row[0], row[1]


def _progress(lesson: Lesson, enrollment_id: int) -> LessonProgress | None:
    return db.session.execute(
        select(LessonProgress).where(LessonProgress.enrollment_id == enrollment_id,
                                     LessonProgress.lesson_id == lesson.id)
    ).scalar_one_or_none()


# --- My learning and course pages ---------------------------------------------------------


@bp.get("/learning")
@roles_required(*LEARNER_ROLES)
def my_learning():
    rows = learner_courses(db.session, current_user.id)
    provider: DueDates | None = current_app.extensions.get(DUE_DATES_EXTENSION)
    dues = provider(db.session, current_user.id, today()) if provider is not None else {}
    rows.sort(key=lambda row: _due_order(dues.get(row.version_id)))
    options = (self_enrol_options(db.session, current_user.id)
               if current_user.has_role("trainee") else [])
    return render_template("courses/learning/my_learning.html", rows=rows, dues=dues,
                           options=options, form=SelfEnrolForm())


@bp.post("/learning/courses/<int:version_id>/enrol")
@roles_required("trainee")
def enrol_self(version_id: int):
    form = SelfEnrolForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        _enrolment, created = self_enrol(db.session, current_user, version_id)
    except EnrolmentError as exc:
        db.session.rollback()
        flash(str(exc.message), "error")
        return redirect(url_for(".my_learning"))
    db.session.commit()
    if created:
        flash(_("You are enrolled. Start with the first lesson."), "success")
    return redirect(url_for(".course", version_id=version_id))


@bp.get("/learning/courses/<int:version_id>")
@roles_required(*LEARNER_ROLES)
def course(version_id: int):
    outline = course_outline(db.session, current_user.id, version_id)
    if outline is None:
        abort(404)
    enrolment, lessons = outline
    return render_template("courses/learning/course.html", enrolment=enrolment,
                           version=enrolment.version, course=enrolment.version.course,
                           lessons=lessons)


# --- lessons ------------------------------------------------------------------------------


@bp.get("/learning/lessons/<int:lesson_id>")
@roles_required(*LEARNER_ROLES)
def lesson(lesson_id: int):
    lesson, enrollment_id = _my_lesson(lesson_id)
    blocker = blocking_lesson(db.session, enrollment_id, lesson)
    if blocker is not None:
        flash(_("Complete “%(title)s” first: lessons are taken in order.", title=blocker.title),
              "error")
        return redirect(url_for(".course", version_id=lesson.version_id))
    if lesson.kind == "document":
        return _document_page(lesson, enrollment_id)
    if lesson.kind == "policy":  # read and e-signed in the policies module
        return redirect(url_for("policies.lesson", lesson_id=lesson.id))
    if lesson.kind == "exam":  # taken in the exams module
        return redirect(url_for("exams.lesson", lesson_id=lesson.id))
    if lesson.kind != "video" or lesson.media is None:
        abort(404)
    return render_template("courses/learning/player.html", lesson=lesson,
                           version=lesson.version, course=lesson.version.course,
                           progress=_progress(lesson, enrollment_id))


def _document_page(lesson: Lesson, enrollment_id: int, *, token: str | None = None,
                   status: int = 200, error: str | None = None):
    """Render a document lesson. Serving it starts the reading clock (a playback session
    begun on the server) unless it is complete already or this is a refused confirm."""
    progress = _progress(lesson, enrollment_id)
    if token is None and (progress is None or progress.completed_at is None):
        ip, agent = _client()
        token = tracking.start_session(db.session, user_id=current_user.id,
                                       enrollment_id=enrollment_id, lesson=lesson,
                                       ip=ip, user_agent=agent).token
        db.session.commit()
        progress = _progress(lesson, enrollment_id)
    form = DocumentReadForm(formdata=None, session=token)
    return render_template("courses/learning/document.html", lesson=lesson,
                           version=lesson.version, course=lesson.version.course,
                           progress=progress, form=form, min_seconds=_min_read_seconds(),
                           error=error), status


@bp.post("/learning/lessons/<int:lesson_id>/read")
@roles_required(*LEARNER_ROLES)
def document_read(lesson_id: int):
    lesson, enrollment_id = _my_lesson(lesson_id)
    if lesson.kind != "document":
        abort(404)
    if blocking_lesson(db.session, enrollment_id, lesson) is not None:
        abort(403)
    form = DocumentReadForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        tracking.complete_document(db.session, user_id=current_user.id, lesson=lesson,
                                   token=form.session.data, min_seconds=_min_read_seconds())
    except tracking.DocumentRefused as exc:
        db.session.rollback()
        if exc.code == "too_early":
            return _document_page(lesson, enrollment_id, token=form.session.data, status=409,
                                  error=_(
                "Please read the document first: you can confirm in %(n)d seconds.",
                n=exc.remaining))
        flash(_("This document was opened again in another tab or device. Confirm there, "
                "or read it here again."), "error")
        return redirect(url_for(".lesson", lesson_id=lesson.id))
    db.session.commit()
    flash(_("Lesson completed."), "success")
    return redirect(url_for(".course", version_id=lesson.version_id))


@bp.post("/learning/lessons/<int:lesson_id>/session")
@roles_required(*LEARNER_ROLES)
def lesson_session(lesson_id: int):
    """Issue a playback session (JSON) for the player; supersedes the previous one."""
    lesson, enrollment_id = _my_lesson(lesson_id)
    if lesson.kind != "video" or lesson.media is None:
        abort(404)
    if blocking_lesson(db.session, enrollment_id, lesson) is not None:
        return jsonify(error="locked"), 403
    ip, agent = _client()
    try:
        start = tracking.start_session(db.session, user_id=current_user.id,
                                       enrollment_id=enrollment_id, lesson=lesson,
                                       ip=ip, user_agent=agent)
    except tracking.SessionStartTooSoon as exc:
        db.session.rollback()
        resp = jsonify(error="too_soon", retry_after=round(exc.retry_after, 1))
        resp.headers["Retry-After"] = str(max(1, int(exc.retry_after + 0.999)))
        return resp, 429
    db.session.commit()
    return jsonify(start.as_json())


@bp.post("/learning/beat")
def beat():
    """The heartbeat (hot path). Deliberately without Flask-Login's user loading: the
    single read in ``tracking.record_beat`` checks the login session of the cookie (live,
    not revoked, user enabled) together with the playback session, which the server
    issued only to that user for a lesson they are enrolled on and allowed to take.
    CSRF is checked by CSRFProtect like every POST."""
    login_token = session.get("_user_id")
    if not login_token:
        return _json('{"error":"login"}', 401)
    parsed = parse_beat(request.form)
    if parsed is None:
        return _json('{"error":"bad_beat"}', 400)
    result = tracking.record_beat(db.session, login_token=login_token, beat=parsed,
                                  ip=request.remote_addr)
    if result is None:
        db.session.rollback()
        return _json('{"error":"session"}', 403)
    db.session.commit()
    return _json(result.as_json(), 200)


def _json(body: str, status: int) -> Response:
    return Response(body, status=status, mimetype="application/json")


# --- HR: manual enrolment -----------------------------------------------------------------


@bp.route("/learning/enrol", methods=["GET", "POST"])
@roles_required(*HR_ROLES)
def manual_enrol():
    form = ManualEnrolForm()
    form.version_id.choices = [("", _("— choose —"))] + [
        (v.id, f"{c.code} · {c.title_zh} · v{v.number}")
        for v, c in published_versions(db.session)]
    form.department_id.choices = [("", _("— none —")), *department_choices(db.session)]
    if request.method == "GET" and request.args.get("version_id", "").isdigit():
        form.version_id.data = int(request.args["version_id"])
    report = None
    status = 200
    if form.validate_on_submit():
        try:
            report = enrol_people(
                db.session, version_id=form.version_id.data, actor_id=current_user.id,
                department_id=form.department_id.data,
                include_subdepartments=form.include_subdepartments.data,
                employee_nos=parse_employee_nos(form.employee_nos.data))
        except EnrolmentError as exc:
            db.session.rollback()
            getattr(form, exc.field or "employee_nos").errors.append(str(exc.message))
            status = 422
        else:
            db.session.commit()
    elif request.method == "POST":
        status = 422
    return render_template("courses/learning/enrol.html", form=form, report=report), status
