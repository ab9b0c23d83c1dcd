"""Policy pages: documents and versions (trainers and HR), policy lessons on draft course
versions, the learner's reading-and-signing page, the receipt and ``/verify/<code>``.

The signer is always ``current_user``: the sign form has no user field, and any such
field posted is ignored. Learner pages answer 404 for lessons of versions the user is
not enrolled on, whoever asks.
"""

from __future__ import annotations

from io import BytesIO

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.utils import secure_filename

from assessments import signing
from assessments.policies import PolicyDocument, PolicyVersion, Signature
from assessments.policy_forms import (
    PolicyDocumentForm,
    PolicyLessonForm,
    PolicyVersionForm,
    PublishForm,
    SignForm,
)
from courses.enrolment import blocking_lesson
from courses.media import storage
from courses.models import CourseVersion, Enrollment, Lesson, current_round
from lms.auth.permissions import roles_required
from lms.auth.throttle import ThrottlePolicy
from lms.extensions import db
from lms.field_errors import FieldErrors, save_or_show, show_on_form
from lms.people.models import ROLES

bp = Blueprint("policies", __name__)

AUTHOR_ROLES = ("trainer", "hr")
VERIFY_ROLES = ("hr", "auditor", "admin")
MAX_PDF_BYTES = 20 * 1024 * 1024


def _throttle() -> ThrottlePolicy:
    from datetime import timedelta

    cfg = current_app.config
    return ThrottlePolicy(cfg["LOGIN_MAX_FAILURES"], cfg["LOGIN_MAX_FAILURES_PER_IP"],
                          timedelta(minutes=cfg["LOGIN_WINDOW_MINUTES"]))


def _document_or_404(document_id: int) -> PolicyDocument:
    return db.session.get(PolicyDocument, document_id) or abort(404)


def _version_or_404(version_id: int) -> PolicyVersion:
    return db.session.get(PolicyVersion, version_id) or abort(404)


# --- authoring ----------------------------------------------------------------------------


@bp.get("/policies")
@roles_required(*AUTHOR_ROLES)
def documents():
    rows = db.session.scalars(select(PolicyDocument).order_by(PolicyDocument.name)).all()
    return render_template("assessments/documents.html", documents=rows)


@bp.route("/policies/new", methods=["GET", "POST"])
@roles_required(*AUTHOR_ROLES)
def document_new():
    form = PolicyDocumentForm()
    if form.validate_on_submit():
        try:
            document = signing.create_document(
                db.session, name=form.name.data, statement_template=form.statement_template.data,
                min_reading_seconds=form.min_reading_seconds.data, actor_id=current_user.id)
            db.session.commit()
        except FieldErrors as exc:
            db.session.rollback()
            show_on_form(form, exc)
        except IntegrityError:
            db.session.rollback()
            form.name.errors = [*form.name.errors, _("A policy with this name exists already.")]
        else:
            flash(_("Policy created. Add its first version."), "success")
            return redirect(url_for(".document", document_id=document.id))
    status = 422 if request.method == "POST" else 200
    return render_template("assessments/document_form.html", form=form), status


def _document_page(document: PolicyDocument, form: PolicyVersionForm, status: int = 200):
    versions = db.session.scalars(select(PolicyVersion).where(
        PolicyVersion.document_id == document.id).order_by(PolicyVersion.number)).all()
    return render_template("assessments/document.html", document=document, versions=versions,
                           form=form, publish_form=PublishForm()), status


@bp.get("/policies/<int:document_id>")
@roles_required(*AUTHOR_ROLES)
def document(document_id: int):
    return _document_page(_document_or_404(document_id), PolicyVersionForm())


@bp.post("/policies/<int:document_id>/versions")
@roles_required(*AUTHOR_ROLES)
def version_new(document_id: int):
    document = _document_or_404(document_id)
    form = PolicyVersionForm()
    if not form.validate_on_submit():
        return _document_page(document, form, 422)
    upload = form.pdf.data

    def add_version() -> PolicyVersion:
        if upload and getattr(upload, "filename", ""):
            return signing.add_pdf_version(
                db.session, document, stream=upload.stream,
                filename=secure_filename(upload.filename) or "policy.pdf", store=storage(),
                max_bytes=MAX_PDF_BYTES, actor_id=current_user.id)
        return signing.add_text_version(db.session, document, body=form.body.data,
                                        actor_id=current_user.id)

    version, status = save_or_show(form, add_version)
    if version is None:
        return _document_page(document, form, status)
    flash(_("Version %(n)d added as a draft. Check it, then publish it.", n=version.number),
          "success")
    return redirect(url_for(".document", document_id=document.id))


