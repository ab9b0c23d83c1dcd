"""Trainer pages: courses, versions, lessons and video upload; plus the media endpoint
that serves uploaded videos to staff and to enrolled learners (HTTP Range for seeking).

HR and administrators may look at every course page; only trainers change anything.
"""

from __future__ import annotations

import posixpath
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload
from werkzeug.exceptions import RequestEntityTooLarge

from assessments.exam_authoring_views import exam_summaries
from assessments.policies import PolicyVersion
from courses.authoring import (
    AuthoringError,
    CourseInput,
    add_document_lesson,
    add_video_lesson,
    can_view_media,
    create_course,
    delete_lesson,
    draft_of,
    frozen_message,
    lessons_of,
    media_error_message,
    move_lesson,
    new_version,
    publish_version,
    retire_version,
    trainer_users,
    update_course,
    update_draft,
    update_lesson,
    version_status_label,
)
from courses.authoring_forms import (
    ActionForm,
    CourseFilterForm,
    CourseForm,
    DocumentLessonForm,
    DraftForm,
    MoveForm,
    NewVersionForm,
    VideoLessonEditForm,
    VideoUploadForm,
)
from courses.media import MediaError, storage
from courses.models import RISK_TOPICS, Course, CourseVersion, Enrollment, Lesson, MediaAsset
from courses.topics import topic_choices, topic_label
from lms.auth.permissions import roles_required
from lms.extensions import db
from lms.field_errors import show_on_form

bp = Blueprint("authoring", __name__)

VIEW_ROLES = ("trainer", "hr", "admin")
AUTHOR_ROLES = ("trainer",)
PER_PAGE = 50
UPLOAD_ENDPOINT = "authoring.video_lesson_new"
# Room for the other form fields and the multipart framing around the video itself.
MULTIPART_SLACK = 64 * 1024


def _max_video_bytes() -> int:
    return int(current_app.config["MAX_VIDEO_MB"]) * 1024 * 1024


@bp.url_value_preprocessor
def _video_upload_limit(endpoint: str | None, _values: Any) -> None:
    """Let video uploads past the global request cap (MAX_CONTENT_LENGTH), up to
    MAX_VIDEO_MB. Flask-WTF's CSRF check parses the form in a before_request hook, ahead
    of any view; URL value preprocessors run before those hooks, so the raised limit
    already applies to that parse. Werkzeug enforces it while reading the body."""
    if endpoint == UPLOAD_ENDPOINT:
        request.max_content_length = _max_video_bytes() + MULTIPART_SLACK


