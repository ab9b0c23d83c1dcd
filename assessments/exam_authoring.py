"""Exam lessons on draft course versions: their settings, and what happens to them when
the version is copied, published or the lesson deleted (registered as the "exam" kind's
hooks in courses.authoring, which knows nothing of exams).

Publishing freezes the exam: the questions it may draw are copied from the bank into
``Exam.pool`` with their SHA-256, so later edits of the bank change nothing that
learners are served, and the course version's content hash pins that pool. Nothing
here commits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from assessments.exams import (
    MAX_ATTEMPTS_LIMIT,
    MAX_TIME_LIMIT_MINUTES,
    REVIEW_MODES,
    SELECTIONS,
    Exam,
    Question,
    QuestionBank,
)
from assessments.scoring import sha256_json
from courses.authoring import (
    LESSON_KIND_HOOKS,
    AuthoringError,
    LessonKindHooks,
    _check_title,
    _next_position,
    _require_draft,
)
from courses.models import RISK_TOPICS, CourseVersion, Lesson
from lms.dbtypes import utcnow
from lms.field_errors import ErrorCollector

__all__ = [
    "ExamSettings",
    "add_exam_lesson",
    "available_by_topic",
    "exam_of",
    "exam_problems",
    "update_exam_lesson",
]

MAX_QUESTIONS = 200


@dataclass(frozen=True)
class ExamSettings:
    """What a trainer chooses for an exam lesson (validated by ``_check``)."""

    bank_id: int | None
    selection: str
    fixed_question_ids: tuple[int, ...] = ()
    per_topic: tuple[tuple[str, int], ...] = ()  # (topic, count), counts > 0
    pass_score: int = 80
    max_attempts: int = 3
    time_limit_minutes: int = 20
    review: str = "score"
    shuffle_options: bool = True


def _Errors() -> ErrorCollector:
    return ErrorCollector(AuthoringError)


def exam_of(session: Session, lesson: Lesson) -> Exam | None:
    return session.scalar(select(Exam).where(Exam.lesson_id == lesson.id))


def _active_questions(session: Session, bank_id: int):
    return (select(Question).where(Question.bank_id == bank_id, Question.archived_at.is_(None)))


def available_by_topic(session: Session, bank_id: int) -> dict[str, int]:
    """Active questions of a bank per risk topic (what a random draw can use)."""
    rows = session.execute(
        select(Question.topic, func.count()).where(Question.bank_id == bank_id,
                                                   Question.archived_at.is_(None))
        .group_by(Question.topic)).all()
    return {topic: count for topic, count in rows}


def _check(session: Session, settings: ExamSettings, errors: ErrorCollector) -> None:
    bank = session.get(QuestionBank, settings.bank_id) if settings.bank_id else None
    if bank is None:
        errors.add("bank_id", _l("Choose a question bank."))
    if settings.selection not in SELECTIONS:
        errors.add("selection", _l("Choose how questions are selected."))
    if not 1 <= settings.pass_score <= 100:
        errors.add("pass_score", _l("Enter a pass score from 1 to 100."))
    if not 1 <= settings.max_attempts <= MAX_ATTEMPTS_LIMIT:
        errors.add("max_attempts", _l("Enter a number of attempts from 1 to %(n)d.",
                                      n=MAX_ATTEMPTS_LIMIT))
    if not 1 <= settings.time_limit_minutes <= MAX_TIME_LIMIT_MINUTES:
        errors.add("time_limit_minutes", _l("Enter a time limit from 1 to %(n)d minutes.",
                                            n=MAX_TIME_LIMIT_MINUTES))
    if settings.review not in REVIEW_MODES:
        errors.add("review", _l("Choose what learners see after submitting."))
    if bank is None or settings.selection not in SELECTIONS:
        return
    if settings.selection == "fixed":
        ids = list(settings.fixed_question_ids)
        if not ids:
            errors.add("fixed_question_ids", _l("Choose at least one question."))
        elif len(ids) > MAX_QUESTIONS:
            errors.add("fixed_question_ids", _l("Choose at most %(n)d questions.",
                                                n=MAX_QUESTIONS))
        elif len(set(ids)) != len(ids):
            errors.add("fixed_question_ids", _l("Each question can be chosen once."))
        else:
            found = set(session.scalars(_active_questions(session, bank.id)
                                        .with_only_columns(Question.id)
                                        .where(Question.id.in_(ids))).all())
            missing = [i for i in ids if i not in found]
            if missing:
                errors.add("fixed_question_ids", _l(
                    "Questions %(ids)s are not active questions of this bank.",
                    ids=", ".join(f"#{i}" for i in missing)))
    else:
        counts = dict(settings.per_topic)
        available = available_by_topic(session, bank.id)
        if not counts or sum(counts.values()) <= 0:
            errors.add("per_topic", _l("Ask for at least one question of some topic."))
        elif sum(counts.values()) > MAX_QUESTIONS:
            errors.add("per_topic", _l("Ask for at most %(n)d questions.", n=MAX_QUESTIONS))
        for topic, count in counts.items():
            if topic not in RISK_TOPICS or count < 0:
                errors.add("per_topic", _l("Unknown topic or negative count."))
            elif count > available.get(topic, 0):
                errors.add("per_topic", _l(
                    "Topic %(topic)s: %(asked)d questions asked, the bank has %(have)d.",
                    topic=topic, asked=count, have=available.get(topic, 0)))


def _apply(exam: Exam, settings: ExamSettings) -> None:
    exam.bank_id = settings.bank_id  # type: ignore[assignment]
    exam.selection = settings.selection
    exam.fixed_question_ids = json.dumps(
        list(settings.fixed_question_ids) if settings.selection == "fixed" else [])
    exam.per_topic = json.dumps(
        {t: c for t, c in settings.per_topic if c > 0} if settings.selection == "random" else {},
        sort_keys=True)
    exam.pass_score = settings.pass_score
    exam.max_attempts = settings.max_attempts
    exam.time_limit_minutes = settings.time_limit_minutes
    exam.review = settings.review
    exam.shuffle_options = settings.shuffle_options


def add_exam_lesson(session: Session, version: CourseVersion, *, title: str,
                    settings: ExamSettings) -> Lesson:
    """An exam lesson at the end of a DRAFT version."""
    _require_draft(session, version)
    errors = _Errors()
    title = _check_title(errors, title)
    _check(session, settings, errors)
    errors.raise_if_any()
    lesson = Lesson(version=version, position=_next_position(session, version), kind="exam",
                    title=title)
    session.add(lesson)
    session.flush()
    exam = Exam(lesson_id=lesson.id)
    _apply(exam, settings)
    session.add(exam)
    session.flush()
    return lesson


def update_exam_lesson(session: Session, lesson: Lesson, *, title: str,
                       settings: ExamSettings) -> None:
    _require_draft(session, lesson.version)
    exam = exam_of(session, lesson)
    errors = _Errors()
    title = _check_title(errors, title)
    _check(session, settings, errors)
    errors.raise_if_any()
    lesson.title = title
    if exam is None:  # pragma: no cover - every exam lesson is created with its exam
        exam = Exam(lesson_id=lesson.id)
        session.add(exam)
    _apply(exam, settings)
    session.flush()


def settings_of(exam: Exam) -> ExamSettings:
    return ExamSettings(
        bank_id=exam.bank_id, selection=exam.selection,
        fixed_question_ids=tuple(json.loads(exam.fixed_question_ids or "[]")),
        per_topic=tuple(sorted(json.loads(exam.per_topic or "{}").items())),
        pass_score=exam.pass_score, max_attempts=exam.max_attempts,
        time_limit_minutes=exam.time_limit_minutes, review=exam.review,
        shuffle_options=exam.shuffle_options)


# --- hooks for courses.authoring ------------------------------------------------------


def exam_problems(session: Session, lesson: Lesson) -> list[Any]:
    """Why this exam lesson cannot be published as it is (the bank may have changed since
    its settings were saved: archived questions, fewer per topic)."""
    exam = exam_of(session, lesson)
    if exam is None:
        return [_l("Lesson %(pos)d “%(title)s” is an exam without settings.",
                   pos=lesson.position, title=lesson.title)]
    errors = _Errors()
    _check(session, settings_of(exam), errors)
    return [_l("Lesson %(pos)d “%(title)s”: %(problem)s", pos=lesson.position,
               title=lesson.title, problem=message)
            for messages in errors.values() for message in messages]


def _pool(session: Session, exam: Exam) -> list[dict[str, Any]]:
    stmt = _active_questions(session, exam.bank_id).options(selectinload(Question.options))
    if exam.selection == "fixed":
        ids = json.loads(exam.fixed_question_ids)
        by_id = {q.id: q for q in session.scalars(stmt.where(Question.id.in_(ids))).all()}
        questions = [by_id[i] for i in ids]
    else:
        topics = sorted(json.loads(exam.per_topic))
        questions = list(session.scalars(stmt.where(Question.topic.in_(topics))
                                         .order_by(Question.id)).all())
    return [{"id": q.id, "kind": q.kind, "topic": q.topic, "text": q.text,
             "explanation": q.explanation,
             "options": [{"id": o.id, "text": o.text, "correct": o.is_correct}
                         for o in q.options]}
            for q in questions]


def freeze_exam(session: Session, lesson: Lesson) -> dict[str, Any]:
    """Copy the pool into the exam row, mark it frozen and return what the course
    version's content hash pins (settings and the pool's SHA-256)."""
    exam = exam_of(session, lesson)
    assert exam is not None
    pool = _pool(session, exam)
    exam.pool = json.dumps(pool, ensure_ascii=False)
    exam.pool_sha256 = sha256_json(pool)
    exam.frozen_at = utcnow()
    session.flush()
    return pinned_content(exam)


def pinned_content(exam: Exam) -> dict[str, Any]:
    """What a course version's content hash pins of its exam: the settings and the
    frozen pool's SHA-256 (recomputable from the stored row at any time)."""
    return {
        "bank_id": exam.bank_id,
        "selection": exam.selection,
        "per_topic": json.loads(exam.per_topic or "{}"),
        "questions_in_pool": len(json.loads(exam.pool or "[]")),
        "pool_sha256": exam.pool_sha256,
        "pass_score": exam.pass_score,
        "max_attempts": exam.max_attempts,
        "time_limit_minutes": exam.time_limit_minutes,
        "review": exam.review,
        "shuffle_options": exam.shuffle_options,
    }


def _copy_exam(session: Session, old: Lesson, new: Lesson) -> None:
    """A new draft starts from the previous version's exam settings (not its frozen pool:
    publishing the draft freezes the bank as it is then)."""
    exam = exam_of(session, old)
    if exam is None:
        return
    copy = Exam(lesson_id=new.id)
    _apply(copy, settings_of(exam))
    session.add(copy)
    session.flush()


def _delete_exam(session: Session, lesson: Lesson) -> None:
    exam = exam_of(session, lesson)
    if exam is not None:
        session.delete(exam)
        session.flush()


def _pinned(session: Session, lesson: Lesson) -> dict[str, Any]:
    exam = exam_of(session, lesson)
    return pinned_content(exam) if exam is not None else {}


LESSON_KIND_HOOKS["exam"] = LessonKindHooks(copy=_copy_exam, problems=exam_problems,
                                            freeze=freeze_exam, delete=_delete_exam,
                                            pinned=_pinned)