@bp.post("/policies/versions/<int:version_id>/publish")
@roles_required(*AUTHOR_ROLES)
def version_publish(version_id: int):
    version = _version_or_404(version_id)
    if not PublishForm().validate_on_submit():
        abort(400)
    try:
        signing.publish_version(db.session, version, actor_id=current_user.id)
        db.session.commit()
    except FieldErrors as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        flash(_("Version %(n)d published. It can no longer be changed.", n=version.number),
              "success")
    return redirect(url_for(".document", document_id=version.document_id))


@bp.get("/policies/versions/<int:version_id>")
@roles_required(*AUTHOR_ROLES)
def version_view(version_id: int):
    version = _version_or_404(version_id)
    return render_template("assessments/version.html", version=version,
                           document=version.document)


def _may_read(version: PolicyVersion) -> bool:
    """Authors, and learners enrolled on a course with a lesson of this version."""
    if current_user.has_role(*AUTHOR_ROLES):
        return True
    return db.session.scalar(
        select(Lesson.id).join(Enrollment, Enrollment.version_id == Lesson.version_id)
        .where(Lesson.policy_version_id == version.id, Enrollment.user_id == current_user.id)
        .limit(1)) is not None


@bp.get("/policies/versions/<int:version_id>/file")
@roles_required(*ROLES)
def version_file(version_id: int):
    """The stored PDF, exactly the bytes hashed (never the uploader's name on disk)."""
    version = _version_or_404(version_id)
    if version.body_kind != "pdf" or not _may_read(version):
        abort(404)
    data = signing.document_bytes(version, storage())
    return send_file(BytesIO(data), mimetype="application/pdf",
                     download_name=f"policy-{version.document_id}-v{version.number}.pdf",
                     as_attachment=False)


@bp.route("/authoring/versions/<int:version_id>/lessons/policy", methods=["GET", "POST"])
@roles_required("trainer")
def policy_lesson_new(version_id: int):
    course_version = db.session.get(CourseVersion, version_id) or abort(404)
    form = PolicyLessonForm()
    form.policy_version_id.choices = [("", _("— choose —"))] + [
        (v.id, f"《{v.document.name}》 v{v.number} · {v.sha256[:12]}")
        for v in signing.published_versions(db.session)]
    status = 200
    if form.validate_on_submit():
        lesson, status = save_or_show(form, lambda: signing.add_policy_lesson(
            db.session, course_version, title=form.title.data,
            policy_version_id=form.policy_version_id.data))
        if lesson is not None:
            flash(_("Lesson %(pos)d “%(title)s” added.", pos=lesson.position,
                    title=lesson.title), "success")
            return redirect(url_for("authoring.version_detail", version_id=course_version.id))
    elif request.method == "POST":
        status = 422
    return render_template("assessments/policy_lesson_form.html", form=form,
                           version=course_version, course=course_version.course), status


# --- reading and signing ------------------------------------------------------------------


def _my_policy_lesson(lesson_id: int) -> tuple[Lesson, int]:
    """The policy lesson and the current user's current enrolment (round) on its
    version; 404 when the user is not enrolled."""
    row = db.session.execute(
        select(Lesson, Enrollment.id).join(Enrollment, Enrollment.version_id == Lesson.version_id)
        .where(Lesson.id == lesson_id, Enrollment.user_id == current_user.id, current_round(),
               Lesson.kind == "policy")
    ).first()
    if row is None or row[0].policy_version_id is None:
        abort(404)
    return row[0], row[1]


def _sign_page(lesson: Lesson, enrollment_id: int, form: SignForm | None = None, *,
               status: int = 200, error: str | None = None):
    version = db.session.get(PolicyVersion, lesson.policy_version_id)
    document = version.document
    signature = signing.signature_of(db.session, enrollment_id, version.id)
    if signature is None and form is None:
        reading = signing.start_reading(db.session, user_id=current_user.id,
                                        enrollment_id=enrollment_id, lesson=lesson,
                                        ip=request.remote_addr,
                                        user_agent=request.user_agent.string)
        db.session.commit()
        form = SignForm(formdata=None, reading=reading.token)
    statement = signing.render_statement(document.statement_template, name=document.name,
                                         version=version.number)
    paragraphs = [p for p in version.body.split("\n\n") if p.strip()]
    return render_template("assessments/sign.html", lesson=lesson, version=version,
                           document=document, statement=statement, paragraphs=paragraphs,
                           signature=signature, form=form, error=error,
                           has_employee=current_user.employee_id is not None,
                           course=lesson.version.course), status


