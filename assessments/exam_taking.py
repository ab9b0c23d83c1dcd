"""Taking an exam: starting an attempt, saving answers as the learner goes, submitting,
closing attempts whose time ran out, what the result page may show, and checking a
stored attempt against its ledger entry. Nothing here commits.

The server is the only clock: an attempt's ``deadline_at`` is fixed when it starts;
answers and submissions are accepted until the deadline plus ``GRACE_SECONDS``, and an
attempt still open after that is scored on what was saved (``end_reason`` "timeout"),
when the learner comes back, submits late, or ``lms tick`` runs. The served snapshot
(with the key) stays on the server; the browser gets ``scoring.learner_view``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from assessments import scoring
from assessments.exams import (
    GRACE_SECONDS,
    AttemptAnswer,
    Exam,
    ExamAttempt,
    ExamAttemptGrant,
)
from courses.enrolment import blocking_lesson
from courses.models import Course, CourseVersion, Enrollment, Lesson, current_round
from courses.tracking import complete_lesson
from lms import ledger
from lms.dbtypes import utcnow
from lms.ledger import LedgerEntry
from lms.people.models import Employee, User

__all__ = [
    "AttemptRefused",
    "ExamState",
    "attempt_answers",
    "close_expired",
    "exam_state",
    "key_visible",
    "save_answer",
    "start_attempt",
    "submit",
    "verify_attempt",
]

GRACE = timedelta(seconds=GRACE_SECONDS)


def clock() -> datetime:
    """The server's time (tests replace this function to control time)."""
    return utcnow()


def new_seed() -> str:
    """The attempt's shuffle seed: secret, random, kept on the server."""
    return secrets.token_hex(16)


class AttemptRefused(Exception):
    """``code``: locked, not_ready, passed, no_attempts, closed, bad_answer."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class ExamState:
    """A learner's standing on one exam lesson (in one enrolment)."""

    exam: Exam
    attempts: list[ExamAttempt]  # submitted ones, oldest first
    open_attempt: ExamAttempt | None
    granted: int = 0  # extra attempts HR granted this enrolment (ExamAttemptGrant)

    @property
    def passed(self) -> bool:
        return any(a.passed for a in self.attempts)

    @property
    def used(self) -> int:
        return len(self.attempts) + (1 if self.open_attempt else 0)

    @property
    def allowed(self) -> int:
        """The exam's attempts plus the granted ones; a new attempt row stores it."""
        return self.exam.max_attempts + self.granted

    @property
    def attempts_left(self) -> int:
        return max(0, self.allowed - self.used)

    @property
    def best_score(self) -> int | None:
        scores = [a.score for a in self.attempts if a.score is not None]
        return max(scores) if scores else None

    @property
    def can_start(self) -> bool:
        return not self.passed and self.open_attempt is None and self.attempts_left > 0


def exam_for_lesson(session: Session, lesson: Lesson) -> Exam | None:
    return session.scalar(select(Exam).where(Exam.lesson_id == lesson.id))


def exam_state(session: Session, *, enrollment_id: int, exam: Exam) -> ExamState:
    """The attempts of one enrolment (a recertification round starts with none) and the
    extra attempts HR granted it."""
    rows = session.scalars(select(ExamAttempt).where(ExamAttempt.exam_id == exam.id,
                                                     ExamAttempt.enrollment_id == enrollment_id)
                           .order_by(ExamAttempt.number)).all()
    granted = session.scalar(select(func.coalesce(func.sum(ExamAttemptGrant.extra), 0)).where(
        ExamAttemptGrant.exam_id == exam.id, ExamAttemptGrant.enrollment_id == enrollment_id))
    return ExamState(exam=exam, attempts=[a for a in rows if a.submitted_at is not None],
                     open_attempt=next((a for a in rows if a.submitted_at is None), None),
                     granted=int(granted or 0))


def key_visible(state: ExamState, attempt: ExamAttempt) -> bool:
    """May the result page of a submitted attempt show the correct answers?

    Never while the learner has an attempt open: its questions may be the same, and the
    open attempt counts as used, so "no attempt left" would otherwise reveal the key
    during the last attempt."""
    if attempt.submitted_at is None or state.open_attempt is not None:
        return False
    review = state.exam.review
    if review == "answers":
        return True
    if review == "answers_when_done":
        return state.passed or state.attempts_left == 0
    return False


def is_open(attempt: ExamAttempt, now: datetime) -> bool:
    return attempt.submitted_at is None and now <= attempt.deadline_at + GRACE


# --- starting -----------------------------------------------------------------------------


