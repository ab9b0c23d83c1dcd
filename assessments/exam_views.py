"""The learner's exam pages: the exam lesson's intro (rules, earlier attempts), starting
an attempt, the attempt page with its countdown, autosave (JSON, for exam.js), submitting
and the result.

The browser only ever gets ``scoring.learner_view`` of an attempt (texts, no ids, no key)
and answers with served option indices; the key and explanations reach a result page
only when ``exam_taking.key_visible`` allows. The server's clock decides what is late.
A lesson of a version the user is not enrolled on, or another user's attempt, answers
404 whoever asks.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from werkzeug.datastructures import MultiDict

from assessments import exam_taking, scoring
from assessments.exam_taking import AttemptRefused
from assessments.exams import Exam, ExamAttempt
from courses.enrolment import blocking_lesson
from courses.models import Enrollment, Lesson, current_round
from lms.auth.permissions import roles_required
from lms.extensions import db
from lms.people.models import ROLES

bp = Blueprint("exams", __name__)

# More values than this for one question is a forged request, not a learner.
MAX_CHOICES = 16


class ExamActionForm(FlaskForm):
    """CSRF only (start, submit)."""


# --- access -------------------------------------------------------------------------------


def _my_exam_lesson(lesson_id: int) -> tuple[Lesson, Exam, int]:
    """The exam lesson, its exam and the current user's current enrolment (round) on its
    version; 404 when the user is not enrolled."""
    row = db.session.execute(
        select(Lesson, Exam, Enrollment.id)
        .join(Enrollment, Enrollment.version_id == Lesson.version_id)
        .join(Exam, Exam.lesson_id == Lesson.id)
        .where(Lesson.id == lesson_id, Enrollment.user_id == current_user.id, current_round(),
               Lesson.kind == "exam")
    ).first()
    if row is None:
        abort(404)
    return row[0], row[1], row[2]


def _my_attempt(attempt_id: int) -> ExamAttempt:
    attempt = db.session.get(ExamAttempt, attempt_id)
    if attempt is None or attempt.user_id != current_user.id:
        abort(404)
    return attempt


def _blocked(lesson: Lesson, enrollment_id: int):
    """A redirect to the course page naming the lesson to finish first, or None."""
    blocker = blocking_lesson(db.session, enrollment_id, lesson)
    if blocker is None:
        return None
    flash(_("Complete “%(title)s” first: lessons are taken in order.", title=blocker.title),
          "error")
    return redirect(url_for("learning.course", version_id=lesson.version_id))


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _remaining(attempt: ExamAttempt, now: datetime) -> int:
    return max(0, int((attempt.deadline_at - now).total_seconds()))


# --- the intro page and starting ----------------------------------------------------------


@bp.get("/exams/lessons/<int:lesson_id>")
@roles_required(*ROLES)
def lesson(lesson_id: int):
    lesson, exam, enrollment_id = _my_exam_lesson(lesson_id)
    blocked = _blocked(lesson, enrollment_id)
    if blocked is not None:
        return blocked
    # An attempt whose time ran out while the learner was away is scored now, so the
    # page shows it with its result rather than as still running.
    exam_taking.close_expired(db.session, user_id=current_user.id, exam_id=exam.id)
    db.session.commit()
    state = exam_taking.exam_state(db.session, enrollment_id=enrollment_id, exam=exam)
    now = exam_taking.clock()
    question_count = (state.open_attempt.question_count if state.open_attempt
                      else _planned_questions(exam))
    return render_template(
        "assessments/exams/take_intro.html", lesson=lesson, exam=exam, state=state,
        course=lesson.version.course, version=lesson.version, question_count=question_count,
        remaining=_remaining(state.open_attempt, now) if state.open_attempt else None,
        next_lesson=_next_lesson(lesson) if state.passed else None, form=ExamActionForm())


def _planned_questions(exam: Exam) -> int:
    """How many questions an attempt serves (from the frozen pool and the selection)."""
    if exam.selection == "random":
        return sum(int(n) for n in json.loads(exam.per_topic or "{}").values())
    return len(json.loads(exam.pool or "[]"))


def _next_lesson(lesson: Lesson) -> Lesson | None:
    return db.session.scalar(
        select(Lesson).where(Lesson.version_id == lesson.version_id,
                             Lesson.position > lesson.position)
        .order_by(Lesson.position).limit(1))


def _refusal_message(code: str, allowed: int) -> str:
    """``allowed``: the exam's attempts plus those HR granted this learner."""
    if code == "passed":
        return _("You have passed this exam already.")
    if code == "no_attempts":
        return _("You have used all %(n)d attempts of this exam. Contact HR if you need "
                 "another attempt.", n=allowed)
    return _("This exam is not open yet. Try again later or contact HR.")


