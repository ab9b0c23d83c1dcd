"""Trainer services: courses, their versions (draft → published → retired) and the
lessons of a draft, including video upload.

A published version is what learners' records point at, so it never changes: every
function that edits content first locks the version row and checks it is still a draft
(the ``before_flush`` guard in courses/immutability.py backs this up for any other code
path). Publishing pins the content with a SHA-256 over its canonical JSON and records it
in the evidence ledger.

Functions take the session and explicit arguments, validate completely before changing
anything, and never commit: the view (or CLI command) owning the unit of work does.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from flask_babel import lazy_gettext as _l
from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session, joinedload

import courses.immutability  # noqa: F401 - registers the before_flush guard
from courses.immutability import FROZEN_STATUSES, PublishedVersionError
from courses.media import MediaStorage, ingest_video, storage
from courses.models import RISK_TOPICS, Course, CourseVersion, Enrollment, Lesson
from lms import ledger
from lms.dbtypes import utcnow
from lms.field_errors import ErrorCollector, FieldErrors
from lms.ledger_core import canonical_json
from lms.people.models import User, UserRole

__all__ = [
    "LESSON_KIND_HOOKS",
    "MAX_BODY_CHARS",
    "MIN_PLAYBACK_RATE",
    "AuthoringError",
    "CourseInput",
    "LessonKindHooks",
    "PublishedVersionError",
    "add_document_lesson",
    "add_video_lesson",
    "can_view_media",
    "content_document",
    "content_hash",
    "create_course",
    "delete_lesson",
    "draft_of",
    "frozen_message",
    "lessons_of",
    "media_error_message",
    "move_lesson",
    "new_version",
    "publish_version",
    "recompute_content_hash",
    "retire_version",
    "trainer_users",
    "update_course",
    "update_draft",
    "update_lesson",
    "version_status_label",
]

CODE_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9_.-]{0,31}$")
MIN_PLAYBACK_RATE = 1.0
MAX_PLAYBACK_RATE = 2.0
MAX_BODY_CHARS = 100_000
# Who may see every course and every media file (authors, and HR/admins who oversee).
STAFF_ROLES = ("trainer", "hr", "admin")



@dataclass(frozen=True)
class LessonKindHooks:
    """How a lesson kind whose content lives in another module (assessments' exams) is
    copied into a new draft, checked and frozen at publishing, and pinned by the content
    hash. Registered by that module so this one needs no import of it."""

    copy: Callable[[Session, Lesson, Lesson], None]  # (session, old, new) after new's flush
    problems: Callable[[Session, Lesson], list[Any]]  # why it cannot be published yet
    freeze: Callable[[Session, Lesson], dict[str, Any]]  # freeze; return what the hash pins
    delete: Callable[[Session, Lesson], None]  # remove its rows before the draft lesson goes
    pinned: Callable[[Session, Lesson], dict[str, Any]]  # what the hash pinned (once frozen)


LESSON_KIND_HOOKS: dict[str, LessonKindHooks] = {}

_STATUS_LABELS = {
    "draft": _l("Draft"),
    "published": _l("Published"),
    "retired": _l("Retired"),
}


def version_status_label(status: str) -> str:
    return str(_STATUS_LABELS.get(status, status))


class AuthoringError(FieldErrors):
    """Input refused; ``errors`` maps a form field name ("" for the whole form) to messages."""


def _Errors() -> ErrorCollector:
    return ErrorCollector(AuthoringError)


# --- courses ------------------------------------------------------------------------


@dataclass(frozen=True)
class CourseInput:
    code: str
    title_zh: str
    title_en: str
    risk_topic: str
    description: str
    owner_id: int | None
    is_optional: bool
    max_playback_rate: float


def trainer_users(session: Session) -> list[User]:
    """Enabled users with the trainer role: who may own a course."""
    return list(session.scalars(
        select(User).join(UserRole, UserRole.user_id == User.id)
        .where(UserRole.role == "trainer", User.is_enabled.is_(True))
        .order_by(User.display_name, User.username)
    ))


def _has_frozen_version(session: Session, course_id: int) -> bool:
    return bool(session.scalar(select(exists().where(
        CourseVersion.course_id == course_id, CourseVersion.status.in_(FROZEN_STATUSES)))))


def _check_course(session: Session, data: CourseInput, course: Course | None) -> CourseInput:
    errors = _Errors()
    code = (data.code or "").strip().upper()
    if not CODE_PATTERN.match(code):
        errors.add("code", _l("Use 1–32 letters, digits, '.', '-' or '_', starting with a "
                              "letter or digit."))
    else:
        taken = session.scalar(select(Course.id).where(func.upper(Course.code) == code))
        if taken is not None and (course is None or taken != course.id):
            errors.add("code", _l("Course code %(code)s is already used by another course.",
                                  code=code))
        if (course is not None and code != course.code
                and _has_frozen_version(session, course.id)):
            errors.add("code", _l("The code cannot change once a version has been published: "
                                  "it is part of the published content's fingerprint."))
    title_zh = (data.title_zh or "").strip()
    if not title_zh:
        errors.add("title_zh", _l("Enter the Chinese title."))
    elif len(title_zh) > 200:
        errors.add("title_zh", _l("At most %(n)d characters.", n=200))
    title_en = (data.title_en or "").strip()
    if len(title_en) > 200:
        errors.add("title_en", _l("At most %(n)d characters.", n=200))
    if data.risk_topic not in RISK_TOPICS:
        errors.add("risk_topic", _l("Choose a risk topic."))
    if data.owner_id is not None and data.owner_id not in {u.id for u in trainer_users(session)}:
        errors.add("owner_id", _l("The owner must be an active user with the trainer role."))
    rate = data.max_playback_rate
    if rate is None or not (MIN_PLAYBACK_RATE <= rate <= MAX_PLAYBACK_RATE):
        errors.add("max_playback_rate", _l("Choose a rate from 1.0 to 2.0."))
    description = (data.description or "").replace("\r\n", "\n").strip()
    if len(description) > 10_000:
        errors.add("description", _l("At most %(n)d characters.", n=10_000))
    errors.raise_if_any()
    return CourseInput(code=code, title_zh=title_zh, title_en=title_en,
                       risk_topic=data.risk_topic, description=description,
                       owner_id=data.owner_id, is_optional=bool(data.is_optional),
                       max_playback_rate=round(float(rate), 2))


def create_course(session: Session, data: CourseInput, *, actor_id: int | None) -> Course:
    """A new course with an empty draft version 1, ready for lessons."""
    clean = _check_course(session, data, None)
    course = Course(**clean.__dict__)
    session.add(course)
    session.add(CourseVersion(course=course, number=1, status="draft", change_note="",
                              requires_retraining=False, created_by_id=actor_id))
    session.flush()
    ledger.append(session, kind="course.created", subject=f"course:{course.id}",
                  actor_id=actor_id, payload={"code": course.code, **_course_fields(course)})
    return course


def _course_fields(course: Course) -> dict[str, Any]:
    return {"title_zh": course.title_zh, "title_en": course.title_en,
            "risk_topic": course.risk_topic, "owner_id": course.owner_id,
            "is_optional": course.is_optional, "max_playback_rate": course.max_playback_rate}


def update_course(session: Session, course: Course, data: CourseInput, *,
                  actor_id: int | None = None) -> bool:
    """Change a course's description fields; True if anything changed (and then a
    "course.updated" ledger entry records old → new of each changed field).

    Titles, topic, owner and settings may change at any time (they describe the course,
    not what a version teaches); the code is pinned once a version is published."""
    clean = _check_course(session, data, course)
    changes: dict[str, list[Any]] = {}
    for key, value in clean.__dict__.items():
        old = getattr(course, key)
        if old != value:
            changes[key] = [old, value]
            setattr(course, key, value)
    session.flush()
    if changes:
        ledger.append(session, kind="course.updated", subject=f"course:{course.id}",
                      actor_id=actor_id, payload={"code": course.code, "changes": changes})
    return bool(changes)


# --- versions -----------------------------------------------------------------------


def _lock_version(session: Session, version: CourseVersion) -> str:
    """The version's stored status, with its row locked (PostgreSQL) so that editing a
    draft and publishing it cannot interleave."""
    return session.execute(
        select(CourseVersion.status).where(CourseVersion.id == version.id).with_for_update()
    ).scalar_one()


def frozen_message(version: CourseVersion, status: str) -> Any:
    if status == "retired":
        return _l("Version %(n)d is retired and can no longer be changed: learners' records "
                  "point at it. Create a new version to make changes.", n=version.number)
    return _l("Version %(n)d is published and can no longer be changed: learners' records "
              "point at it. Create a new version to make changes.", n=version.number)


def _require_draft(session: Session, version: CourseVersion) -> None:
    status = _lock_version(session, version)
    if status != "draft":
        raise AuthoringError.one(frozen_message(version, status))


def draft_of(session: Session, course: Course) -> CourseVersion | None:
    return session.scalar(select(CourseVersion).where(
        CourseVersion.course_id == course.id, CourseVersion.status == "draft"))


def lessons_of(session: Session, version: CourseVersion) -> list[Lesson]:
    """The version's lessons in order, with their media (fresh from the database)."""
    return list(session.scalars(
        select(Lesson).options(joinedload(Lesson.media))
        .where(Lesson.version_id == version.id).order_by(Lesson.position)
    ))


