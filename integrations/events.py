"""Training events read from the evidence ledger, for webhooks and xAPI alike.

The ledger is the event log: a completion, an exam submission and a signature are
appended in the same transaction as the change they record, so an outbound copy built
from the ledger can neither be lost nor invent something that did not commit. This
module turns ledger entries of the interesting kinds into ``TrainingEvent`` values:
what the ledger payload says, completed by a few batched lookups (the course's title,
the learner's e-mail, an exam attempt's enrolment). ``describe`` is pure; only
``load_events`` reads the database.

Outbound data never carries an ID number (not even masked), an IP address or a user
agent: the events name the learner by employee number and login name.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from assessments.exams import ExamAttempt
from courses.models import Course, CourseVersion, Lesson
from lms.ledger import LedgerEntry
from lms.people.models import Employee, User

__all__ = [
    "EVENT_TYPES",
    "LEDGER_KINDS",
    "CourseRef",
    "ExamRef",
    "Learner",
    "LessonRef",
    "Lookups",
    "PolicyRef",
    "TrainingEvent",
    "describe",
    "event_uuid",
    "load_events",
]

log = logging.getLogger(__name__)

# The ledger kinds that become events, and the event types they become.
LEDGER_KINDS = ("course.completed", "lesson.completed", "exam.submitted", "policy.signed")
EVENT_TYPES = ("course.completed", "lesson.completed", "exam.passed", "exam.failed",
               "policy.signed")


@dataclass(frozen=True)
class Learner:
    user_id: int | None
    username: str | None
    employee_no: str | None
    email: str | None = None


@dataclass(frozen=True)
class CourseRef:
    code: str
    version: int | None
    title_zh: str = ""
    title_en: str = ""


@dataclass(frozen=True)
class LessonRef:
    id: int
    title: str = ""
    position: int | None = None
    kind: str | None = None


@dataclass(frozen=True)
class ExamRef:
    exam_id: int
    attempt_id: int
    attempt_number: int | None
    score: int
    pass_score: int
    passed: bool
    correct_count: int | None
    question_count: int | None
    end_reason: str | None


@dataclass(frozen=True)
class PolicyRef:
    document_id: int | None
    version_id: int | None
    name: str
    version: int | None
    document_sha256: str | None
    statement_sha256: str | None


@dataclass(frozen=True)
class TrainingEvent:
    """One ledger entry seen as a training event (``type`` is one of EVENT_TYPES)."""

    seq: int
    hash: str
    at: datetime
    type: str
    learner: Learner
    course: CourseRef | None = None
    lesson: LessonRef | None = None
    exam: ExamRef | None = None
    policy: PolicyRef | None = None
    enrollment_id: int | None = None
    cycle: int | None = None


@dataclass
class Lookups:
    """What the ledger payloads do not say, fetched once per batch."""

    users: dict[int, Learner] = field(default_factory=dict)
    courses: dict[str, CourseRef] = field(default_factory=dict)  # by code (version None)
    lesson_courses: dict[int, CourseRef] = field(default_factory=dict)  # lesson id -> course
    attempt_enrolments: dict[int, int] = field(default_factory=dict)


def event_uuid(base_url: str, seq: int) -> uuid.UUID:
    """The stable id of the event of ledger entry ``seq`` in this installation: the
    webhook's ``id`` and the xAPI statement's ``id``. Derived (UUID v5), never random, so
    a retry carries the same id and the receiver or LRS can drop the duplicate; the
    site's address is part of it, so two installations feeding one LRS never collide."""
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, base_url.rstrip("/") + "/ledger")
    return uuid.uuid5(namespace, f"ledger:{seq}")


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


def _course(code: str | None, version: Any, lookups: Lookups) -> CourseRef | None:
    if not code:
        return None
    known = lookups.courses.get(code)
    return CourseRef(code=code, version=_int(version),
                     title_zh=known.title_zh if known else "",
                     title_en=known.title_en if known else "")


def _learner(actor_id: int | None, payload: Mapping[str, Any], lookups: Lookups) -> Learner:
    known = lookups.users.get(actor_id) if actor_id is not None else None
    if known is not None:
        return known
    return Learner(user_id=actor_id, username=payload.get("user"),
                   employee_no=payload.get("employee_no"))