@bp.get("/policies/lessons/<int:lesson_id>")
@roles_required(*ROLES)
def lesson(lesson_id: int):
    lesson, enrollment_id = _my_policy_lesson(lesson_id)
    blocker = blocking_lesson(db.session, enrollment_id, lesson)
    if blocker is not None:
        flash(_("Complete “%(title)s” first: lessons are taken in order.", title=blocker.title),
              "error")
        return redirect(url_for("learning.course", version_id=lesson.version_id))
    return _sign_page(lesson, enrollment_id)


REFUSALS = {
    "no_employee": (403, lambda r: _("Only employees on record can sign: your account has "
                                     "no employee record. Ask HR.")),
    "stale": (409, lambda r: _("This reading session is not valid any more. The document "
                               "was opened again; read it and sign there.")),
    "too_early": (409, lambda r: _("Please read the document first: you can sign in "
                                   "%(n)d seconds.", n=r)),
    "throttled": (429, lambda r: _("Too many wrong passwords. Try again later.")),
    "wrong_password": (401, lambda r: _("The password is wrong. Nothing was signed.")),
    "wrong_name": (422, lambda r: _("The name you typed does not match your employee "
                                    "record. Nothing was signed.")),
}


@bp.post("/policies/lessons/<int:lesson_id>/sign")
@roles_required(*ROLES)
def sign(lesson_id: int):
    lesson, enrollment_id = _my_policy_lesson(lesson_id)
    if blocking_lesson(db.session, enrollment_id, lesson) is not None:
        abort(403)
    form = SignForm()
    if not form.validate_on_submit():
        return _sign_page(lesson, enrollment_id, form, status=422)
    try:
        signature = signing.sign(
            db.session, user=current_user._get_current_object(), lesson=lesson,
            enrollment_id=enrollment_id,
            reading_token=form.reading.data, typed_name=form.full_name.data,
            password=form.password.data, ip=request.remote_addr,
            user_agent=request.user_agent.string, throttle=_throttle())
        db.session.commit()
    except signing.SignRefused as exc:
        if exc.code == "wrong_password":
            db.session.commit()  # only the login-failure row: signing guesses are throttled
        else:
            db.session.rollback()
        if exc.code == "already_signed":
            flash(_("You have signed this version already. Nothing new was recorded."), "info")
            return redirect(url_for(".lesson", lesson_id=lesson.id))
        if exc.code == "stale":
            flash(REFUSALS["stale"][1](0), "error")
            return redirect(url_for(".lesson", lesson_id=lesson.id))
        status, message = REFUSALS[exc.code]
        form.password.data = ""
        return _sign_page(lesson, enrollment_id, form, status=status, error=message(exc.remaining))
    except IntegrityError:
        db.session.rollback()
        flash(_("You have signed this version already. Nothing new was recorded."), "info")
        return redirect(url_for(".lesson", lesson_id=lesson.id))
    flash(_("Signed. Keep the verification code of your receipt."), "success")
    return redirect(url_for(".receipt", code=signature.verification_code))


def _signature_or_404(code: str) -> Signature:
    signature = signing.find_signature(db.session, code)
    if signature is None:
        abort(404)
    return signature


@bp.get("/policies/receipts/<code>")
@roles_required(*ROLES)
def receipt(code: str):
    signature = _signature_or_404(code)
    if signature.user_id != current_user.id:
        abort(404)
    return render_template("assessments/receipt.html", signature=signature,
                           document=signature.version.document)


@bp.get("/verify/<code>")
@roles_required(*ROLES)
def verify(code: str):
    signature = _signature_or_404(code)
    if signature.user_id != current_user.id and not current_user.has_role(*VERIFY_ROLES):
        abort(403)
    result = signing.verify_signature(db.session, signature, storage())
    return render_template("assessments/verify.html", result=result, signature=signature,
                           document=signature.version.document)


