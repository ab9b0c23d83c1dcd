"""Question banks, exams (a lesson kind) and exam attempts.

A bank is a trainer's working material and stays editable; an exam's ``pool`` is frozen
when its course version is published (a copy of the questions it may draw, with their
SHA-256), and every attempt keeps its own snapshot of what it served. So editing a bank
changes neither a published exam nor any history.

The attempt limit is enforced by the database too: an attempt row carries its exam's
``max_attempts`` (its allowance), a CHECK keeps ``number`` within it and a unique key makes
each number happen once per enrolment. The allowance is the exam's own ``max_attempts`` or,
after HR granted extra attempts to that enrolment (``ExamAttemptGrant``), the total of one
of its grants; a trigger checks that on insert (migration 0020; until then a composite
foreign key to ``exams (id, max_attempts)`` did).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from courses.models import RISK_TOPICS, Lesson
from lms.dbtypes import UTCDateTime, utcnow
from lms.extensions import db
from lms.people.models import User

QUESTION_KINDS = ("single", "multiple", "true_false")
SELECTIONS = ("fixed", "random")
# score: the score only; answers: score and the key after every submission;
# answers_when_done: the key once the learner passed or has no attempt left.
REVIEW_MODES = ("score", "answers", "answers_when_done")
END_REASONS = ("submitted", "timeout")
MAX_OPTIONS = 6
MAX_ATTEMPTS_LIMIT = 10
MAX_TIME_LIMIT_MINUTES = 180
# Answers and submissions are accepted this long after the deadline (network latency,
# a submit clicked in the last second); the issue allows at most 30 s.
GRACE_SECONDS = 15
# Extra attempts HR may grant at a time (after retraining); several grants add up.
MAX_GRANT_EXTRA = 5


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class QuestionBank(db.Model):
    __tablename__ = "question_banks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    questions: Mapped[list[Question]] = relationship(
        back_populates="bank", order_by="Question.id")


class Question(db.Model):
    """A question of a bank. Archived questions are kept (old drafts may name them) but
    are not drawn into exams published afterwards."""

    __tablename__ = "questions"
    __table_args__ = (
        CheckConstraint(_in("kind", QUESTION_KINDS), name="kind"),
        CheckConstraint(_in("topic", RISK_TOPICS), name="topic"),
        Index("ix_questions_bank_topic", "bank_id", "topic"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("question_banks.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(16))
    topic: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    explanation: Mapped[str] = mapped_column(Text, default="")
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    bank: Mapped[QuestionBank] = relationship(back_populates="questions")
    options: Mapped[list[QuestionOption]] = relationship(
        back_populates="question", order_by="QuestionOption.position",
        cascade="all, delete-orphan")


class QuestionOption(db.Model):
    __tablename__ = "question_options"
    __table_args__ = (
        UniqueConstraint("question_id", "position", name="uq_question_options_question_position"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    question_id: Mapped[int] = mapped_column(ForeignKey("questions.id", ondelete="CASCADE"),
                                             index=True)
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    is_correct: Mapped[bool] = mapped_column(Boolean, default=False)

    question: Mapped[Question] = relationship(back_populates="options")


class Exam(db.Model):
    """The settings of an exam lesson. ``pool``/``pool_sha256`` are written when the
    course version is published; from then on the row is frozen (migration 0009)."""

    __tablename__ = "exams"
    __table_args__ = (
        UniqueConstraint("id", "max_attempts", name="uq_exams_id_max_attempts"),
        CheckConstraint(_in("selection", SELECTIONS), name="selection"),
        CheckConstraint(_in("review", REVIEW_MODES), name="review"),
        CheckConstraint("pass_score >= 1 AND pass_score <= 100", name="pass_score"),
        CheckConstraint(f"max_attempts >= 1 AND max_attempts <= {MAX_ATTEMPTS_LIMIT}",
                        name="max_attempts"),
        CheckConstraint(f"time_limit_minutes >= 1 AND time_limit_minutes <= "
                        f"{MAX_TIME_LIMIT_MINUTES}", name="time_limit_minutes"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lesson_id: Mapped[int] = mapped_column(ForeignKey("lessons.id", ondelete="RESTRICT"),
                                           unique=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("question_banks.id", ondelete="RESTRICT"),
                                         index=True)
    selection: Mapped[str] = mapped_column(String(16))
    fixed_question_ids: Mapped[str] = mapped_column(Text, default="[]")  # JSON [id, ...]
    per_topic: Mapped[str] = mapped_column(Text, default="{}")  # JSON {topic: count}
    pass_score: Mapped[int] = mapped_column(Integer, default=80)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    time_limit_minutes: Mapped[int] = mapped_column(Integer, default=20)
    review: Mapped[str] = mapped_column(String(24), default="score")
    shuffle_options: Mapped[bool] = mapped_column(Boolean, default=True)
    pool: Mapped[str | None] = mapped_column(Text)  # JSON, frozen at publish
    pool_sha256: Mapped[str | None] = mapped_column(String(64))
    frozen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    lesson: Mapped[Lesson] = relationship()
    bank: Mapped[QuestionBank] = relationship()


class ExamAttempt(db.Model):
    """One sitting of an exam by one learner: what was served (``served``, a snapshot
    with the key, never sent to the browser), when it must end, and once submitted the
    answers, the score and the ledger entry. Submitted attempts are frozen (0009)."""

    __tablename__ = "exam_attempts"
    __table_args__ = (
        # Per enrolment (not per user): a learner re-enrolled for recertification starts
        # with a fresh allowance while every earlier attempt stays on record.
        UniqueConstraint("exam_id", "enrollment_id", "number",
                         name="uq_exam_attempts_exam_enrollment_number"),
        CheckConstraint("number >= 1 AND number <= max_attempts", name="attempt_limit"),
        CheckConstraint(_in("end_reason", END_REASONS), name="end_reason"),
        # At most one open attempt per learner and exam.
        Index("uq_exam_attempts_one_open", "exam_id", "enrollment_id", unique=True,
              sqlite_where=text("submitted_at IS NULL"),
              postgresql_where=text("submitted_at IS NULL")),
        Index("ix_exam_attempts_user_exam", "user_id", "exam_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exam_id: Mapped[int] = mapped_column(ForeignKey("exams.id", ondelete="RESTRICT"))
    # the allowance when the attempt started: the exam's own, or a grant's ``allowed``
    max_attempts: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id", ondelete="RESTRICT"),
                                               index=True)
    lesson_id: Mapped[int] = mapped_column(ForeignKey("lessons.id", ondelete="RESTRICT"))
    number: Mapped[int] = mapped_column(Integer)
    seed: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime)
    served: Mapped[str] = mapped_column(Text)  # JSON snapshot (scoring.serve)
    served_sha256: Mapped[str] = mapped_column(String(64))
    question_count: Mapped[int] = mapped_column(Integer)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(16))
    answers: Mapped[str | None] = mapped_column(Text)  # JSON {position: [served indices]}
    answers_sha256: Mapped[str | None] = mapped_column(String(64))
    correct_count: Mapped[int | None] = mapped_column(Integer)
    score: Mapped[int | None] = mapped_column(Integer)
    passed: Mapped[bool | None] = mapped_column(Boolean)
    ledger_seq: Mapped[int | None] = mapped_column(Integer)
    ledger_hash: Mapped[str | None] = mapped_column(String(64))

    exam: Mapped[Exam] = relationship()


class AttemptAnswer(db.Model):
    """The learner's current answer to one served question, saved as they go."""

    __tablename__ = "attempt_answers"
    __table_args__ = (
        UniqueConstraint("attempt_id", "position", name="uq_attempt_answers_attempt_position"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("exam_attempts.id", ondelete="RESTRICT"))
    position: Mapped[int] = mapped_column(Integer)
    choice: Mapped[str] = mapped_column(String(64))  # JSON [served option indices]
    saved_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ExamAttemptGrant(db.Model):
    """Extra attempts HR granted one enrolment on one exam (after retraining or coaching),
    with the reason; evidence, so never changed or deleted (triggers, 0020).

    ``allowed`` is the enrolment's total allowance once this grant counts: the exam's
    ``max_attempts`` plus every grant up to this one. The database checks that each grant
    continues that sum (a trigger) and the unique key refuses a second grant computed
    from the same total by a concurrent request. It also serves the look-up by enrolment
    and exam (its leading columns)."""

    __tablename__ = "exam_attempt_grants"
    __table_args__ = (
        UniqueConstraint("enrollment_id", "exam_id", "allowed",
                         name="uq_exam_attempt_grants_enrollment_exam_allowed"),
        CheckConstraint(f"extra >= 1 AND extra <= {MAX_GRANT_EXTRA}", name="extra"),
        CheckConstraint("allowed > extra", name="allowed"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id",
                                                          ondelete="RESTRICT"))
    exam_id: Mapped[int] = mapped_column(ForeignKey("exams.id", ondelete="RESTRICT"))
    extra: Mapped[int] = mapped_column(Integer)
    allowed: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    granted_by_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime)

    granted_by: Mapped[User] = relationship()
