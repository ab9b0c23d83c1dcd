"""Question-bank pages for trainers and HR: banks, their questions (add, edit, archive,
restore) and the all-or-nothing CSV/Excel import with its template.

Questions are addressed under their bank where an action changes them from the bank
page; a question id of another bank answers 404 there.
"""

from __future__ import annotations

import posixpath

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
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from werkzeug.exceptions import RequestEntityTooLarge

from assessments import bank_import, banks
from assessments.bank_forms import KIND_LABELS, ActionForm, BankForm, ImportForm, QuestionForm
from assessments.exams import Question, QuestionBank
from courses.models import RISK_TOPICS
from courses.topics import topic_choices, topic_label
from lms.auth.permissions import roles_required
from lms.extensions import db
from lms.field_errors import FieldErrors, save_or_show

bp = Blueprint("banks", __name__)

AUTHOR_ROLES = ("trainer", "hr")
PER_PAGE = 50
MAX_ERRORS_SHOWN = 200
IMPORT_ENDPOINT = "banks.bank_import"


@bp.context_processor
def _labels() -> dict:
    return {"kind_label": lambda kind: str(KIND_LABELS.get(kind, kind))}


def _bank_or_404(bank_id: int) -> QuestionBank:
    return db.session.get(QuestionBank, bank_id) or abort(404)


def _question_or_404(question_id: int, bank_id: int | None = None) -> Question:
    question = db.session.get(Question, question_id)
    if question is None or (bank_id is not None and question.bank_id != bank_id):
        abort(404)
    return question


def _max_upload_mb() -> int:
    return (current_app.config.get("MAX_CONTENT_LENGTH") or 0) // (1024 * 1024)


# --- banks --------------------------------------------------------------------------------


@bp.get("/banks")
@roles_required(*AUTHOR_ROLES)
def bank_list():
    rows = db.session.scalars(select(QuestionBank).order_by(QuestionBank.name)).all()
    return render_template("assessments/banks/list.html", banks=rows,
                           counts=banks.question_counts(db.session))


@bp.route("/banks/new", methods=["GET", "POST"])
@roles_required(*AUTHOR_ROLES)
def bank_new():
    form = BankForm()
    status = 200
    if form.validate_on_submit():
        bank, status = save_or_show(form, lambda: banks.create_bank(
            db.session, name=form.name.data, description=form.description.data,
            actor_id=current_user.id))
        if bank is not None:
            flash(_("Question bank created. Add questions, or import them from a file."),
                  "success")
            return redirect(url_for(".bank_detail", bank_id=bank.id))
    elif request.method == "POST":
        status = 422
    return render_template("assessments/banks/bank_form.html", form=form, bank=None), status


@bp.route("/banks/<int:bank_id>/edit", methods=["GET", "POST"])
@roles_required(*AUTHOR_ROLES)
def bank_edit(bank_id: int):
    bank = _bank_or_404(bank_id)
    form = BankForm(obj=bank) if request.method == "GET" else BankForm()
    status = 200
    if form.validate_on_submit():
        saved, status = save_or_show(form, lambda: banks.update_bank(
            db.session, bank, name=form.name.data, description=form.description.data))
        if saved is not None:
            flash(_("Question bank saved."), "success")
            return redirect(url_for(".bank_detail", bank_id=bank.id))
    elif request.method == "POST":
        status = 422
    return render_template("assessments/banks/bank_form.html", form=form, bank=bank), status


@bp.get("/banks/<int:bank_id>")
@roles_required(*AUTHOR_ROLES)
def bank_detail(bank_id: int):
    bank = _bank_or_404(bank_id)
    topic = request.args.get("topic", "")
    topic = topic if topic in RISK_TOPICS else ""
    stmt = (select(Question).where(Question.bank_id == bank.id)
            .options(selectinload(Question.options)).order_by(Question.id))
    if topic:
        stmt = stmt.where(Question.topic == topic)
    page = db.paginate(stmt.where(Question.archived_at.is_(None)),
                       page=request.args.get("page", 1, type=int), per_page=PER_PAGE,
                       error_out=False)
    archived = db.session.scalars(stmt.where(Question.archived_at.is_not(None))).all()
    active, gone = banks.question_counts(db.session, bank.id).get(bank.id, (0, 0))
    return render_template("assessments/banks/detail.html", bank=bank, page=page,
                           archived=archived, topic=topic, active_count=active,
                           archived_count=gone, topics=topic_choices(_("All topics")),
                           topic_label=topic_label)


# --- questions ----------------------------------------------------------------------------


def _question_page(form: QuestionForm, bank: QuestionBank, question: Question | None,
                   status: int):
    return render_template("assessments/banks/question_form.html", form=form, bank=bank,
                           question=question), status


