"""Trainer pages for exam lessons of a draft course version: add one, edit its title and
settings. Once the version is published the same address shows the frozen settings with
the pool's size and SHA-256 instead of a form (nothing there can change any more).

The page works in two steps without JavaScript: the bank is picked with a GET form
(``?bank=<id>``) that reloads the page, which then lists that bank's active questions
for a fixed selection and, per risk topic, how many a random draw can use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from assessments.exam_authoring import (
    add_exam_lesson,
    available_by_topic,
    exam_of,
    settings_of,
    update_exam_lesson,
)
from assessments.exam_forms import REVIEW_LABELS, SELECTION_LABELS, ExamLessonForm, choices
from assessments.exams import Exam, Question, QuestionBank
from courses.authoring import frozen_message
from courses.models import CourseVersion, Lesson
from courses.topics import topic_label
from lms.auth.permissions import roles_required
from lms.extensions import db
from lms.field_errors import save_or_show

__all__ = ["ExamSummary", "bp", "exam_summaries", "summarize"]

bp = Blueprint("exam_authoring", __name__)

AUTHOR_ROLES = ("trainer",)


@dataclass(frozen=True)
class ExamSummary:
    """What the authoring pages show of an exam lesson's settings (and frozen pool)."""

    bank_id: int
    bank_name: str
    selection: str
    fixed_count: int
    per_topic: tuple[tuple[str, int], ...]
    pass_score: int
    max_attempts: int
    time_limit_minutes: int
    review: str
    shuffle_options: bool
    pool_size: int | None
    pool_sha256: str | None
    frozen_at: datetime | None

    @property
    def random_count(self) -> int:
        return sum(count for _topic, count in self.per_topic)


def summarize(exam: Exam) -> ExamSummary:
    settings = settings_of(exam)
    return ExamSummary(
        bank_id=exam.bank_id, bank_name=exam.bank.name, selection=exam.selection,
        fixed_count=len(settings.fixed_question_ids), per_topic=settings.per_topic,
        pass_score=exam.pass_score, max_attempts=exam.max_attempts,
        time_limit_minutes=exam.time_limit_minutes, review=exam.review,
        shuffle_options=exam.shuffle_options,
        pool_size=None if exam.pool is None else len(json.loads(exam.pool)),
        pool_sha256=exam.pool_sha256, frozen_at=exam.frozen_at)


def exam_summaries(session: Session, lesson_ids: list[int]) -> dict[int, ExamSummary]:
    """Summaries of the exams of these lessons, by lesson id (one query)."""
    if not lesson_ids:
        return {}
    exams = session.scalars(select(Exam).options(joinedload(Exam.bank))
                            .where(Exam.lesson_id.in_(lesson_ids))).all()
    return {exam.lesson_id: summarize(exam) for exam in exams}


@bp.app_template_global()
def exam_review_label(code: str) -> str:
    """What learners see after submitting, in words (template global: the summary macro
    is imported by the course authoring page too)."""
    return str(REVIEW_LABELS.get(code, code))


@bp.app_template_global()
def exam_topic_label(code: str) -> str:
    return topic_label(code)


# --- pages ------------------------------------------------------------------------------


def _bank_choices() -> list:
    banks = db.session.scalars(select(QuestionBank).order_by(QuestionBank.name)).all()
    return choices([("", _("— choose —")), *((bank.id, bank.name) for bank in banks)])


def _new_form() -> ExamLessonForm:
    form = ExamLessonForm()
    form.bank_id.choices = _bank_choices()
    return form


def _picked_bank() -> int | None:
    """The bank chosen on the GET picker (``?bank=<id>``), if any."""
    return request.args.get("bank", type=int)


