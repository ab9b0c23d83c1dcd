"""Question banks: the trainer's working material (banks, questions and their options).

A bank stays editable for ever: exams copy the questions they may draw when their course
version is published (``Exam.pool``), so editing, archiving or restoring a question here
changes neither a published exam nor any attempt. Questions are never deleted — old
draft exams may still name them — only archived, which keeps them out of exams published
afterwards.

``check_question`` is pure (no database) so the file importer applies exactly the rules
the form does. Nothing here commits; the view owns the unit of work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from flask_babel import lazy_gettext as _l
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from assessments.exams import MAX_OPTIONS, QUESTION_KINDS, Question, QuestionBank, QuestionOption
from courses.models import RISK_TOPICS
from lms.dbtypes import utcnow
from lms.field_errors import ErrorCollector, FieldErrors

__all__ = [
    "LETTERS",
    "MAX_EXPLANATION_CHARS",
    "MAX_OPTION_CHARS",
    "MAX_TEXT_CHARS",
    "TRUE_FALSE_OPTIONS",
    "BankError",
    "Problem",
    "QuestionData",
    "add_question",
    "archive_question",
    "bank_texts",
    "check_question",
    "create_bank",
    "new_question",
    "normalise_text",
    "option_rows",
    "question_counts",
    "restore_question",
    "update_bank",
    "update_question",
]

MAX_BANK_NAME_CHARS = 200
MAX_DESCRIPTION_CHARS = 2000
MAX_TEXT_CHARS = 2000
MAX_EXPLANATION_CHARS = 2000
MAX_OPTION_CHARS = 500
MIN_OPTIONS = 2
# A true/false question always has these two options, in this order (A = true).
TRUE_FALSE_OPTIONS = ("正确", "错误")
LETTERS = "ABCDEF"


class BankError(FieldErrors):
    """A bank or question refused; messages keyed by form field ("options" for the list)."""


def _errors() -> ErrorCollector:
    return ErrorCollector(BankError)


def normalise_text(text: str) -> str:
    """Trimmed, with every run of whitespace (incl. full-width spaces, line breaks) as one
    space: two questions that differ only there are the same question."""
    return " ".join((text or "").split())


@dataclass(frozen=True, slots=True)
class QuestionData:
    """A question as entered: ``options`` are the six slots A..F (blank = unused) and
    ``correct`` the slot indices marked correct. For true/false the option texts are
    ignored and ``correct`` is {0} (正确) or {1} (错误)."""

    kind: str
    topic: str
    text: str
    explanation: str = ""
    options: tuple[str, ...] = ()
    correct: frozenset[int] = frozenset()


class Problem(NamedTuple):
    """One thing wrong with a question: the field it concerns (kind, topic, text,
    explanation, options = the option texts, correct = which are marked), a stable code,
    the message, and the option slot (0 = A) when it is about one option."""

    field: str
    code: str
    message: Any
    slot: int | None = None


def check_question(data: QuestionData) -> list[Problem]:
    """Every problem of ``data`` at once (pure: the importer applies the same rules)."""
    problems: list[Problem] = []
    if data.kind not in QUESTION_KINDS:
        problems.append(Problem("kind", "unknown_kind", _l("Choose the kind of question.")))
    if data.topic not in RISK_TOPICS:
        problems.append(Problem("topic", "unknown_topic", _l("Choose a risk topic.")))
    text = (data.text or "").strip()
    if not text:
        problems.append(Problem("text", "text_required", _l("Enter the question.")))
    elif len(text) > MAX_TEXT_CHARS:
        problems.append(Problem("text", "too_long",
                                _l("At most %(n)d characters.", n=MAX_TEXT_CHARS)))
    if len((data.explanation or "").strip()) > MAX_EXPLANATION_CHARS:
        problems.append(Problem("explanation", "too_long",
                                _l("At most %(n)d characters.", n=MAX_EXPLANATION_CHARS)))
    if data.kind == "true_false":
        if data.correct not in ({0}, {1}):
            problems.append(Problem("correct", "true_false_answer", _l(
                "A true/false question needs exactly one answer: A (正确) or B (错误).")))
    elif data.kind in QUESTION_KINDS:
        problems.extend(_check_choices(data))
    return problems


def _letter(index: int) -> str:
    return LETTERS[index] if 0 <= index < len(LETTERS) else str(index + 1)


def _check_choices(data: QuestionData) -> list[Problem]:
    slots = [(o or "").strip() for o in data.options]
    if len(slots) > MAX_OPTIONS:
        return [Problem("options", "too_many_options",
                        _l("At most %(n)d options.", n=MAX_OPTIONS))]
    problems: list[Problem] = []
    filled = [(i, t) for i, t in enumerate(slots) if t]
    if len(filled) < MIN_OPTIONS:
        first_blank = next((i for i, t in enumerate(slots) if not t), len(filled))
        problems.append(Problem("options", "too_few_options",
                                _l("Enter at least %(n)d options.", n=MIN_OPTIONS),
                                first_blank))
    seen: dict[str, int] = {}
    for index, option in filled:
        if len(option) > MAX_OPTION_CHARS:
            problems.append(Problem("options", "too_long", _l(
                "Option %(letter)s: at most %(n)d characters.", letter=_letter(index),
                n=MAX_OPTION_CHARS), index))
        key = normalise_text(option)
        if key in seen:
            problems.append(Problem("options", "duplicate_option", _l(
                "Options %(first)s and %(second)s are the same.", first=_letter(seen[key]),
                second=_letter(index)), index))
        else:
            seen[key] = index
    empty_marked = sorted(i for i in data.correct if i >= len(slots) or not slots[i])
    if empty_marked:
        problems.append(Problem("correct", "answer_empty_option", _l(
            "Option %(letters)s is marked correct but has no text.",
            letters="、".join(_letter(i) for i in empty_marked)), empty_marked[0]))
    elif data.kind == "single" and len(data.correct) != 1:
        problems.append(Problem("correct", "single_answers", _l(
            "A single-choice question needs exactly one correct option.")))
    elif data.kind == "multiple" and len(data.correct) < 2:
        problems.append(Problem("correct", "multiple_answers", _l(
            "A multiple-choice question needs at least two correct options.")))
    return problems


def option_rows(data: QuestionData) -> list[tuple[str, bool]]:
    """The options to store, in order, as (text, correct): blank slots dropped, or the
    fixed 正确/错误 pair for true/false. Call only on data ``check_question`` accepted."""
    if data.kind == "true_false":
        return [(TRUE_FALSE_OPTIONS[0], data.correct == {0}),
                (TRUE_FALSE_OPTIONS[1], data.correct == {1})]
    return [(text.strip(), i in data.correct)
            for i, text in enumerate(data.options) if (text or "").strip()]


# --- banks --------------------------------------------------------------------------------


def _check_bank(session: Session, name: str, description: str, errors: ErrorCollector,
                bank_id: int | None = None) -> None:
    if not name:
        errors.add("name", _l("Enter the name of the bank."))
    elif len(name) > MAX_BANK_NAME_CHARS:
        errors.add("name", _l("At most %(n)d characters.", n=MAX_BANK_NAME_CHARS))
    else:
        clash = select(QuestionBank.id).where(QuestionBank.name == name)
        if bank_id is not None:
            clash = clash.where(QuestionBank.id != bank_id)
        if session.scalar(clash) is not None:
            errors.add("name", _l("A question bank with this name exists already."))
    if len(description) > MAX_DESCRIPTION_CHARS:
        errors.add("description", _l("At most %(n)d characters.", n=MAX_DESCRIPTION_CHARS))


def create_bank(session: Session, *, name: str, description: str | None,
                actor_id: int | None) -> QuestionBank:
    name, description = normalise_text(name), (description or "").strip()
    errors = _errors()
    _check_bank(session, name, description, errors)
    errors.raise_if_any()
    bank = QuestionBank(name=name, description=description, created_by_id=actor_id)
    session.add(bank)
    session.flush()
    return bank


def update_bank(session: Session, bank: QuestionBank, *, name: str,
                description: str | None) -> QuestionBank:
    name, description = normalise_text(name), (description or "").strip()
    errors = _errors()
    _check_bank(session, name, description, errors, bank_id=bank.id)
    errors.raise_if_any()
    bank.name, bank.description = name, description
    session.flush()
    return bank


def question_counts(session: Session, bank_id: int | None = None
                    ) -> dict[int, tuple[int, int]]:
    """bank id -> (active, archived) question counts, in one query (all banks or one)."""
    archived = case((Question.archived_at.is_not(None), 1), else_=0)
    stmt = select(Question.bank_id, func.count(), func.coalesce(func.sum(archived), 0))
    if bank_id is not None:
        stmt = stmt.where(Question.bank_id == bank_id)
    rows = session.execute(stmt.group_by(Question.bank_id)).all()
    return {bank_id: (int(total) - int(gone), int(gone)) for bank_id, total, gone in rows}


# --- questions ----------------------------------------------------------------------------


def bank_texts(session: Session, bank_id: int, *,
               exclude_id: int | None = None) -> dict[str, tuple[int, bool]]:
    """Normalised text -> (question id, archived?) of every question of a bank, archived
    ones included (restoring one is how to get it back, not adding it again)."""
    stmt = select(Question.id, Question.text, Question.archived_at).where(
        Question.bank_id == bank_id)
    if exclude_id is not None:
        stmt = stmt.where(Question.id != exclude_id)
    return {normalise_text(text): (qid, archived is not None)
            for qid, text, archived in session.execute(stmt)}


def _duplicate_message(archived: bool) -> Any:
    if archived:
        return _l("An archived question of this bank has the same text: restore it instead.")
    return _l("This bank has a question with the same text already.")


def _checked(session: Session, bank_id: int, data: QuestionData,
             exclude_id: int | None = None) -> None:
    errors = _errors()
    for problem in check_question(data):
        errors.add("options" if problem.field == "correct" else problem.field, problem.message)
    key = normalise_text(data.text)
    if key and "text" not in errors:
        clash = bank_texts(session, bank_id, exclude_id=exclude_id).get(key)
        if clash is not None:
            errors.add("text", _duplicate_message(clash[1]))
    errors.raise_if_any()


def _set_options(question: Question, rows: list[tuple[str, bool]]) -> None:
    """Update the options in place by position (replacing the list would insert the new
    rows before deleting the old ones and trip the unique (question, position) key)."""
    current = {o.position: o for o in question.options}
    for position, (text, correct) in enumerate(rows, start=1):
        option = current.pop(position, None)
        if option is None:
            question.options.append(QuestionOption(position=position, text=text,
                                                   is_correct=correct))
        else:
            option.text, option.is_correct = text, correct
    for option in current.values():
        question.options.remove(option)


def new_question(bank: QuestionBank, data: QuestionData) -> Question:
    """An unsaved question built from accepted data (shared with the importer)."""
    question = Question(bank_id=bank.id, kind=data.kind, topic=data.topic,
                        text=data.text.strip(), explanation=(data.explanation or "").strip())
    question.options = [QuestionOption(position=p, text=t, is_correct=c)
                        for p, (t, c) in enumerate(option_rows(data), start=1)]
    return question


def add_question(session: Session, bank: QuestionBank, data: QuestionData) -> Question:
    _checked(session, bank.id, data)
    question = new_question(bank, data)
    session.add(question)
    session.flush()
    return question


def update_question(session: Session, question: Question, data: QuestionData) -> Question:
    """Change a question (kind included). Published exams keep their frozen copy."""
    _checked(session, question.bank_id, data, exclude_id=question.id)
    question.kind, question.topic = data.kind, data.topic
    question.text = data.text.strip()
    question.explanation = (data.explanation or "").strip()
    _set_options(question, option_rows(data))
    question.updated_at = utcnow()
    session.flush()
    return question


def archive_question(session: Session, question: Question) -> Question:
    """Keep the question but draw it into no exam published from now on (idempotent)."""
    if question.archived_at is None:
        question.archived_at = utcnow()
        question.updated_at = question.archived_at
        session.flush()
    return question


def restore_question(session: Session, question: Question) -> Question:
    if question.archived_at is not None:
        key = normalise_text(question.text)
        clash = bank_texts(session, question.bank_id, exclude_id=question.id).get(key)
        if clash is not None and not clash[1]:
            raise BankError.one(_l("This bank has an active question with the same text."))
        question.archived_at = None
        question.updated_at = utcnow()
        session.flush()
    return question

