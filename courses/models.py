"""Courses, their immutable published versions, lessons, media, enrolments and the
watch records that prove a video was really watched."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lms.dbtypes import UTCDateTime, utcnow
from lms.extensions import db
from lms.people.models import User

RISK_TOPICS = (
    "identity_verification",
    "labour_contracts",
    "social_insurance",
    "work_injury",
    "attendance",
    "performance",
    "offboarding",
    "notice_delivery",
    "other",
)
VERSION_STATUSES = ("draft", "published", "retired")
# Policy and exam lessons are read, signed and taken in the assessments module.
LESSON_KINDS = ("video", "document", "policy", "exam")
ENROLLMENT_SOURCES = ("manual", "self", "assigned")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Course(db.Model):
    __tablename__ = "courses"
    __table_args__ = (
        CheckConstraint(_in("risk_topic", RISK_TOPICS), name="risk_topic"),
        CheckConstraint("max_playback_rate >= 0.5 AND max_playback_rate <= 2.0",
                        name="playback_rate"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    title_zh: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(200), default="")
    risk_topic: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text, default="")
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    is_optional: Mapped[bool] = mapped_column(Boolean, default=False)  # trainees may self-enrol
    max_playback_rate: Mapped[float] = mapped_column(Float, default=1.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    owner: Mapped[User | None] = relationship()
    versions: Mapped[list[CourseVersion]] = relationship(
        back_populates="course", order_by="CourseVersion.number"
    )


class CourseVersion(db.Model):
    """A version of a course. Once published it never changes: learners' records point
    at it, and its ``content_hash`` pins exactly what they were shown."""

    __tablename__ = "course_versions"
    __table_args__ = (
        UniqueConstraint("course_id", "number", name="uq_course_versions_course_number"),
        CheckConstraint(_in("status", VERSION_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="RESTRICT"),
                                           index=True)
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    change_note: Mapped[str] = mapped_column(Text, default="")
    requires_retraining: Mapped[bool] = mapped_column(Boolean, default=False)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    published_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    course: Mapped[Course] = relationship(back_populates="versions")
    lessons: Mapped[list[Lesson]] = relationship(
        back_populates="version", order_by="Lesson.position"
    )


class MediaAsset(db.Model):
    """An uploaded file, stored under a server-chosen key; its duration was read from the
    file on the server, never taken from the browser."""

    __tablename__ = "media_assets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    storage_key: Mapped[str] = mapped_column(String(128), unique=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(64))
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    original_filename: Mapped[str] = mapped_column(String(255))
    uploaded_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Lesson(db.Model):
    __tablename__ = "lessons"
    __table_args__ = (
        UniqueConstraint("version_id", "position", name="uq_lessons_version_position"),
        CheckConstraint(_in("kind", LESSON_KINDS), name="kind"),
        CheckConstraint("min_coverage > 0 AND min_coverage <= 1", name="min_coverage"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("course_versions.id", ondelete="RESTRICT"),
                                            index=True)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(200))
    media_id: Mapped[int | None] = mapped_column(ForeignKey("media_assets.id",
                                                            ondelete="RESTRICT"))
    body: Mapped[str] = mapped_column(Text, default="")  # document lessons: plain text
    min_coverage: Mapped[float] = mapped_column(Float, default=0.98)
    # policy lessons: the published policy version to read and sign (assessments.policies)
    policy_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("policy_versions.id", ondelete="RESTRICT"), index=True)

    version: Mapped[CourseVersion] = relationship(back_populates="lessons")
    media: Mapped[MediaAsset | None] = relationship()


class Enrollment(db.Model):
    """A learner on a course version, for one round (``cycle``) of learning it.

    Every learning record (progress, playback sessions, readings, signatures, exam
    attempts) belongs to one enrolment, so a recertification round starts a new
    enrolment with empty records and the earlier round's evidence stays as it was. The
    round a learner works on is the one not ``superseded``; the database allows only
    one such enrolment per person and version.
    """

    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("user_id", "version_id", "cycle", name="uq_enrollments_user_version_cycle"),
        CheckConstraint(_in("source", ENROLLMENT_SOURCES), name="source"),
        CheckConstraint("cycle >= 1", name="cycle"),
        Index("uq_enrollments_current", "user_id", "version_id", unique=True,
              sqlite_where=text("superseded_at IS NULL"),
              postgresql_where=text("superseded_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("course_versions.id", ondelete="RESTRICT"),
                                            index=True)
    source: Mapped[str] = mapped_column(String(16))
    enrolled_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cycle: Mapped[int] = mapped_column(Integer, default=1)
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # a later round began

    version: Mapped[CourseVersion] = relationship()
    user: Mapped[User] = relationship(foreign_keys=[user_id])


def current_round():
    """The SQL condition that picks a person's current round on a version."""
    return Enrollment.superseded_at.is_(None)