def _form_page(form: ExamLessonForm, *, version: CourseVersion, lesson: Lesson | None,
               status: int):
    bank = db.session.get(QuestionBank, form.bank_id.data) if form.bank_id.data else None
    questions: list[Question] = []
    available: dict[str, int] = {}
    if bank is not None:
        questions = list(db.session.scalars(
            select(Question).where(Question.bank_id == bank.id, Question.archived_at.is_(None))
            .order_by(Question.id)).all())
        available = available_by_topic(db.session, bank.id)
    active_ids = {q.id for q in questions}
    chosen = [i for i in (form.fixed_question_ids.data or []) if isinstance(i, int)]
    # Chosen earlier but no longer active in this bank: listed so they can be unticked.
    missing = [i for i in chosen if i not in active_ids]
    selection = form.selection.data if form.selection.data in SELECTION_LABELS else "random"
    return render_template(
        "assessments/exams/exam_lesson_form.html", form=form, version=version,
        course=version.course, lesson=lesson, bank=bank, questions=questions,
        chosen=set(chosen), missing=missing, available=available, selection=selection,
        picker_url=request.path), status


@bp.route("/authoring/versions/<int:version_id>/lessons/exam", methods=["GET", "POST"])
@roles_required(*AUTHOR_ROLES)
def exam_lesson_new(version_id: int):
    version = db.session.get(CourseVersion, version_id) or abort(404)
    if request.method == "GET" and version.status != "draft":
        flash(str(frozen_message(version, version.status)), "error")
        return redirect(url_for("authoring.version_detail", version_id=version.id))
    form = _new_form()
    if request.method == "GET":
        form.bank_id.data = _picked_bank()
    status = 200
    if form.validate_on_submit():
        lesson, status = save_or_show(form, lambda: add_exam_lesson(
            db.session, version, title=form.title.data or "", settings=form.to_settings()))
        if lesson is not None:
            flash(_("Lesson %(pos)d “%(title)s” added.", pos=lesson.position,
                    title=lesson.title), "success")
            return redirect(url_for("authoring.version_detail", version_id=version.id,
                                    _anchor=f"lesson-{lesson.id}"))
    elif request.method == "POST":
        status = 422
    return _form_page(form, version=version, lesson=None, status=status)


def _frozen_page(lesson: Lesson, exam: Exam, status: int = 200):
    pool = json.loads(exam.pool or "[]")
    return render_template(
        "assessments/exams/exam_lesson_frozen.html", lesson=lesson, version=lesson.version,
        course=lesson.version.course, summary=summarize(exam), pool=pool), status


@bp.route("/authoring/lessons/<int:lesson_id>/exam", methods=["GET", "POST"])
@roles_required(*AUTHOR_ROLES)
def exam_lesson_edit(lesson_id: int):
    lesson = db.session.get(Lesson, lesson_id, options=[joinedload(Lesson.version)])
    if lesson is None or lesson.kind != "exam":
        abort(404)
    version = lesson.version
    exam = exam_of(db.session, lesson)
    if exam is None:  # pragma: no cover - every exam lesson is created with its exam
        abort(404)
    if version.status != "draft":
        if request.method == "POST":
            flash(str(frozen_message(version, version.status)), "error")
            return _frozen_page(lesson, exam, 409)
        return _frozen_page(lesson, exam)
    form = _new_form()
    if request.method == "GET":
        form.title.data = lesson.title
        form.fill(settings_of(exam))
        picked = _picked_bank()
        if picked is not None and picked != exam.bank_id:
            form.bank_id.data = picked
            form.fixed_question_ids.data = []  # those were questions of the other bank
    status = 200
    if form.validate_on_submit():
        _result, status = save_or_show(form, lambda: update_exam_lesson(
            db.session, lesson, title=form.title.data or "", settings=form.to_settings()))
        if status == 200:
            flash(_("Lesson %(pos)d updated.", pos=lesson.position), "success")
            return redirect(url_for("authoring.version_detail", version_id=version.id,
                                    _anchor=f"lesson-{lesson.id}"))
    elif request.method == "POST":
        status = 422
    return _form_page(form, version=version, lesson=lesson, status=status)