@bp.route("/banks/<int:bank_id>/questions/new", methods=["GET", "POST"])
@roles_required(*AUTHOR_ROLES)
def question_new(bank_id: int):
    bank = _bank_or_404(bank_id)
    form = QuestionForm()
    status = 200
    if form.validate_on_submit():
        question, status = save_or_show(form, lambda: banks.add_question(
            db.session, bank, form.to_data()))
        if question is not None:
            flash(_("Question added."), "success")
            return redirect(url_for(".bank_detail", bank_id=bank.id))
    elif request.method == "POST":
        status = 422
    return _question_page(form, bank, None, status)


@bp.route("/questions/<int:question_id>/edit", methods=["GET", "POST"])
@roles_required(*AUTHOR_ROLES)
def question_edit(question_id: int):
    question = _question_or_404(question_id)
    form = QuestionForm.for_question(question) if request.method == "GET" else QuestionForm()
    status = 200
    if form.validate_on_submit():
        saved, status = save_or_show(form, lambda: banks.update_question(
            db.session, question, form.to_data()))
        if saved is not None:
            flash(_("Question saved. Exams already published keep the version they "
                    "froze."), "success")
            return redirect(url_for(".bank_detail", bank_id=question.bank_id))
    elif request.method == "POST":
        status = 422
    return _question_page(form, question.bank, question, status)


def _archive_action(bank_id: int, question_id: int, restore: bool):
    question = _question_or_404(question_id, bank_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    action = banks.restore_question if restore else banks.archive_question
    try:
        action(db.session, question)
        db.session.commit()
    except FieldErrors as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        flash(_("Question restored.") if restore else
              _("Question archived. It stays in exams already published but is not drawn "
                "into exams published from now on."), "success")
    return redirect(url_for(".bank_detail", bank_id=bank_id))


@bp.post("/banks/<int:bank_id>/questions/<int:question_id>/archive")
@roles_required(*AUTHOR_ROLES)
def question_archive(bank_id: int, question_id: int):
    return _archive_action(bank_id, question_id, restore=False)


@bp.post("/banks/<int:bank_id>/questions/<int:question_id>/restore")
@roles_required(*AUTHOR_ROLES)
def question_restore(bank_id: int, question_id: int):
    return _archive_action(bank_id, question_id, restore=True)


# --- import -------------------------------------------------------------------------------


def _import_page(bank: QuestionBank, form: ImportForm, *, errors=(), error: str | None = None,
                 status: int = 200, total_errors: int = 0):
    return render_template("assessments/banks/import.html", bank=bank, form=form,
                           errors=errors, error=error, total_errors=total_errors,
                           max_rows=current_app.config["IMPORT_MAX_ROWS"],
                           max_mb=_max_upload_mb(),
                           headers=bank_import.TEMPLATE_HEADERS), status


@bp.route("/banks/<int:bank_id>/import", methods=["GET", "POST"], endpoint="bank_import")
@roles_required(*AUTHOR_ROLES)
def import_upload(bank_id: int):
    bank = _bank_or_404(bank_id)
    form = ImportForm()
    if not form.validate_on_submit():
        return _import_page(bank, form, status=422 if request.method == "POST" else 200)
    upload = form.file.data
    filename = posixpath.basename((upload.filename or "").replace("\\", "/"))
    result = bank_import.parse_questions(
        upload.read(), filename, max_rows=current_app.config["IMPORT_MAX_ROWS"],
        existing_texts=banks.bank_texts(db.session, bank.id).keys())
    if not result.ok:
        return _import_page(bank, form, errors=result.errors[:MAX_ERRORS_SHOWN],
                            total_errors=len(result.errors), status=422)
    count, status = save_or_show(form, lambda: bank_import.import_questions(
        db.session, bank, result.drafts))
    if count is None:
        return _import_page(bank, form, status=status)
    flash(_("Questions imported: %(n)d.", n=count), "success")
    return redirect(url_for(".bank_detail", bank_id=bank.id))


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(_error: RequestEntityTooLarge):
    """An upload over MAX_UPLOAD_MB is refused while the body streams in, before any view
    (and its role check) runs: only authors get the import page back with the limit."""
    bank = None
    if request.endpoint == IMPORT_ENDPOINT and current_user.is_authenticated \
            and current_user.has_role(*AUTHOR_ROLES):
        bank = db.session.get(QuestionBank, (request.view_args or {}).get("bank_id", 0))
    if bank is None:
        return render_template("error.html", code=413), 413
    message = _("The file is larger than %(mb)d MB. Split it into several files.",
                mb=_max_upload_mb())
    return _import_page(bank, ImportForm(formdata=None), error=message, status=413)


@bp.get("/banks/import-template.csv")
@roles_required(*AUTHOR_ROLES)
def import_template():
    return Response(bank_import.template_csv(), mimetype="text/csv", headers={
        "Content-Disposition": "attachment; filename=question-bank-template.csv"})