def describe(*, seq: int, hash: str, at: datetime, kind: str, actor_id: int | None,
             payload: Mapping[str, Any], lookups: Lookups) -> TrainingEvent | None:
    """The event an entry stands for, or None for a kind that is not an event."""
    learner = _learner(actor_id, payload, lookups)
    common = {"seq": seq, "hash": hash, "at": at, "learner": learner}
    if kind == "course.completed":
        return TrainingEvent(**common, type=kind,
                             course=_course(payload.get("course_code"),
                                            payload.get("version_number"), lookups),
                             enrollment_id=_int(payload.get("enrollment_id")),
                             cycle=_int(payload.get("cycle")))
    if kind == "lesson.completed":
        return TrainingEvent(**common, type=kind,
                             course=_course(payload.get("course_code"),
                                            payload.get("version_number"), lookups),
                             lesson=LessonRef(id=int(payload["lesson_id"]),
                                              title=payload.get("lesson_title") or "",
                                              position=_int(payload.get("lesson_position")),
                                              kind=payload.get("lesson_kind")),
                             enrollment_id=_int(payload.get("enrollment_id")),
                             cycle=_int(payload.get("cycle")))
    if kind == "exam.submitted":
        attempt_id = int(payload["attempt_id"])
        passed = payload.get("passed") is True
        exam = ExamRef(exam_id=int(payload["exam_id"]), attempt_id=attempt_id,
                       attempt_number=_int(payload.get("number")),
                       score=int(payload.get("score") or 0),
                       pass_score=int(payload.get("pass_score") or 0), passed=passed,
                       correct_count=_int(payload.get("correct_count")),
                       question_count=_int(payload.get("question_count")),
                       end_reason=payload.get("end_reason"))
        return TrainingEvent(**common, type="exam.passed" if passed else "exam.failed",
                             course=_course(payload.get("course_code"),
                                            payload.get("version_number"), lookups),
                             lesson=LessonRef(id=int(payload["lesson_id"]),
                                              title=payload.get("lesson_title") or "",
                                              kind="exam"),
                             exam=exam,
                             enrollment_id=lookups.attempt_enrolments.get(attempt_id))
    if kind == "policy.signed":
        lesson_id = _int(payload.get("lesson_id"))
        policy = PolicyRef(document_id=_int(payload.get("policy_document_id")),
                           version_id=_int(payload.get("policy_version_id")),
                           name=payload.get("policy_name") or "",
                           version=_int(payload.get("version_number")),
                           document_sha256=payload.get("document_sha256"),
                           statement_sha256=payload.get("statement_sha256"))
        return TrainingEvent(**common, type=kind,
                             course=lookups.lesson_courses.get(lesson_id) if lesson_id else None,
                             lesson=LessonRef(id=lesson_id, kind="policy") if lesson_id else None,
                             policy=policy,
                             enrollment_id=_int(payload.get("enrollment_id")))
    return None


def _lookups(session: Session, entries: Sequence[tuple[LedgerEntry, dict[str, Any]]]
             ) -> Lookups:
    out = Lookups()
    user_ids = {e.actor_id for e, _ in entries if e.actor_id is not None}
    codes = {p.get("course_code") for _, p in entries if p.get("course_code")}
    lesson_ids = {p["lesson_id"] for e, p in entries
                  if e.kind == "policy.signed" and type(p.get("lesson_id")) is int}
    attempt_ids = {p["attempt_id"] for e, p in entries
                   if e.kind == "exam.submitted" and type(p.get("attempt_id")) is int}
    if user_ids:
        email = func.coalesce(func.nullif(func.trim(User.email), ""),
                              func.nullif(func.trim(Employee.email), ""))
        for row in session.execute(
                select(User.id, User.username, Employee.employee_no, email.label("email"))
                .outerjoin(Employee, Employee.id == User.employee_id)
                .where(User.id.in_(user_ids))):
            out.users[row.id] = Learner(row.id, row.username, row.employee_no, row.email)
    if lesson_ids:
        for row in session.execute(
                select(Lesson.id, Course.code, Course.title_zh, Course.title_en,
                       CourseVersion.number)
                .join(CourseVersion, CourseVersion.id == Lesson.version_id)
                .join(Course, Course.id == CourseVersion.course_id)
                .where(Lesson.id.in_(lesson_ids))):
            out.lesson_courses[row.id] = CourseRef(row.code, row.number, row.title_zh,
                                                   row.title_en or "")
    if codes:
        for row in session.execute(select(Course.code, Course.title_zh, Course.title_en)
                                   .where(Course.code.in_(codes))):
            out.courses[row.code] = CourseRef(row.code, None, row.title_zh, row.title_en or "")
    if attempt_ids:
        out.attempt_enrolments = dict(session.execute(
            select(ExamAttempt.id, ExamAttempt.enrollment_id)
            .where(ExamAttempt.id.in_(attempt_ids))).all())
    return out


def _payload(entry: LedgerEntry) -> dict[str, Any]:
    try:
        value = json.loads(entry.payload)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def load_events(session: Session, entries: Sequence[LedgerEntry]) -> list[TrainingEvent]:
    """The events of ``entries`` (in their order), with one lookup query per kind of
    missing fact for the whole batch.

    An entry whose payload lacks what an event needs is skipped with a warning, never
    raised: one odd entry must not stop the outbox (its cursor could never pass it)."""
    parsed = [(e, _payload(e)) for e in entries if e.kind in LEDGER_KINDS]
    lookups = _lookups(session, parsed)
    events = []
    for entry, payload in parsed:
        try:
            event = describe(seq=entry.seq, hash=entry.hash, at=entry.at, kind=entry.kind,
                             actor_id=entry.actor_id, payload=payload, lookups=lookups)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("ledger entry %s (%s) is not an outbound event: %r", entry.seq,
                        entry.kind, exc)
            continue
        if event is not None:
            events.append(event)
    return events