@bp.post("/exams/lessons/<int:lesson_id>/start")
@roles_required(*ROLES)
def start(lesson_id: int):
    lesson, exam, enrollment_id = _my_exam_lesson(lesson_id)
    if not ExamActionForm().validate_on_submit():
        abort(400)
    try:
        attempt = exam_taking.start_attempt(
            db.session, user=current_user._get_current_object(), lesson=lesson,
            ip=request.remote_addr, user_agent=request.user_agent.string)
    except AttemptRefused as exc:
        # Only the closing of an expired attempt may have been written: keep it.
        db.session.commit()
        if exc.code == "locked":
            blocker = blocking_lesson(db.session, enrollment_id, lesson)
            return render_template("assessments/exams/refused.html", lesson=lesson,
                                   course=lesson.version.course, blocker=blocker), 403
        allowed = exam_taking.exam_state(db.session, enrollment_id=enrollment_id,
                                         exam=exam).allowed
        flash(_refusal_message(exc.code, allowed), "error")
        return redirect(url_for(".lesson", lesson_id=lesson.id))
    db.session.commit()
    return redirect(url_for(".attempt", attempt_id=attempt.id))


# --- the attempt --------------------------------------------------------------------------


@bp.get("/exams/attempts/<int:attempt_id>")
@roles_required(*ROLES)
def attempt(attempt_id: int):
    attempt = _my_attempt(attempt_id)
    if attempt.submitted_at is not None:
        return redirect(url_for(".result", attempt_id=attempt.id))
    now = exam_taking.clock()
    if not exam_taking.is_open(attempt, now):  # time ran out: scored on what was saved
        exam_taking.submit(db.session, attempt=attempt, now=now)
        db.session.commit()
        return redirect(url_for(".result", attempt_id=attempt.id))
    lesson = db.session.get(Lesson, attempt.lesson_id)
    questions = scoring.learner_view(exam_taking.served_of(attempt))
    saved = exam_taking.attempt_answers(db.session, attempt)
    return render_template(
        "assessments/exams/attempt.html", attempt=attempt, lesson=lesson,
        course=lesson.version.course, questions=questions, saved=saved,
        deadline_iso=_iso(attempt.deadline_at), now_iso=_iso(now),
        remaining=_remaining(attempt, now), form=ExamActionForm())


def _parse_choice(values: list[str]) -> list[int] | None:
    if len(values) > MAX_CHOICES:
        return None
    try:
        return [int(v) for v in values]
    except ValueError:
        return None


def _json_error(code: str, status: int):
    return jsonify(error=code), status


@bp.post("/exams/attempts/<int:attempt_id>/answer")
@roles_required(*ROLES)
def answer(attempt_id: int):
    """Autosave one answer (exam.js). CSRF is checked by CSRFProtect (form field or the
    X-CSRFToken header)."""
    attempt = _my_attempt(attempt_id)
    position = request.form.get("position", "")
    indices = _parse_choice(request.form.getlist("choice"))
    if not position.isdigit() or indices is None:
        return _json_error("bad_answer", 400)
    try:
        exam_taking.save_answer(db.session, attempt=attempt, position=int(position),
                                indices=indices)
        db.session.commit()
    except AttemptRefused as exc:
        db.session.rollback()
        return _json_error(exc.code, 409 if exc.code == "closed" else 400)
    except DBAPIError:  # submitted meanwhile: the database refuses answers to it
        db.session.rollback()
        return _json_error("closed", 409)
    return jsonify(saved=True, remaining=_remaining(attempt, exam_taking.clock()))