def new_version(session: Session, course: Course, *, change_note: str,
                requires_retraining: bool, actor_id: int | None) -> CourseVersion:
    """A draft numbered after the highest version, starting from the latest version's
    lessons (the same media files: nothing is copied on disk)."""
    errors = _Errors()
    note = (change_note or "").strip()
    if not note:
        errors.add("change_note", _l("Describe what changes in this version."))
    elif len(note) > 5000:
        errors.add("change_note", _l("At most %(n)d characters.", n=5000))
    draft = draft_of(session, course)
    if draft is not None:
        errors.add("", _l("Version %(n)d is still a draft. Publish or edit it; a course has "
                          "one draft at a time.", n=draft.number))
    errors.raise_if_any()

    latest = session.scalar(select(CourseVersion).where(CourseVersion.course_id == course.id)
                            .order_by(CourseVersion.number.desc()).limit(1))
    version = CourseVersion(course=course, number=(latest.number + 1) if latest else 1,
                            status="draft", change_note=note,
                            requires_retraining=bool(requires_retraining),
                            created_by_id=actor_id)
    session.add(version)
    if latest is not None:
        for lesson in lessons_of(session, latest):
            copy = Lesson(version=version, position=lesson.position, kind=lesson.kind,
                          title=lesson.title, body=lesson.body, media_id=lesson.media_id,
                          min_coverage=lesson.min_coverage,
                          policy_version_id=lesson.policy_version_id)
            session.add(copy)
            hooks = LESSON_KIND_HOOKS.get(lesson.kind)
            if hooks is not None:
                session.flush()
                hooks.copy(session, lesson, copy)
    session.flush()
    return version