def start_attempt(session: Session, *, user: User, lesson: Lesson, ip: str | None,
                  user_agent: str | None) -> ExamAttempt:
    """The learner's open attempt, or a new one. Refuses when earlier lessons are not
    complete, the exam is not published, it was passed, or no attempt is left (the
    exam's attempts plus any HR granted; the row keeps that allowance)."""
    exam = exam_for_lesson(session, lesson)
    if exam is None or exam.pool is None:
        raise AttemptRefused("not_ready")
    enrollment_id = session.scalar(select(Enrollment.id).where(
        Enrollment.user_id == user.id, Enrollment.version_id == lesson.version_id,
        current_round()))
    if enrollment_id is None:
        raise AttemptRefused("not_ready")
    if blocking_lesson(session, enrollment_id, lesson) is not None:
        raise AttemptRefused("locked")
    now = clock()
    close_expired(session, now=now, user_id=user.id, exam_id=exam.id)
    state = exam_state(session, enrollment_id=enrollment_id, exam=exam)
    if state.open_attempt is not None:
        return state.open_attempt
    if state.passed:
        raise AttemptRefused("passed")
    if state.attempts_left <= 0:
        raise AttemptRefused("no_attempts")
    seed = new_seed()
    served = scoring.serve(json.loads(exam.pool), selection=exam.selection,
                              per_topic=json.loads(exam.per_topic or "{}"),
                              shuffle_options=exam.shuffle_options, seed=seed)
    attempt = ExamAttempt(
        exam_id=exam.id, max_attempts=state.allowed, user_id=user.id,
        enrollment_id=enrollment_id, lesson_id=lesson.id,
        number=len(state.attempts) + 1, seed=seed, started_at=now,
        deadline_at=now + timedelta(minutes=exam.time_limit_minutes),
        served=json.dumps(served, ensure_ascii=False),
        served_sha256=scoring.sha256_json(served), question_count=len(served),
        ip=ip, user_agent=(user_agent or "")[:512])
    try:
        with session.begin_nested():  # a double click: the other request's attempt wins
            session.add(attempt)
            session.flush()
    except IntegrityError:
        state = exam_state(session, enrollment_id=enrollment_id, exam=exam)
        if state.open_attempt is None:
            raise AttemptRefused("no_attempts") from None
        return state.open_attempt
    return attempt


# --- answering ----------------------------------------------------------------------------


def served_of(attempt: ExamAttempt) -> list[dict[str, Any]]:
    return json.loads(attempt.served)


def attempt_answers(session: Session, attempt: ExamAttempt) -> dict[int, list[int]]:
    """The saved answers of an attempt by question position."""
    if attempt.answers is not None:
        return {int(k): v for k, v in json.loads(attempt.answers).items()}
    rows = session.execute(select(AttemptAnswer.position, AttemptAnswer.choice)
                           .where(AttemptAnswer.attempt_id == attempt.id)).all()
    return {position: json.loads(choice) for position, choice in rows}


def save_answer(session: Session, *, attempt: ExamAttempt, position: int,
                indices: list[int]) -> None:
    """Save (or clear, with no indices) the answer to one question of an open attempt."""
    now = clock()
    if not is_open(attempt, now):
        raise AttemptRefused("closed")
    served = served_of(attempt)
    if not 1 <= position <= len(served):
        raise AttemptRefused("bad_answer")
    question = served[position - 1]
    try:
        choice = scoring.normalise_choice(question["kind"], indices, len(question["options"]))
    except (TypeError, ValueError):
        raise AttemptRefused("bad_answer") from None
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(AttemptAnswer.__table__).values(
        attempt_id=attempt.id, position=position, choice=json.dumps(choice), saved_at=now)
    session.execute(stmt.on_conflict_do_update(
        index_elements=["attempt_id", "position"],
        set_={"choice": stmt.excluded.choice, "saved_at": stmt.excluded.saved_at}))


# --- submitting ---------------------------------------------------------------------------


def _lock(session: Session, attempt_id: int) -> ExamAttempt:
    """The attempt row, locked on PostgreSQL (SQLite serialises writers anyway), read
    afresh so a concurrent submit is seen."""
    stmt = select(ExamAttempt).where(ExamAttempt.id == attempt_id).with_for_update()
    return session.execute(stmt.execution_options(populate_existing=True)).scalar_one()