def _human_size(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _clock(seconds: float | None) -> str:
    """8.0 → "0:08", 3725.4 → "1:02:05"."""
    if seconds is None:
        return ""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {"topic_label": topic_label, "version_status_label": version_status_label,
            "human_size": _human_size, "clock": _clock}


def _wants_json() -> bool:
    """The upload page's script asks for JSON; without JavaScript the form posts normally."""
    return request.headers.get("X-Requested-With") == "XMLHttpRequest"




def _course_or_404(course_id: int) -> Course:
    return db.session.get(Course, course_id, options=[joinedload(Course.owner)]) or abort(404)


def _version_or_404(version_id: int) -> CourseVersion:
    return db.session.get(CourseVersion, version_id,
                          options=[joinedload(CourseVersion.course)]) or abort(404)


def _lesson_or_404(lesson_id: int) -> Lesson:
    return db.session.get(Lesson, lesson_id, options=[joinedload(Lesson.version)]) or abort(404)


def _refused(version: CourseVersion, error: AuthoringError):
    """A change the version's state does not allow: say why on the version page."""
    db.session.rollback()
    for message in error.errors.get("", []):
        flash(str(message), "error")
    return _version_page(version, status=409)


def _draft_or_refuse(version: CourseVersion):
    """None for a draft; otherwise the refusal page (before any input is parsed)."""
    if version.status == "draft":
        return None
    return _refused(version, AuthoringError.one(frozen_message(version, version.status)))


# ---------------------------------------------------------------------------
# Courses
# ---------------------------------------------------------------------------


@bp.get("/authoring/courses")
@roles_required(*VIEW_ROLES)
def courses():
    form = CourseFilterForm(formdata=request.args)
    form.topic.choices = topic_choices(blank=_("All risk topics"))
    form.validate()
    q = form.q.data if not form.q.errors else None
    topic = form.topic.data if form.topic.data in RISK_TOPICS else None

    stmt = select(Course).options(joinedload(Course.owner)).order_by(Course.code)
    if q:
        stmt = stmt.where(or_(Course.code.icontains(q, autoescape=True),
                              Course.title_zh.icontains(q, autoescape=True),
                              Course.title_en.icontains(q, autoescape=True)))
    if topic:
        stmt = stmt.where(Course.risk_topic == topic)
    page = db.paginate(stmt, page=request.args.get("page", 1, type=int), per_page=PER_PAGE,
                       error_out=False)
    # Per course on this page: its newest version, and its newest published one.
    ids = [course.id for course in page.items]
    newest: dict[int, CourseVersion] = {}
    published: dict[int, int] = {}
    if ids:
        for version in db.session.scalars(select(CourseVersion).where(
                CourseVersion.course_id.in_(ids)).order_by(CourseVersion.number)):
            newest[version.course_id] = version
            if version.status == "published":
                published[version.course_id] = version.number
    filters = {k: v for k, v in (("q", q), ("topic", topic)) if v}
    return render_template("courses/authoring/courses.html", form=form, page=page,
                           newest=newest, published=published, filters=filters)


def _course_form(course: Course | None):
    form = CourseForm(obj=course)
    form.risk_topic.choices = topic_choices(blank=_("— choose —"))
    trainers = trainer_users(db.session)
    form.owner_id.choices = [("", _("— none —")),
                             *((u.id, f"{u.display_name} ({u.username})") for u in trainers)]
    if request.method == "GET" and course is None:
        if current_user.has_role("trainer"):
            form.owner_id.data = current_user.id
        form.max_playback_rate.data = 1.0
    if form.validate_on_submit():
        data = CourseInput(
            code=form.code.data, title_zh=form.title_zh.data, title_en=form.title_en.data or "",
            risk_topic=form.risk_topic.data, description=form.description.data or "",
            owner_id=form.owner_id.data, is_optional=form.is_optional.data,
            max_playback_rate=float(form.max_playback_rate.data),
        )
        try:
            if course is None:
                saved = create_course(db.session, data, actor_id=current_user.id)
                changed = True
            else:
                saved, changed = course, update_course(db.session, course, data,
                                                             actor_id=current_user.id)
            db.session.commit()
        except AuthoringError as exc:
            db.session.rollback()
            show_on_form(form, exc)
        except IntegrityError:
            db.session.rollback()
            form.code.errors = [*form.code.errors,
                                _("This code was just taken; choose another.")]
        else:
            if course is None:
                flash(_("Course %(code)s created with an empty draft version 1. Add its "
                        "lessons next.", code=saved.code), "success")
            else:
                flash(_("Course %(code)s updated.", code=saved.code) if changed
                      else _("Nothing was changed."), "success" if changed else "info")
            return redirect(url_for("authoring.course_detail", course_id=saved.id))
    status = 400 if request.method == "POST" else 200
    return render_template("courses/authoring/course_form.html", form=form,
                           course=course), status


@bp.route("/authoring/courses/new", methods=["GET", "POST"])
@roles_required(*AUTHOR_ROLES)
def course_new():
    return _course_form(None)


@bp.route("/authoring/courses/<int:course_id>/edit", methods=["GET", "POST"])
@roles_required(*AUTHOR_ROLES)
def course_edit(course_id: int):
    return _course_form(_course_or_404(course_id))


@bp.get("/authoring/courses/<int:course_id>")
@roles_required(*VIEW_ROLES)
def course_detail(course_id: int):
    course = _course_or_404(course_id)
    versions = db.session.scalars(
        select(CourseVersion).where(CourseVersion.course_id == course.id)
        .order_by(CourseVersion.number.desc())
    ).all()
    counts = dict(db.session.execute(
        select(Lesson.version_id, func.count(Lesson.id))
        .join(CourseVersion, CourseVersion.id == Lesson.version_id)
        .where(CourseVersion.course_id == course.id).group_by(Lesson.version_id)
    ).all())
    enrolled = dict(db.session.execute(
        select(Enrollment.version_id, func.count(Enrollment.id))
        .join(CourseVersion, CourseVersion.id == Enrollment.version_id)
        .where(CourseVersion.course_id == course.id).group_by(Enrollment.version_id)
    ).all())
    return render_template("courses/authoring/course_detail.html", course=course,
                           versions=versions, lesson_counts=counts, enrolled=enrolled,
                           draft=draft_of(db.session, course))


# ---------------------------------------------------------------------------
# Versions
# ---------------------------------------------------------------------------


def _version_page(version: CourseVersion, status: int = 200):
    lessons = lessons_of(db.session, version)
    enrolled = db.session.scalar(select(func.count(Enrollment.id))
                                 .where(Enrollment.version_id == version.id))
    # What policy and exam lessons point at, one query each (not one per lesson).
    policy_ids = {lesson.policy_version_id for lesson in lessons if lesson.policy_version_id}
    policies = {pv.id: pv for pv in db.session.scalars(
        select(PolicyVersion).options(joinedload(PolicyVersion.document))
        .where(PolicyVersion.id.in_(policy_ids)))} if policy_ids else {}
    exams = exam_summaries(db.session, [lesson.id for lesson in lessons
                                        if lesson.kind == "exam"])
    return render_template("courses/authoring/version_detail.html", version=version,
                           course=version.course, lessons=lessons, enrolled=enrolled,
                           policies=policies, exams=exams,
                           action_form=ActionForm(), move_form=MoveForm()), status


@bp.route("/authoring/courses/<int:course_id>/versions/new", methods=["GET", "POST"])
@roles_required(*AUTHOR_ROLES)
def version_new(course_id: int):
    course = _course_or_404(course_id)
    form = NewVersionForm()
    draft = draft_of(db.session, course)
    if form.validate_on_submit():
        try:
            version = new_version(db.session, course, change_note=form.change_note.data,
                                  requires_retraining=form.requires_retraining.data,
                                  actor_id=current_user.id)
            db.session.commit()
        except AuthoringError as exc:
            db.session.rollback()
            show_on_form(form, exc)
        except IntegrityError:
            db.session.rollback()
            flash(_("Someone else created a version of this course at the same moment; "
                    "nothing was saved. Check the course's versions."), "error")
        else:
            flash(_("Draft version %(n)d created from the latest version's lessons.",
                    n=version.number), "success")
            return redirect(url_for("authoring.version_detail", version_id=version.id))
    status = 400 if request.method == "POST" else 200
    return render_template("courses/authoring/version_new.html", form=form, course=course,
                           draft=draft), status


@bp.get("/authoring/versions/<int:version_id>")
@roles_required(*VIEW_ROLES)
def version_detail(version_id: int):
    return _version_page(_version_or_404(version_id))


@bp.route("/authoring/versions/<int:version_id>/edit", methods=["GET", "POST"])
@roles_required(*AUTHOR_ROLES)
def version_edit(version_id: int):
    version = _version_or_404(version_id)
    refusal = _draft_or_refuse(version)
    if refusal is not None:
        return refusal
    form = DraftForm(obj=version)
    if form.validate_on_submit():
        try:
            changed = update_draft(db.session, version, change_note=form.change_note.data or "",
                                   requires_retraining=form.requires_retraining.data)
            db.session.commit()
        except AuthoringError as exc:
            db.session.rollback()
            if "" in exc.errors:
                return _refused(version, exc)
            show_on_form(form, exc)
        else:
            flash(_("Version %(n)d updated.", n=version.number) if changed
                  else _("Nothing was changed."), "success" if changed else "info")
            return redirect(url_for("authoring.version_detail", version_id=version.id))
    status = 400 if request.method == "POST" else 200
    return render_template("courses/authoring/version_edit.html", form=form, version=version,
                           course=version.course), status


@bp.post("/authoring/versions/<int:version_id>/publish")
@roles_required(*AUTHOR_ROLES)
def version_publish(version_id: int):
    version = _version_or_404(version_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        digest = publish_version(db.session, version, actor_id=current_user.id)
        db.session.commit()
    except AuthoringError as exc:
        return _refused(version, exc)
    flash(_("Version %(n)d is published and can no longer be changed. Content fingerprint "
            "(SHA-256): %(hash)s", n=version.number, hash=digest), "success")
    return redirect(url_for("authoring.version_detail", version_id=version.id))


@bp.post("/authoring/versions/<int:version_id>/retire")
@roles_required(*AUTHOR_ROLES)
def version_retire(version_id: int):
    version = _version_or_404(version_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        retire_version(db.session, version, actor_id=current_user.id)
        db.session.commit()
    except AuthoringError as exc:
        return _refused(version, exc)
    flash(_("Version %(n)d is retired: nobody new can enrol in it; existing records keep "
            "pointing at it.", n=version.number), "success")
    return redirect(url_for("authoring.version_detail", version_id=version.id))


# ---------------------------------------------------------------------------
# Lessons of a draft
# ---------------------------------------------------------------------------


@bp.route("/authoring/versions/<int:version_id>/lessons/document", methods=["GET", "POST"])
@roles_required(*AUTHOR_ROLES)
def document_lesson_new(version_id: int):
    version = _version_or_404(version_id)
    refusal = _draft_or_refuse(version)
    if refusal is not None:
        return refusal
    form = DocumentLessonForm()
    if form.validate_on_submit():
        try:
            lesson = add_document_lesson(db.session, version, title=form.title.data,
                                         body=form.body.data)
            db.session.commit()
        except AuthoringError as exc:
            db.session.rollback()
            if "" in exc.errors:
                return _refused(version, exc)
            show_on_form(form, exc)
        except IntegrityError:
            db.session.rollback()
            flash(_("Someone else changed this draft at the same moment; nothing was saved. "
                    "Try again."), "error")
        else:
            flash(_("Lesson %(pos)d “%(title)s” added.", pos=lesson.position,
                    title=lesson.title), "success")
            return redirect(url_for("authoring.version_detail", version_id=version.id))
    status = 400 if request.method == "POST" else 200
    return render_template("courses/authoring/lesson_form.html", form=form, version=version,
                           course=version.course, lesson=None), status


def _upload_page(version: CourseVersion, form: VideoUploadForm, errors: list[str],
                 status: int):
    if _wants_json():
        return jsonify(ok=False, errors=errors), status
    for message in errors:
        flash(message, "error")
    return render_template("courses/authoring/video_upload.html", form=form, version=version,
                           course=version.course,
                           max_mb=current_app.config["MAX_VIDEO_MB"],
                           max_bytes=_max_video_bytes()), status


@bp.errorhandler(RequestEntityTooLarge)
def _request_too_large(_error: RequestEntityTooLarge):
    """A video over the cap is refused while the body streams in, before any view runs."""
    # The role check of the view has not run yet: only trainers see the upload page.
    version = None
    if request.endpoint == UPLOAD_ENDPOINT and current_user.is_authenticated \
            and current_user.has_role(*AUTHOR_ROLES):
        version = db.session.get(CourseVersion, (request.view_args or {}).get("version_id", 0))
    if version is None:
        return render_template("error.html", code=413), 413
    message = str(media_error_message("too_large", max_mb=current_app.config["MAX_VIDEO_MB"]))
    return _upload_page(version, VideoUploadForm(formdata=None), [message], 413)


@bp.route("/authoring/versions/<int:version_id>/lessons/video", methods=["GET", "POST"])
@roles_required(*AUTHOR_ROLES)
def video_lesson_new(version_id: int):
    version = _version_or_404(version_id)
    if version.status != "draft":
        if _wants_json():
            return jsonify(ok=False, errors=[str(frozen_message(version, version.status))]), 409
        return _draft_or_refuse(version)
    form = VideoUploadForm()
    if not form.validate_on_submit():
        if request.method == "GET":
            return _upload_page(version, form, [], 200)
        errors = [str(m) for field in form for m in field.errors]
        return _upload_page(version, form, errors or [_("The upload could not be read.")], 400)

    upload = form.file.data
    # Browsers send a bare name; old Internet Explorer sent a full Windows path.
    filename = posixpath.basename((upload.filename or "").replace("\\", "/")) or "video"
    store = storage()
    try:
        lesson = add_video_lesson(db.session, version, title=form.title.data or "",
                                  stream=upload.stream, filename=filename,
                                  uploaded_by_id=current_user.id,
                                  max_bytes=_max_video_bytes(), store=store)
    except MediaError as exc:
        db.session.rollback()
        code = exc.args[0] if exc.args else ""
        status = 413 if code == "too_large" else 400
        message = media_error_message(code, max_mb=current_app.config["MAX_VIDEO_MB"])
        return _upload_page(version, form, [str(message)], status)
    except AuthoringError as exc:
        db.session.rollback()
        return _upload_page(version, form, [str(m) for ms in exc.errors.values() for m in ms],
                            409 if "" in exc.errors else 400)
    except IntegrityError:
        db.session.rollback()  # the service has removed the stored file
        return _upload_page(version, form, [_("Someone else changed this draft at the same "
                                              "moment; nothing was saved. Try again.")], 409)
    key = lesson.media.storage_key
    try:
        db.session.commit()
    except Exception:
        db.session.rollback()
        store.delete(key)  # nothing half-written: no file without its record
        raise
    media = lesson.media
    flash(_("Video lesson %(pos)d “%(title)s” added: %(duration)s s, %(size)s, SHA-256 "
            "%(sha)s.", pos=lesson.position, title=lesson.title,
            duration=f"{media.duration_seconds:.1f}", size=_human_size(media.size_bytes),
            sha=media.sha256), "success")
    target = url_for("authoring.version_detail", version_id=version.id)
    if _wants_json():
        return jsonify(ok=True, redirect=target, lesson_id=lesson.id,
                       duration=media.duration_seconds, sha256=media.sha256)
    return redirect(target)


@bp.route("/authoring/lessons/<int:lesson_id>/edit", methods=["GET", "POST"])
@roles_required(*AUTHOR_ROLES)
def lesson_edit(lesson_id: int):
    lesson = _lesson_or_404(lesson_id)
    if lesson.kind == "exam":  # its settings have a page of their own
        return redirect(url_for("exam_authoring.exam_lesson_edit", lesson_id=lesson.id))
    version = lesson.version
    refusal = _draft_or_refuse(version)
    if refusal is not None:
        return refusal
    form = (DocumentLessonForm if lesson.kind == "document" else VideoLessonEditForm)(obj=lesson)
    if form.validate_on_submit():
        try:
            body = form.body.data if lesson.kind == "document" else None
            changed = update_lesson(db.session, lesson, title=form.title.data, body=body)
            db.session.commit()
        except AuthoringError as exc:
            db.session.rollback()
            if "" in exc.errors:
                return _refused(version, exc)
            show_on_form(form, exc)
        else:
            flash(_("Lesson %(pos)d updated.", pos=lesson.position) if changed
                  else _("Nothing was changed."), "success" if changed else "info")
            return redirect(url_for("authoring.version_detail", version_id=version.id))
    status = 400 if request.method == "POST" else 200
    return render_template("courses/authoring/lesson_form.html", form=form, version=version,
                           course=version.course, lesson=lesson), status


@bp.post("/authoring/lessons/<int:lesson_id>/move")
@roles_required(*AUTHOR_ROLES)
def lesson_move(lesson_id: int):
    lesson = _lesson_or_404(lesson_id)
    version = lesson.version
    form = MoveForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        move_lesson(db.session, lesson, -1 if form.direction.data == "up" else 1)
        db.session.commit()
    except AuthoringError as exc:
        return _refused(version, exc)
    except IntegrityError:
        db.session.rollback()
        flash(_("Someone else changed this draft at the same moment; nothing was saved. "
                "Try again."), "error")
    return redirect(url_for("authoring.version_detail", version_id=version.id,
                            _anchor=f"lesson-{lesson.id}"))


@bp.post("/authoring/lessons/<int:lesson_id>/delete")
@roles_required(*AUTHOR_ROLES)
def lesson_delete(lesson_id: int):
    lesson = _lesson_or_404(lesson_id)
    version = lesson.version
    if not ActionForm().validate_on_submit():
        abort(400)
    title = lesson.title
    try:
        delete_lesson(db.session, lesson)
        db.session.commit()
    except AuthoringError as exc:
        return _refused(version, exc)
    except IntegrityError:
        db.session.rollback()
        flash(_("Someone else changed this draft at the same moment; nothing was saved. "
                "Try again."), "error")
    else:
        flash(_("Lesson “%(title)s” deleted.", title=title), "success")
    return redirect(url_for("authoring.version_detail", version_id=version.id))


# ---------------------------------------------------------------------------
# Media
# ---------------------------------------------------------------------------


@bp.get("/media/<int:media_id>")
@login_required
def media(media_id: int):
    """The file itself, for staff and for learners enrolled in a version that uses it.
    Others get 404, not 403: the response does not confirm the file exists."""
    asset = db.session.get(MediaAsset, media_id)
    if asset is None or not can_view_media(db.session, current_user, media_id):
        abort(404)
    path = storage().local_path(asset.storage_key)
    if path is None or not path.is_file():
        current_app.logger.error("media %s missing from storage (%s)", asset.id, asset.storage_key)
        abort(404)
    # conditional=True answers Range requests with 206, which the player needs to seek.
    response = send_file(path, mimetype=asset.content_type, conditional=True,
                         etag=asset.sha256, download_name=asset.original_filename)
    response.cache_control.public = False
    response.cache_control.private = True
    return response
