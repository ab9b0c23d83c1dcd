"""The last line of defence for published course content.

Learners' records point at a course version, and its ``content_hash`` pins what they
were shown; a court must be able to trust that neither changed afterwards. The service
layer (courses/authoring.py) refuses such edits with a message for the trainer; this
``before_flush`` guard refuses them for every other code path that goes through the ORM
(a CLI command, a future API, a slip in a new view), on every session of the process.

What counts is the status *stored in the database*, so publishing a draft is allowed and
so is the one transition a published version may still make (published → retired,
setting ``retired_at``). Frozen are: every other attribute of a published or retired
version; its lessons (added, changed, moved, deleted); the media assets such lessons
use; and the course code (it is part of the content hash).

Bulk ``update()``/``delete()`` statements and raw SQL bypass the ORM unit of work and so
this guard; database triggers (migration 0006) refuse those, so the guard's job is a
clear message before the database would say no.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session

from courses.models import Course, CourseVersion, Lesson, MediaAsset

__all__ = ["FROZEN_STATUSES", "PublishedVersionError"]

FROZEN_STATUSES = ("published", "retired")
# What a version whose stored status is the key may still change.
_ALLOWED_CHANGES = {"published": {"status", "retired_at"}, "retired": set()}
_ALLOWED_STATUS_MOVES = {("published", "retired")}


class PublishedVersionError(RuntimeError):
    """Something tried to change content that learners may already have been shown."""


def _changed_attrs(obj: Any, skip: Iterable[str] = ()) -> set[str]:
    state = inspect(obj)
    return {attr.key for attr in state.attrs
            if attr.key not in skip and attr.history.has_changes()}


def _history_values(obj: Any, key: str) -> set[Any]:
    """Every value an attribute held or holds in this flush (old and new)."""
    hist = inspect(obj).attrs[key].history
    return {v for v in (*hist.added, *hist.unchanged, *hist.deleted) if v is not None}


def _version_ids_of(lesson: Lesson) -> set[int]:
    """The versions a lesson belonged to or is being moved to."""
    ids = set(_history_values(lesson, "version_id"))
    for version in _history_values(lesson, "version"):
        if version.id is not None:
            ids.add(version.id)
    return ids


def _stored_statuses(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = session.execute(
        select(CourseVersion.id, CourseVersion.status).where(CourseVersion.id.in_(ids))
    ).all()
    return dict(rows)  # type: ignore[arg-type]


def _describe(version_id: int, status: str) -> str:
    return f"course version {version_id} is {status}"


@event.listens_for(Session, "before_flush")
def _guard_published_content(session: Session, _context: Any, _instances: Any) -> None:
    # Cheap for unrelated flushes (the heartbeat hot path): no query unless course
    # content is among the pending changes.
    versions_dirty = [o for o in session.dirty if isinstance(o, CourseVersion)]
    versions_deleted = [o for o in session.deleted if isinstance(o, CourseVersion)]
    lessons = [(o, "new") for o in session.new if isinstance(o, Lesson)]
    lessons += [(o, "dirty") for o in session.dirty if isinstance(o, Lesson)]
    lessons += [(o, "deleted") for o in session.deleted if isinstance(o, Lesson)]
    media = [o for o in (*session.dirty, *session.deleted) if isinstance(o, MediaAsset)]
    courses = [o for o in session.dirty if isinstance(o, Course)]
    if not (versions_dirty or versions_deleted or lessons or media or courses):
        return

    lessons = [(o, how) for o, how in lessons if how != "dirty" or _changed_attrs(o)]
    # Where persistent lessons are stored now (their loaded attributes may be expired).
    stored_lessons = {o.id for o, how in lessons if how != "new" and o.id is not None}
    lesson_homes: dict[int, int] = dict(session.execute(  # type: ignore[arg-type]
        select(Lesson.id, Lesson.version_id).where(Lesson.id.in_(stored_lessons))
    ).all()) if stored_lessons else {}
    lesson_versions: list[tuple[Lesson, str, set[int]]] = []
    for lesson, how in lessons:
        vids = _version_ids_of(lesson)
        if lesson.id in lesson_homes:
            vids.add(lesson_homes[lesson.id])
        lesson_versions.append((lesson, how, vids))
    ids = {v.id for v in (*versions_dirty, *versions_deleted) if v.id is not None}
    for _lesson, _how, vids in lesson_versions:
        ids |= vids
    stored = _stored_statuses(session, ids)

    for version in versions_deleted:
        status = stored.get(version.id)
        if status in FROZEN_STATUSES:
            raise PublishedVersionError(f"{_describe(version.id, status)}: it cannot be deleted")
    for version in versions_dirty:
        status = stored.get(version.id)
        if status not in FROZEN_STATUSES:
            continue
        changed = _changed_attrs(version, skip=("lessons",))  # lessons are checked below
        forbidden = changed - _ALLOWED_CHANGES[status]
        if "status" in changed and (status, version.status) not in _ALLOWED_STATUS_MOVES:
            forbidden.add("status")
        if forbidden:
            raise PublishedVersionError(
                f"{_describe(version.id, status)}: {', '.join(sorted(forbidden))} cannot change"
            )
    for lesson, how, vids in lesson_versions:
        frozen = sorted(v for v in vids if stored.get(v) in FROZEN_STATUSES)
        if frozen:
            verb = {"new": "added to", "dirty": "changed in", "deleted": "deleted from"}[how]
            raise PublishedVersionError(
                f"lesson {lesson.id or '(new)'} cannot be {verb} "
                f"{_describe(frozen[0], stored[frozen[0]])}"
            )

    media_ids = {m.id for m in media if m.id is not None
                 and (m in session.deleted or _changed_attrs(m))}
    if media_ids:
        used = session.scalar(
            select(Lesson.media_id).join(CourseVersion, Lesson.version_id == CourseVersion.id)
            .where(Lesson.media_id.in_(media_ids), CourseVersion.status.in_(FROZEN_STATUSES))
            .limit(1)
        )
        if used is not None:
            raise PublishedVersionError(
                f"media asset {used} is used by a published course version"
            )

    recoded = [c.id for c in courses if c.id is not None and "code" in _changed_attrs(c)]
    if recoded:
        pinned = session.scalar(
            select(CourseVersion.course_id)
            .where(CourseVersion.course_id.in_(recoded),
                   CourseVersion.status.in_(FROZEN_STATUSES))
            .limit(1)
        )
        if pinned is not None:
            raise PublishedVersionError(
                f"course {pinned} has published versions: its code cannot change"
            )