class PlaybackSession(db.Model):
    """One viewing of a lesson, issued by the server. At most one per learner and lesson
    is active; starting another supersedes it. Its stats are written when it ends or is
    superseded, so heartbeats touch only the progress row."""

    __tablename__ = "playback_sessions"
    __table_args__ = (Index("ix_playback_sessions_user_lesson", "user_id", "lesson_id"),
                      Index("ix_playback_sessions_enrollment_lesson", "enrollment_id",
                            "lesson_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id", ondelete="RESTRICT"))
    lesson_id: Mapped[int] = mapped_column(ForeignKey("lessons.id", ondelete="RESTRICT"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_reason: Mapped[str | None] = mapped_column(String(16))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    last_beat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    beats_accepted: Mapped[int] = mapped_column(Integer, default=0)
    credited_intervals: Mapped[str] = mapped_column(Text, default="[]")  # JSON [[a, b], ...]
    credited_seconds: Mapped[float] = mapped_column(Float, default=0.0)


class LessonProgress(db.Model):
    """The merged set of watched intervals of one enrolment (a learner's round) on one
    lesson, and the state of the active playback session. The heartbeat hot path reads
    and writes only this row (guarded by ``last_seq`` so concurrent beats cannot lose an
    update)."""

    __tablename__ = "lesson_progress"
    __table_args__ = (
        UniqueConstraint("enrollment_id", "lesson_id",
                         name="uq_lesson_progress_enrollment_lesson"),
        Index("ix_lesson_progress_user_lesson", "user_id", "lesson_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id", ondelete="RESTRICT"))
    lesson_id: Mapped[int] = mapped_column(ForeignKey("lessons.id", ondelete="RESTRICT"),
                                           index=True)
    intervals: Mapped[str] = mapped_column(Text, default="[]")  # JSON [[a, b], ...] merged
    watched_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    furthest_position: Mapped[float] = mapped_column(Float, default=0.0)
    active_session_id: Mapped[int | None] = mapped_column(
        ForeignKey("playback_sessions.id", ondelete="RESTRICT")
    )
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    last_position: Mapped[float] = mapped_column(Float, default=0.0)
    last_beat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The active session's run anchor (courses.watch.RunState): media position and server
    # time (epoch seconds; it may lie in the future) the rate allowance is measured from.
    anchor_position: Mapped[float | None] = mapped_column(Float)
    anchor_wall: Mapped[float | None] = mapped_column(Float)
    session_intervals: Mapped[str] = mapped_column(Text, default="[]")  # active session's credit
    session_beats: Mapped[int] = mapped_column(Integer, default=0)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completion_ledger_seq: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    lesson: Mapped[Lesson] = relationship()


class WatchRejection(db.Model):
    """A heartbeat that was not credited, and why (kept for the evidence export)."""

    __tablename__ = "watch_rejections"
    __table_args__ = (Index("ix_watch_rejections_user_lesson", "user_id", "lesson_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int | None] = mapped_column(
        ForeignKey("playback_sessions.id", ondelete="RESTRICT"), index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    lesson_id: Mapped[int] = mapped_column(ForeignKey("lessons.id", ondelete="RESTRICT"))
    enrollment_id: Mapped[int | None] = mapped_column(
        ForeignKey("enrollments.id", ondelete="RESTRICT"))
    seq: Mapped[int | None] = mapped_column(Integer)
    position: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(String(200), default="")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(64))