def submit(session: Session, *, attempt: ExamAttempt, now: datetime | None = None) -> ExamAttempt:
    """Score the attempt on its saved answers and seal it with a ledger entry; a passed
    exam completes its lesson (and the course, when it was the last lesson). Submitting a
    submitted attempt changes nothing. After the deadline and grace it ends as "timeout"."""
    now = now or clock()
    attempt = _lock(session, attempt.id)
    if attempt.submitted_at is not None:
        return attempt
    exam = session.get(Exam, attempt.exam_id)
    served = served_of(attempt)
    answers = attempt_answers(session, attempt)
    result = scoring.score(served, answers, exam.pass_score)
    reason = "submitted" if now <= attempt.deadline_at + GRACE else "timeout"
    answers_json = {str(k): v for k, v in sorted(answers.items())}
    info = session.execute(
        select(User.username, Employee.employee_no, Course.code, CourseVersion.number,
               CourseVersion.content_hash, Lesson.title)
        .select_from(Lesson).join(CourseVersion, CourseVersion.id == Lesson.version_id)
        .join(Course, Course.id == CourseVersion.course_id)
        .join(User, User.id == attempt.user_id)
        .outerjoin(Employee, Employee.id == User.employee_id)
        .where(Lesson.id == attempt.lesson_id)).one()
    sealed = {
        "end_reason": reason, "submitted_at": now,
        "answers": scoring.canonical_json(answers_json),
        "answers_sha256": scoring.sha256_json(answers_json),
        "correct_count": result.correct, "score": result.percent, "passed": result.passed,
    }
    entry = ledger.append(session, kind="exam.submitted", subject=f"exam_attempt:{attempt.id}",
                          actor_id=attempt.user_id, payload={
                              "user": info.username, "employee_no": info.employee_no,
                              "course_code": info.code, "version_number": info.number,
                              "content_hash": info.content_hash,
                              "lesson_id": attempt.lesson_id, "lesson_title": info.title,
                              "exam_id": exam.id, "pool_sha256": exam.pool_sha256,
                              **_attempt_view(attempt, sealed, exam.pass_score),
                          })
    session.execute(update(ExamAttempt.__table__).where(ExamAttempt.id == attempt.id)
                    .values(**sealed, ledger_seq=entry.seq, ledger_hash=entry.hash))
    if result.passed:
        complete_lesson(session, user_id=attempt.user_id, enrollment_id=attempt.enrollment_id,
                        lesson_id=attempt.lesson_id, at=now,
                        ledger_seq=entry.seq)
    session.refresh(attempt)
    return attempt


ATTESTED = ("number", "max_attempts", "question_count", "served_sha256", "started_at",
            "deadline_at", "ip")
SEALED = ("end_reason", "submitted_at", "answers_sha256", "correct_count", "score", "passed")


def _iso(value: Any) -> Any:
    """ISO 8601 in UTC: the database returns UTC, so an entry written from a clock value
    in another zone must not differ from the stored row when verified."""
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value


def _attempt_view(attempt: ExamAttempt, sealed: dict[str, Any], pass_score: int
                  ) -> dict[str, Any]:
    """What the ledger entry attests of an attempt (times ISO 8601 UTC)."""
    out = {"attempt_id": attempt.id, "pass_score": pass_score}
    out.update({k: _iso(getattr(attempt, k)) for k in ATTESTED})
    out.update({k: _iso(sealed[k]) for k in SEALED})
    return out


def close_expired(session: Session, *, now: datetime | None = None, user_id: int | None = None,
                  exam_id: int | None = None, limit: int = 500) -> int:
    """Submit ("timeout") open attempts past their deadline and grace; the count closed."""
    now = now or clock()
    stmt = (select(ExamAttempt.id).where(ExamAttempt.submitted_at.is_(None),
                                         ExamAttempt.deadline_at < now - GRACE)
            .order_by(ExamAttempt.id).limit(limit))
    if user_id is not None:
        stmt = stmt.where(ExamAttempt.user_id == user_id)
    if exam_id is not None:
        stmt = stmt.where(ExamAttempt.exam_id == exam_id)
    ids = session.scalars(stmt).all()
    for attempt_id in ids:
        submit(session, attempt=session.get(ExamAttempt, attempt_id), now=now)
    return len(ids)


# --- verification -------------------------------------------------------------------------


def verify_attempt(session: Session, attempt: ExamAttempt) -> list[str]:
    """Problems found comparing a submitted attempt with its ledger entry and its own
    snapshots (an empty list: intact)."""
    if attempt.submitted_at is None:
        return []
    problems: list[str] = []
    entry = session.get(LedgerEntry, attempt.ledger_seq) if attempt.ledger_seq else None
    if entry is None:
        return [f"attempt {attempt.id}: ledger entry {attempt.ledger_seq} missing"]
    if entry.hash != attempt.ledger_hash or entry.kind != "exam.submitted":
        problems.append(f"attempt {attempt.id}: ledger entry {entry.seq} is not its entry")
    payload = json.loads(entry.payload)
    exam = session.get(Exam, attempt.exam_id)
    sealed = {k: getattr(attempt, k) for k in SEALED}
    expected = _attempt_view(attempt, sealed, exam.pass_score if exam else -1)
    for key, value in expected.items():
        if payload.get(key) != value:
            problems.append(f"attempt {attempt.id}: {key} differs from ledger entry {entry.seq}")
    if scoring.sha256_json(json.loads(attempt.served)) != attempt.served_sha256:
        problems.append(f"attempt {attempt.id}: served questions do not match their SHA-256")
    if attempt.answers is None or scoring.sha256_json(
            json.loads(attempt.answers)) != attempt.answers_sha256:
        problems.append(f"attempt {attempt.id}: answers do not match their SHA-256")
    else:
        answers = {int(k): v for k, v in json.loads(attempt.answers).items()}
        result = scoring.score(json.loads(attempt.served), answers,
                                  exam.pass_score if exam else 101)
        if (result.percent, result.passed) != (attempt.score, attempt.passed):
            problems.append(f"attempt {attempt.id}: score does not follow from the answers")
    return problems
