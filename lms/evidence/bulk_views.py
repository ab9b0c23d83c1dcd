"""Bulk evidence pages: start a department's or a course's export (HR, admins,
auditors), follow its progress (a ``<progress>`` bar fed by a small JSON endpoint;
without JavaScript the page refreshes itself), and download the ZIP.

A job is shown to the person who asked for it and to HR, admins and auditors; anyone
else with access to evidence pages gets a 404 for it, as for an employee they may not
see. The download streams the file from the job's directory.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    send_file,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import SelectField

from courses.enrolment import department_choices
from courses.models import Course
from lms.auth.permissions import roles_required
from lms.dbtypes import utcnow
from lms.evidence.bulk import KIND, BulkScope, BulkScopeError, start_bulk_export
from lms.extensions import db
from lms.field_errors import save_or_show
from lms.jobs import backends
from lms.jobs import store as job_store
from lms.jobs.models import BackgroundJob
from lms.people.models import Department, User

__all__ = ["bp", "bulk_panel"]

bp = Blueprint("evidence_jobs", __name__)

BULK_ROLES = ("hr", "admin", "auditor")  # may start a bulk export and see every job
VIEW_ROLES = ("hr", "admin", "auditor", "manager")  # the evidence pages' readers
RECENT = 20

STATUS_LABELS = {"queued": _l("Waiting"), "running": _l("Running"), "done": _l("Done"),
                 "failed": _l("Failed")}


class BulkForm(FlaskForm):
    department = SelectField(_l("Department (with its sub-departments)"),
                             validate_choice=False)
    course = SelectField(_l("Course (everyone enrolled or assigned)"), validate_choice=False)


def bulk_form() -> BulkForm:
    form = BulkForm()
    form.department.choices = [("", _("— none —")),
                               *[(str(i), label) for i, label in department_choices(db.session)]]
    form.course.choices = [("", _("— none —")), *[
        (str(cid), f"{code} · {title}") for cid, code, title in db.session.execute(
            select(Course.id, Course.code, Course.title_zh).order_by(Course.code))]]
    return form


def recent_jobs(limit: int = RECENT) -> list[tuple[BackgroundJob, str | None]]:
    """The latest bulk exports with who asked for them (one query)."""
    rows = db.session.execute(
        select(BackgroundJob, User.display_name)
        .outerjoin(User, User.id == BackgroundJob.requested_by)
        .where(BackgroundJob.kind == KIND)
        .order_by(BackgroundJob.id.desc()).limit(limit)).all()
    return [(job, name) for job, name in rows]


def bulk_panel() -> dict[str, Any]:
    """What the evidence start page shows of bulk exports (nothing for managers)."""
    if not current_user.has_role(*BULK_ROLES):
        return {"bulk_form": None, "bulk_jobs": []}
    return {"bulk_form": bulk_form(), "bulk_jobs": recent_jobs(5)}


@bp.app_context_processor
def _job_helpers() -> dict[str, Any]:
    return {"job_status_label": lambda code: str(STATUS_LABELS.get(code, code)),
            "job_scope": _scope_of, "job_label": _progress_label}


def _scope_of(job: BackgroundJob) -> BulkScope | None:
    try:
        return BulkScope.from_params(job.parameters)
    except (KeyError, TypeError, ValueError):
        return None


def _progress_label(job: BackgroundJob) -> str:
    if job.status == "queued":
        if job.attempts:
            return _("Waiting to resume (attempt %(n)d was interrupted)", n=job.attempts)
        return _("Waiting for a worker")
    if job.status == "failed":
        return _("Failed")
    if job.status == "done":
        return _("%(n)d of %(total)d employees; the ZIP is ready", n=job.progress_done,
                 total=job.progress_total)
    if job.message == "zip" or (job.progress_total and job.progress_done >= job.progress_total):
        return _("Writing the index and the ZIP")
    label = _("%(n)d of %(total)d employees", n=job.progress_done, total=job.progress_total)
    return f"{label} · {job.message}" if job.message else label


def _selected(form: BulkForm) -> tuple[Department | None, Course | None]:
    """The chosen department and course; an id that names nothing is refused on its
    field (a stale page, or a forged form)."""
    errors: dict[str, list[Any]] = {}
    chosen: list[Any] = []
    for name, model, message in (("department", Department, _l("No such department.")),
                                 ("course", Course, _l("No such course."))):
        raw = (getattr(form, name).data or "").strip()
        row = None
        if raw:
            row = db.session.get(model, int(raw)) if raw.isdigit() else None
            if row is None:
                errors[name] = [message]
        chosen.append(row)
    if errors:
        raise BulkScopeError(errors)
    return chosen[0], chosen[1]


def _bulk_page(form: BulkForm, status: int = 200):
    return render_template("evidence/bulk.html", form=form, jobs=recent_jobs()), status


@bp.get("/evidence/bulk")
@roles_required(*BULK_ROLES)
def bulk():
    return _bulk_page(bulk_form())


@bp.post("/evidence/bulk")
@roles_required(*BULK_ROLES)
def bulk_start():
    form = bulk_form()
    if not form.validate_on_submit():
        return _bulk_page(form, 400)
    by = f"{current_user.display_name} ({current_user.username})"

    def start() -> BackgroundJob:
        department, course = _selected(form)
        return start_bulk_export(db.session, department=department, course=course,
                                 actor=current_user, generated_by=by)

    job, status = save_or_show(form, start)
    if job is None:
        return _bulk_page(form, status)
    try:
        backends.enqueue(current_app._get_current_object(), job.id)  # type: ignore[attr-defined]
    except Exception:
        current_app.logger.exception("bulk export job %s could not be queued", job.id)
        flash(_("The job is saved but the queue cannot be reached; it starts when the "
                "worker is back."), "error")
    return redirect(url_for("evidence_jobs.job_page", job_id=job.id))


@bp.get("/evidence/jobs")
@roles_required(*BULK_ROLES)
def jobs():
    return _bulk_page(bulk_form())


def _job_or_404(job_id: int) -> BackgroundJob:
    job = db.session.get(BackgroundJob, job_id)
    if job is None or job.kind != KIND:
        abort(404)
    if job.requested_by != current_user.id and not current_user.has_role(*BULK_ROLES):
        abort(404)
    return job


def _settings() -> job_store.JobSettings:
    return job_store.JobSettings.from_app(current_app._get_current_object())  # type: ignore[attr-defined]


def _waiting_for_a_worker(job: BackgroundJob) -> bool:
    """Queued, or running with a heartbeat older than the lease (its worker died)."""
    if job.status == "queued":
        return True
    if job.status != "running":
        return False
    return job.heartbeat_at is None or job.heartbeat_at < utcnow() - _settings().lease


def _download_ready(job: BackgroundJob) -> bool:
    if job.status != "done" or not job.result_path:
        return False
    return _result_file(job).is_file()


def _result_file(job: BackgroundJob):
    folder = job_store.job_dir(_settings(), job.id).resolve()
    path = (folder / (job.result_path or "")).resolve()
    if path.parent != folder:
        abort(404)
    return path


@bp.get("/evidence/jobs/<int:job_id>")
@roles_required(*VIEW_ROLES)
def job_page(job_id: int):
    job = _job_or_404(job_id)
    requester = db.session.get(User, job.requested_by) if job.requested_by else None
    if _waiting_for_a_worker(job):
        backends.kick(current_app._get_current_object())  # type: ignore[attr-defined]
    return render_template("evidence/job.html", job=job, scope=_scope_of(job),
                           requester=requester, ready=_download_ready(job),
                           max_attempts=_settings().max_attempts)


@bp.get("/evidence/jobs/<int:job_id>.json")
@roles_required(*VIEW_ROLES)
def job_json(job_id: int):
    job = _job_or_404(job_id)
    if _waiting_for_a_worker(job):
        backends.kick(current_app._get_current_object())  # type: ignore[attr-defined]
    ready = _download_ready(job)
    response = jsonify({
        "id": job.id, "status": job.status, "status_label": str(STATUS_LABELS[job.status]),
        "done": job.progress_done, "total": job.progress_total, "percent": job.percent,
        "label": _progress_label(job), "error": job.error if job.status == "failed" else None,
        "attempts": job.attempts, "finished": job.finished,
        "download_url": url_for("evidence_jobs.download", job_id=job.id) if ready else None,
        "result_bytes": job.result_bytes if ready else None,
        "result_sha256": job.result_sha256 if ready else None,
    })
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/evidence/jobs/<int:job_id>/download")
@roles_required(*VIEW_ROLES)
def download(job_id: int):
    job = _job_or_404(job_id)
    if not _download_ready(job):
        abort(404)
    response = send_file(_result_file(job), mimetype="application/zip", as_attachment=True,
                         download_name=job.result_path, conditional=True, max_age=0)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-SHA256"] = job.result_sha256 or ""
    return response

