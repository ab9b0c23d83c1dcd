"""HR grants extra exam attempts to a learner who used them all without passing (after
retraining or coaching), and the read side HR's assignment page and evidence use.

A grant belongs to one enrolment (the learner's round on a course version) and one exam
of that version. It is refused while the learner still has attempts left or one
running, once the exam is passed, and for a superseded round: a grant answers a learner
who is stuck, it does not hand out attempts in advance. The grant row, its ledger entry
("exam.attempts_granted") and the learner's in-app message are written in the caller's
transaction; nothing here commits. The database keeps the sum honest (migration 0020):
each grant's ``allowed`` continues the previous total, and a concurrent second grant
computed from the same total fails on the unique key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from assessments.exam_taking import ExamState, close_expired, exam_state
from assessments.exams import MAX_GRANT_EXTRA, Exam, ExamAttemptGrant
from courses.models import Course, CourseVersion, Enrollment, Lesson
from lms import ledger
from lms.field_errors import ErrorCollector, FieldErrors
from lms.notify import service as notify
from lms.people.models import Employee, User

__all__ = [
    "MAX_REASON",
    "ExamStanding",
    "GrantRefused",
    "exam_standings",
    "grant_attempts",
    "grants_of",
]

MAX_REASON = 500


class GrantRefused(FieldErrors):
    """A grant refused; messages keyed by form field ("" for the whole form)."""


@dataclass(frozen=True)
class ExamStanding:
    """One exam lesson of a version and a learner's standing on it in one round."""

    lesson: Lesson
    state: ExamState

    @property
    def out_of_attempts(self) -> bool:
        """Stuck: not passed, nothing running, no attempt left (a grant may help)."""
        s = self.state
        return not s.passed and s.open_attempt is None and s.attempts_left == 0


def exam_standings(session: Session, *, enrollment_id: int, version_id: int
                   ) -> list[ExamStanding]:
    """Every exam lesson of the version, in lesson order, with the round's standing."""
    rows = session.execute(select(Lesson, Exam).join(Exam, Exam.lesson_id == Lesson.id)
                           .where(Lesson.version_id == version_id)
                           .order_by(Lesson.position)).all()
    return [ExamStanding(lesson=lesson, state=exam_state(session, enrollment_id=enrollment_id,
                                                         exam=exam))
            for lesson, exam in rows]


def grants_of(session: Session, *, enrollment_id: int) -> list[ExamAttemptGrant]:
    """The grants of one round, oldest first."""
    return list(session.scalars(select(ExamAttemptGrant)
                                .where(ExamAttemptGrant.enrollment_id == enrollment_id)
                                .order_by(ExamAttemptGrant.id)))


def _check(errors: ErrorCollector, *, extra: int | None, reason: str | None) -> str:
    reason = (reason or "").strip()
    if not reason:
        errors.add("reason", _l("Give a reason: it is kept as evidence with this grant."))
    elif len(reason) > MAX_REASON:
        errors.add("reason", _l("Keep the reason to %(n)d characters or fewer.", n=MAX_REASON))
    if extra is None or not 1 <= extra <= MAX_GRANT_EXTRA:
        errors.add("extra", _l("Grant from 1 to %(n)d extra attempts.", n=MAX_GRANT_EXTRA))
    return reason


def _standing(errors: ErrorCollector, session: Session, *, enrolment: Enrollment | None,
              exam: Exam | None, now: datetime) -> ExamState | None:
    """The round's standing on the exam, or why no grant fits it."""
    lesson = session.get(Lesson, exam.lesson_id) if exam is not None else None
    if enrolment is None or lesson is None or lesson.version_id != enrolment.version_id:
        errors.add("exam_id", _l("This exam is not part of the course version of this "
                                 "learning round."))
        return None
    if enrolment.superseded_at is not None:
        errors.add("", _l("This learning round was replaced by a later one; grant attempts "
                          "in the current round."))
        return None
    # An attempt whose time ran out is scored first, as the learner's page would.
    close_expired(session, now=now, user_id=enrolment.user_id, exam_id=exam.id)
    state = exam_state(session, enrollment_id=enrolment.id, exam=exam)
    if state.passed:
        errors.add("", _l("The learner has passed this exam already."))
    elif state.open_attempt is not None:
        errors.add("", _l("The learner has an attempt running; grant more attempts only once "
                          "it has ended without a pass."))
    elif state.attempts_left > 0:
        errors.add("", _l("The learner still has %(n)d of %(max)d attempts left; extra "
                          "attempts are granted only once all are used.",
                          n=state.attempts_left, max=state.allowed))
    return state


def grant_attempts(session: Session, *, enrollment_id: int, exam_id: int | None,
                   extra: int | None, reason: str | None, actor_id: int,
                   now: datetime) -> ExamAttemptGrant:
    """Give the round ``extra`` (1..5) more attempts at the exam, with a reason; one
    ledger entry and a message to the learner. Refusals name the field (``reason``,
    ``extra``, ``exam_id``; "" for the learner's standing)."""
    errors = ErrorCollector(GrantRefused)
    reason = _check(errors, extra=extra, reason=reason)
    enrolment = session.get(Enrollment, enrollment_id)
    exam = session.get(Exam, exam_id) if exam_id is not None else None
    state = _standing(errors, session, enrolment=enrolment, exam=exam, now=now)
    errors.raise_if_any()
    assert enrolment is not None and exam is not None and state is not None
    assert extra is not None

    grant = ExamAttemptGrant(enrollment_id=enrolment.id, exam_id=exam.id, extra=extra,
                             allowed=state.allowed + extra, reason=reason,
                             granted_by_id=actor_id, granted_at=now)
    session.add(grant)
    session.flush()
    info = session.execute(
        select(User.username, Employee.employee_no, Course.code, CourseVersion.number,
               Lesson.id.label("lesson_id"), Lesson.title)
        .select_from(Lesson).join(CourseVersion, CourseVersion.id == Lesson.version_id)
        .join(Course, Course.id == CourseVersion.course_id)
        .join(User, User.id == enrolment.user_id)
        .outerjoin(Employee, Employee.id == User.employee_id)
        .where(Lesson.id == exam.lesson_id)).one()
    ledger.append(session, kind="exam.attempts_granted", subject=f"exam_attempt_grant:{grant.id}",
                  actor_id=actor_id, payload={
                      "grant_id": grant.id, "enrollment_id": enrolment.id,
                      "cycle": enrolment.cycle, "exam_id": exam.id,
                      "lesson_id": info.lesson_id, "lesson_title": info.title,
                      "course_code": info.code, "version_number": info.number,
                      "user": info.username, "employee_no": info.employee_no,
                      "extra": extra, "allowed_before": state.allowed,
                      "allowed_now": grant.allowed, "attempts_used": state.used,
                      "best_score": state.best_score, "reason": reason,
                      "granted_at": now.astimezone(UTC).isoformat(),
                  })
    # The message is kept as evidence of what the learner was told, so it is written in
    # Chinese (as the signing receipt is); the reason stays HR's note.
    notify.send(
        session, recipient_ids=[enrolment.user_id], kind="notice", actor_id=actor_id,
        subject=f"考试机会已增加：{info.title}",
        body=(f"人力资源部为您增加了 {extra} 次《{info.title}》（{info.code} 第 "
              f"{info.number} 版）的考试机会，您现在共有 {grant.allowed} 次机会，"
              f"已使用 {state.used} 次。请进入课程继续考试。"),
        link=f"/exams/lessons/{info.lesson_id}", dedupe_key=f"exam_attempt_grant:{grant.id}")
    return grant