def _posted_answers(form: MultiDict, count: int) -> dict[int, list[int]] | None:
    """The answers of a posted attempt form: ``q<position>`` (repeated for multiple
    choice); ``shown`` lists the positions the page had, so a question left blank there
    clears its saved answer. None when anything is malformed."""
    answers: dict[int, list[int]] = {}
    for value in form.getlist("shown"):
        if not value.isdigit():
            return None
        answers[int(value)] = []
    for key in form:
        if not key.startswith("q"):
            continue
        if not key[1:].isdigit():
            return None
        indices = _parse_choice(form.getlist(key))
        if indices is None:
            return None
        answers[int(key[1:])] = indices
    if any(not 1 <= position <= count for position in answers):
        return None
    return answers


@bp.post("/exams/attempts/<int:attempt_id>/submit")
@roles_required(*ROLES)
def submit(attempt_id: int):
    attempt = _my_attempt(attempt_id)
    if not ExamActionForm().validate_on_submit():
        abort(400)
    now = exam_taking.clock()
    if exam_taking.is_open(attempt, now):
        # Late posts (after the deadline and grace) are ignored: scored on what was saved.
        answers = _posted_answers(request.form, attempt.question_count)
        if answers is None:
            abort(400)
        saved = exam_taking.attempt_answers(db.session, attempt)
        try:
            for position, indices in sorted(answers.items()):
                if sorted(set(indices)) == saved.get(position, []):
                    continue  # unchanged (or still unanswered): nothing to write
                exam_taking.save_answer(db.session, attempt=attempt, position=position,
                                        indices=indices)
        except AttemptRefused as exc:
            db.session.rollback()
            if exc.code != "closed":
                abort(400)
        except DBAPIError:  # submitted by a concurrent request
            db.session.rollback()
    exam_taking.submit(db.session, attempt=attempt)
    db.session.commit()
    return redirect(url_for(".result", attempt_id=attempt.id))


# --- the result ---------------------------------------------------------------------------


def _result_rows(served: list[dict[str, Any]], answers: dict[int, list[int]],
                 show_key: bool) -> list[dict[str, Any]]:
    """What the result page shows per question: always the learner's own choices; the
    key, the explanation and right/wrong only when ``show_key``."""
    rows = []
    for question in served:
        chosen = set(answers.get(question["position"], []))
        row: dict[str, Any] = {
            "position": question["position"], "kind": question["kind"],
            "text": question["text"],
            "options": [{"text": o["text"], "chosen": i in chosen}
                        for i, o in enumerate(question["options"])],
        }
        if show_key:
            key = [i for i, o in enumerate(question["options"]) if o["correct"]]
            for option, served_option in zip(row["options"], question["options"],
                                             strict=True):
                option["correct"] = bool(served_option["correct"])
            row["explanation"] = question.get("explanation", "")
            row["right"] = sorted(chosen) == key
        rows.append(row)
    return rows


@bp.get("/exams/attempts/<int:attempt_id>/result")
@roles_required(*ROLES)
def result(attempt_id: int):
    attempt = _my_attempt(attempt_id)
    if attempt.submitted_at is None:
        return redirect(url_for(".attempt", attempt_id=attempt.id))
    exam = db.session.get(Exam, attempt.exam_id)
    lesson = db.session.get(Lesson, attempt.lesson_id)
    state = exam_taking.exam_state(db.session, enrollment_id=attempt.enrollment_id, exam=exam)
    show_key = exam_taking.key_visible(state, attempt)
    rows = _result_rows(exam_taking.served_of(attempt),
                        exam_taking.attempt_answers(db.session, attempt), show_key)
    return render_template(
        "assessments/exams/result.html", attempt=attempt, exam=exam, lesson=lesson,
        course=lesson.version.course, state=state, show_key=show_key, rows=rows,
        next_lesson=_next_lesson(lesson) if state.passed else None)