def update_draft(session: Session, version: CourseVersion, *, change_note: str,
                 requires_retraining: bool) -> bool:
    _require_draft(session, version)
    note = (change_note or "").strip()
    errors = _Errors()
    if version.number > 1 and not note:
        errors.add("change_note", _l("Describe what changes in this version."))
    elif len(note) > 5000:
        errors.add("change_note", _l("At most %(n)d characters.", n=5000))
    errors.raise_if_any()
    changed = (version.change_note, version.requires_retraining) != (note,
                                                                     bool(requires_retraining))
    version.change_note = note
    version.requires_retraining = bool(requires_retraining)
    session.flush()
    return changed


def content_document(course_code: str, version_number: int, lessons: list[Lesson],
                     pinned: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
    """What a published version pins: the structure its content hash is taken over.
    A policy lesson pins the policy version it asks learners to sign (itself immutable
    once published, with its own document SHA-256); an exam lesson pins what its hooks'
    ``freeze`` returned (``pinned``, by lesson id: settings and the frozen pool's hash)."""
    pinned = pinned or {}
    out = []
    for lesson in sorted(lessons, key=lambda item: item.position):
        content = _lesson_content(lesson)
        if lesson.id in pinned:
            content[lesson.kind] = pinned[lesson.id]
        out.append(content)
    return {"course": course_code, "version": version_number, "lessons": out}


def _lesson_content(lesson: Lesson) -> dict[str, Any]:
    content: dict[str, Any] = {
        "position": lesson.position,
        "kind": lesson.kind,
        "title": lesson.title,
        "body": lesson.body or "",
        "media": None if lesson.media is None else {
            "sha256": lesson.media.sha256,
            "duration_seconds": lesson.media.duration_seconds,
        },
    }
    if lesson.kind == "policy":
        content["policy_version_id"] = lesson.policy_version_id
    return content


def content_hash(course_code: str, version_number: int, lessons: list[Lesson],
                 pinned: dict[int, dict[str, Any]] | None = None) -> str:
    """SHA-256 (hex) over the canonical JSON (sorted keys, UTF-8) of ``content_document``;
    anyone can recompute it from the published lessons (and their exams' frozen rows)."""
    text = canonical_json(content_document(course_code, version_number, lessons, pinned))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def recompute_content_hash(session: Session, version: CourseVersion) -> str:
    """The content hash of a version as its stored rows are now: equal to the published
    ``content_hash`` unless something was changed behind the triggers' back."""
    lessons = lessons_of(session, version)
    pinned = {lesson.id: LESSON_KIND_HOOKS[lesson.kind].pinned(session, lesson)
              for lesson in lessons if lesson.kind in LESSON_KIND_HOOKS}
    return content_hash(version.course.code, version.number, lessons, pinned)


def publish_version(session: Session, version: CourseVersion, *,
                    actor_id: int | None) -> str:
    """Freeze a draft, pin its content hash and record it in the ledger; return the hash.

    Earlier published versions stay published (learners part-way through keep their
    version) until a trainer retires them."""
    _require_draft(session, version)
    lessons = lessons_of(session, version)
    errors = _Errors()
    if not lessons:
        errors.add("", _l("Version %(n)d has no lessons. Add at least one lesson before "
                          "publishing.", n=version.number))
    for lesson in lessons:
        if lesson.kind == "video" and (lesson.media is None
                                       or not lesson.media.duration_seconds):
            errors.add("", _l("Lesson %(pos)d “%(title)s” is a video lesson without a video. "
                              "Upload the video or delete the lesson.",
                              pos=lesson.position, title=lesson.title))
        hooks = LESSON_KIND_HOOKS.get(lesson.kind)
        if hooks is not None:
            for problem in hooks.problems(session, lesson):
                errors.add("", problem)
    errors.raise_if_any()

    # Frozen (and flushed) while the version is still a draft in the database.
    pinned = {lesson.id: LESSON_KIND_HOOKS[lesson.kind].freeze(session, lesson)
              for lesson in lessons if lesson.kind in LESSON_KIND_HOOKS}
    course = version.course
    digest = content_hash(course.code, version.number, lessons, pinned)
    version.content_hash = digest
    version.status = "published"
    version.published_at = utcnow()
    version.published_by_id = actor_id
    session.flush()
    ledger.append(session, kind="course.version_published",
                  subject=f"course_version:{version.id}", actor_id=actor_id, payload={
                      "course_id": course.id,
                      "course_code": course.code,
                      "version": version.number,
                      "content_hash": digest,
                      "lessons": len(lessons),
                      "requires_retraining": version.requires_retraining,
                      "change_note": version.change_note,
                  })
    return digest


def retire_version(session: Session, version: CourseVersion, *, actor_id: int | None) -> None:
    """Take a published version out of use (no new enrolments); its records stay."""
    status = _lock_version(session, version)
    if status != "published":
        raise AuthoringError.one(_l("Only a published version can be retired; version %(n)d "
                                    "is not published.", n=version.number))
    version.status = "retired"
    version.retired_at = utcnow()
    session.flush()
    ledger.append(session, kind="course.version_retired",
                  subject=f"course_version:{version.id}", actor_id=actor_id, payload={
                      "course_id": version.course.id,
                      "course_code": version.course.code,
                      "version": version.number,
                      "content_hash": version.content_hash,
                  })


# --- lessons of a draft -------------------------------------------------------------


def _check_title(errors: _Errors, title: str) -> str:
    title = (title or "").strip()
    if not title:
        errors.add("title", _l("Enter a title."))
    elif len(title) > 200:
        errors.add("title", _l("At most %(n)d characters.", n=200))
    return title


def _check_body(errors: _Errors, body: str) -> str:
    body = (body or "").replace("\r\n", "\n").strip()
    if not body:
        errors.add("body", _l("Enter the text of the document."))
    elif len(body) > MAX_BODY_CHARS:
        errors.add("body", _l("At most %(n)d characters.", n=MAX_BODY_CHARS))
    return body


def _next_position(session: Session, version: CourseVersion) -> int:
    top = session.scalar(select(func.max(Lesson.position)).where(Lesson.version_id == version.id))
    return (top or 0) + 1


def add_document_lesson(session: Session, version: CourseVersion, *, title: str,
                        body: str) -> Lesson:
    _require_draft(session, version)
    errors = _Errors()
    title = _check_title(errors, title)
    body = _check_body(errors, body)
    errors.raise_if_any()
    lesson = Lesson(version=version, position=_next_position(session, version),
                    kind="document", title=title, body=body)
    session.add(lesson)
    session.flush()
    return lesson


def add_video_lesson(session: Session, version: CourseVersion, *, title: str,
                     stream: BinaryIO, filename: str, uploaded_by_id: int | None,
                     max_bytes: int, store: MediaStorage | None = None) -> Lesson:
    """Check and store an uploaded video, then append a lesson playing it.

    Raises ``MediaError`` (see courses.media) when the file is refused; nothing is left
    in storage then. The caller deletes the stored file if its commit fails.
    """
    _require_draft(session, version)
    errors = _Errors()
    title = (title or "").strip()
    if len(title) > 200:
        errors.add("title", _l("At most %(n)d characters.", n=200))
    errors.raise_if_any()
    store = store or storage()
    asset = ingest_video(session, stream, filename, uploaded_by_id=uploaded_by_id,
                         max_bytes=max_bytes, store=store)
    try:
        if not title:  # default: the file's name without its extension
            title = asset.original_filename.rsplit(".", 1)[0].strip()[:200] or "video"
        lesson = Lesson(version=version, position=_next_position(session, version),
                        kind="video", title=title, media=asset)
        session.add(lesson)
        session.flush()
        ledger.append(session, kind="media.uploaded", subject=f"media:{asset.id}",
                      actor_id=uploaded_by_id, payload={
                          "sha256": asset.sha256,
                          "size": asset.size_bytes,
                          "duration": asset.duration_seconds,
                          "filename": asset.original_filename,
                          "content_type": asset.content_type,
                          "course_version_id": version.id,
                          "lesson_id": lesson.id,
                      })
    except Exception:
        store.delete(asset.storage_key)  # no stored file without its record
        raise
    return lesson


def update_lesson(session: Session, lesson: Lesson, *, title: str,
                  body: str | None = None) -> bool:
    """Change a draft lesson's title (and, for documents, its text); True if changed."""
    _require_draft(session, lesson.version)
    errors = _Errors()
    title = _check_title(errors, title)
    if lesson.kind == "document":
        body = _check_body(errors, body or "")
    errors.raise_if_any()
    changed = lesson.title != title or (lesson.kind == "document" and lesson.body != body)
    lesson.title = title
    if lesson.kind == "document":
        lesson.body = body or ""
    session.flush()
    return changed


def _renumber(session: Session, ordered: list[Lesson]) -> None:
    """Give ``ordered`` positions 1..n. Two passes through temporary negative positions,
    because the unique (version, position) constraint is checked row by row."""
    moving = [(lesson, n) for n, lesson in enumerate(ordered, start=1) if lesson.position != n]
    if not moving:
        return
    for lesson, n in moving:
        lesson.position = -n
    session.flush()
    for lesson, n in moving:
        lesson.position = n
    session.flush()


def move_lesson(session: Session, lesson: Lesson, offset: int) -> bool:
    """Move a lesson up (-1) or down (+1); False when it is already at that end."""
    version = lesson.version
    _require_draft(session, version)
    ordered = lessons_of(session, version)
    index = next(i for i, item in enumerate(ordered) if item.id == lesson.id)
    target = index + offset
    if offset not in (-1, 1) or not 0 <= target < len(ordered):
        return False
    ordered[index], ordered[target] = ordered[target], ordered[index]
    _renumber(session, ordered)
    session.expire(version, ["lessons"])
    return True


def delete_lesson(session: Session, lesson: Lesson) -> None:
    """Remove a lesson from a draft and close the gap. Its video stays stored: earlier
    versions may still play it."""
    version = lesson.version
    _require_draft(session, version)
    hooks = LESSON_KIND_HOOKS.get(lesson.kind)
    if hooks is not None:
        hooks.delete(session, lesson)
    session.delete(lesson)
    session.flush()
    _renumber(session, lessons_of(session, version))
    session.expire(version, ["lessons"])


# --- media ----------------------------------------------------------------------------


def media_error_message(code: str, *, max_mb: int) -> Any:
    """What the trainer is told when an upload is refused (MediaError codes)."""
    messages = {
        "empty": _l("The file is empty. Choose the video file again."),
        "too_large": _l("The video is larger than the limit of %(mb)d MB. Compress it or split "
                        "it into shorter lessons.", mb=max_mb),
        "not_video": _l("This file is not an MP4 or WebM video (judged by its content, not its "
                        "name). Use MP4 (H.264/AAC) or WebM (VP8/VP9)."),
        "no_duration": _l("The video's duration could not be read from the file; it may be "
                          "damaged or in an unsupported format. Use MP4 (H.264/AAC) or WebM "
                          "(VP8/VP9)."),
    }
    return messages.get(code, _l("The video was refused (%(code)s).", code=code))


def can_view_media(session: Session, user: User, media_id: int) -> bool:
    """Staff see every file; a learner only files of lessons in a version they are
    enrolled in (one EXISTS query)."""
    if user.has_role(*STAFF_ROLES):
        return True
    return bool(session.scalar(select(exists().where(
        Enrollment.user_id == user.id,
        Enrollment.version_id == Lesson.version_id,
        Lesson.media_id == media_id,
    ))))

