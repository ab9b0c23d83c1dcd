"""Watch tracking on the server: playback sessions, heartbeats, lesson and course
completion. The rules themselves are pure (courses/watch.py); this module feeds them the
stored state and the SERVER's receive time, and writes what they decide.

The heartbeat is the hot path. ``record_beat`` reads ONE row (the learner's progress on
the lesson, joined to the playback session named by the beat and to the login session of
the cookie, so a token of another user or a revoked login finds nothing) and writes it
back with ONE ``UPDATE … WHERE id = :id AND last_seq = :old_seq AND active_session_id =
:sid``: two beats racing (or a new session superseding this one) cannot both win, and the
loser re-reads once and is judged again. A ``WatchRejection`` row is inserted only for a
rejected beat. Nothing commits here; the view does.

Completion is judged only on credited intervals (``watch.is_complete``), never on the
browser's "ended" event. When it first holds, the same transaction stamps
``completed_at`` and appends a "lesson.completed" ledger entry with the digest of the
interval set; from then on the lesson's merged set is frozen, so the stored set always
matches the digest in the ledger (later viewing is still logged per session).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from courses import watch
from courses.learning_forms import BeatInput
from courses.models import (
    Course,
    CourseVersion,
    Enrollment,
    Lesson,
    LessonProgress,
    MediaAsset,
    PlaybackSession,
    WatchRejection,
)
from lms import ledger
from lms.auth.models import UserSession
from lms.auth.sessions import token_digest as login_token_digest
from lms.dbtypes import utcnow
from lms.ledger import LedgerEntry
from lms.people.models import Employee, User

__all__ = [
    "HEARTBEAT_SECONDS",
    "BeatResult",
    "DocumentRefused",
    "SessionStart",
    "clock",
    "complete_document",
    "record_beat",
    "start_session",
]

HEARTBEAT_SECONDS = 5
DEFAULT_MIN_READ_SECONDS = 30
_MAX_RETRIES = 5


def clock() -> datetime:
    """The server's receive time (tests replace this function to control time)."""
    return utcnow()


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def policy_for(duration: float, max_rate: float, min_coverage: float) -> watch.WatchPolicy:
    return watch.WatchPolicy(duration=duration, max_rate=min(max_rate, watch.MAX_RATE_LIMIT),
                             min_coverage=min_coverage)


# --- sessions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionStart:
    """What the player needs to begin: JSON-ready."""

    token: str
    resume: float
    furthest: float
    watched: float
    coverage: float
    completed: bool
    duration: float | None
    max_rate: float
    heartbeat: int

    def as_json(self) -> dict[str, Any]:
        return {"session": self.token, "resume": round(self.resume, 3),
                "furthest": round(self.furthest, 3), "watched": round(self.watched, 1),
                "coverage": round(self.coverage, 4), "completed": self.completed,
                "duration": self.duration, "max_rate": self.max_rate,
                "heartbeat": self.heartbeat}


def _ensure_progress(session: Session, enrollment_id: int, user_id: int, lesson_id: int) -> None:
    """Create the enrolment's progress row if missing (a concurrent creator is fine)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert(LessonProgress.__table__)
        .values(user_id=user_id, enrollment_id=enrollment_id, lesson_id=lesson_id,
                intervals="[]", watched_seconds=0.0,
                furthest_position=0.0, last_seq=0, last_position=0.0,
                session_intervals="[]", session_beats=0, updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=["enrollment_id", "lesson_id"])
    )


# Every new session's first beats get the rules' small jitter allowance afresh; spacing
# session starts at least this far apart keeps "start, claim the allowance, start again"
# from ever crediting more than the wall clock allows.
SESSION_START_MIN_INTERVAL = timedelta(seconds=3)


class SessionStartTooSoon(Exception):
    """Another playback session of this learner and lesson started moments ago."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after:.1f} s")
        self.retry_after = retry_after


def start_session(session: Session, *, user_id: int, enrollment_id: int, lesson: Lesson,
                  ip: str | None, user_agent: str | None) -> SessionStart:
    """Issue a new playback session for the learner on the lesson and make it the active
    one. The previous active session (another tab, another device, an earlier visit) is
    ended as "superseded", with the credit and beat count it earned copied onto its row
    for the watch log; its later beats are rejected."""
    now = clock()
    _ensure_progress(session, enrollment_id, user_id, lesson.id)
    latest = None if lesson.kind != "video" else session.execute(  # documents: no allowance
        select(PlaybackSession.started_at)
        .where(PlaybackSession.user_id == user_id, PlaybackSession.lesson_id == lesson.id)
        .order_by(PlaybackSession.started_at.desc()).limit(1)
    ).scalar()
    if latest is not None and now - latest < SESSION_START_MIN_INTERVAL:
        raise SessionStartTooSoon((SESSION_START_MIN_INTERVAL - (now - latest)).total_seconds())
    new = PlaybackSession(token=secrets.token_urlsafe(24), user_id=user_id,
                          enrollment_id=enrollment_id, lesson_id=lesson.id, started_at=now, ip=(ip or "")[:64] or None,
                          user_agent=(user_agent or "")[:512] or None)
    session.add(new)
    session.flush()
    progress = LessonProgress.__table__.c
    for _attempt in range(_MAX_RETRIES):
        row = session.execute(
            select(progress.id, progress.active_session_id, progress.last_seq,
                   progress.last_position, progress.last_beat_at, progress.session_intervals,
                   progress.session_beats, progress.furthest_position,
                   progress.watched_seconds, progress.intervals, progress.completed_at)
            .where(progress.enrollment_id == enrollment_id, progress.lesson_id == lesson.id)
        ).one()
        same_session = (progress.active_session_id.is_(None) if row.active_session_id is None
                        else progress.active_session_id == row.active_session_id)
        done = session.execute(
            update(LessonProgress.__table__)
            .where(progress.id == row.id, progress.last_seq == row.last_seq, same_session)
            .values(active_session_id=new.id, last_seq=0, last_beat_at=None,
                    anchor_position=None, anchor_wall=None, session_intervals="[]",
                    session_beats=0, updated_at=now)
        ).rowcount
        if done == 1:
            break
    else:  # pragma: no cover - needs five beats landing between a read and its write
        raise RuntimeError("could not start a playback session: the progress row kept changing")

    if row.active_session_id is not None:
        _end_session(session, row.active_session_id, reason="superseded", at=now,
                     intervals=row.session_intervals, beats=row.session_beats,
                     last_beat_at=row.last_beat_at)

    duration = lesson.media.duration_seconds if lesson.media is not None else None
    resume = row.last_position or 0.0
    if duration is None or resume >= duration - 1.0 or resume < 0:
        resume = 0.0  # watched to the end (or a document): start again from the top
    intervals = watch.loads(row.intervals)
    return SessionStart(
        token=new.token, resume=resume, furthest=row.furthest_position,
        watched=row.watched_seconds,
        coverage=watch.coverage(intervals, duration) if duration else 0.0,
        completed=row.completed_at is not None, duration=duration,
        max_rate=lesson.version.course.max_playback_rate, heartbeat=HEARTBEAT_SECONDS)


def _end_session(session: Session, session_id: int, *, reason: str, at: datetime,
                 intervals: str, beats: int, last_beat_at: datetime | None) -> None:
    session.execute(
        update(PlaybackSession.__table__)
        .where(PlaybackSession.__table__.c.id == session_id,
               PlaybackSession.__table__.c.ended_at.is_(None))
        .values(ended_at=at, ended_reason=reason, credited_intervals=intervals,
                credited_seconds=watch.total(watch.loads(intervals)), beats_accepted=beats,
                last_beat_at=last_beat_at)
    )


# --- heartbeats -------------------------------------------------------------------------


@dataclass(frozen=True)
class BeatResult:
    watched: float
    coverage: float
    completed: bool
    furthest: float
    rejected: str | None = None

    def as_json(self) -> str:
        body: dict[str, Any] = {"watched": round(self.watched, 1),
                                "coverage": round(self.coverage, 4),
                                "completed": self.completed,
                                "furthest": round(self.furthest, 3)}
        if self.rejected:
            body["rejected"] = self.rejected
        return json.dumps(body, separators=(",", ":"))


_P = LessonProgress.__table__.c
_S = PlaybackSession.__table__.c
_L = Lesson.__table__.c
_M = MediaAsset.__table__.c
_V = CourseVersion.__table__.c
_C = Course.__table__.c
_US = UserSession.__table__.c

# The hot path's two statements are built once: building SQLAlchemy constructs per beat
# costs more than running them. Every join is on a unique or primary key.
_BEAT_READ = (
    select(_P.id, _P.intervals, _P.watched_seconds, _P.furthest_position,
           _P.active_session_id, _P.last_seq, _P.last_position, _P.last_beat_at,
           _P.anchor_position, _P.anchor_wall, _P.session_intervals, _P.session_beats,
           _P.completed_at, _S.id.label("session_id"), _S.user_id, _S.lesson_id,
           _S.enrollment_id,
           _L.min_coverage, _M.duration_seconds, _C.max_playback_rate)
    .select_from(
        PlaybackSession.__table__
        .join(UserSession.__table__,
              and_(_US.token_hash == bindparam("login_hash"), _US.user_id == _S.user_id,
                   _US.revoked_at.is_(None), _US.expires_at > bindparam("login_now")))
        .join(LessonProgress.__table__,
              and_(_P.enrollment_id == _S.enrollment_id, _P.lesson_id == _S.lesson_id))
        .join(Lesson.__table__, _L.id == _S.lesson_id)
        .outerjoin(MediaAsset.__table__, _M.id == _L.media_id)
        .join(CourseVersion.__table__, _V.id == _L.version_id)
        .join(Course.__table__, _C.id == _V.course_id))
    .where(_S.token == bindparam("token"))
)
# Optimistic concurrency: the row is written only if nothing changed it since the read.
_BEAT_WRITE = (
    update(LessonProgress.__table__)
    .where(_P.id == bindparam("w_id"), _P.last_seq == bindparam("w_old_seq"),
           _P.active_session_id == bindparam("w_session_id"))
    .values({name: bindparam(f"v_{name}") for name in (
        "last_seq", "last_position", "last_beat_at", "anchor_position", "anchor_wall",
        "intervals", "watched_seconds", "furthest_position", "session_intervals",
        "session_beats", "completed_at", "updated_at")})
)
_REJECT = WatchRejection.__table__.insert()


def _reject(session: Session, row, beat: BeatInput, reason: str, ip: str | None,
            now: datetime, detail: str = "") -> None:
    session.connection().execute(_REJECT, {
        "session_id": row.session_id, "user_id": row.user_id, "lesson_id": row.lesson_id,
        "enrollment_id": row.enrollment_id,
        "seq": beat.seq, "position": beat.position, "reason": reason,
        "detail": (detail or f"event={beat.event}")[:200], "received_at": now,
        "ip": (ip or "")[:64] or None})


def _verdict(row, rejected: str | None) -> BeatResult:
    """The answer to a beat that changed nothing on the lesson's record."""
    duration = row.duration_seconds or 0.0
    coverage = watch.coverage(watch.loads(row.intervals), duration) if duration else 0.0
    return BeatResult(row.watched_seconds, coverage, row.completed_at is not None,
                      row.furthest_position, rejected)


def record_beat(session: Session, *, login_token: str, beat: BeatInput,
                ip: str | None) -> BeatResult | None:
    """Judge one heartbeat and store the outcome. None when the beat's session is not
    one of the logged-in user's (unknown token, another user's, or a dead login).

    The login is checked in the same read, against the login-session row (not revoked,
    not expired); disabling a user revokes their login sessions (lms.auth.sessions).
    """
    now = clock()
    read_params = {"token": beat.session, "login_hash": login_token_digest(login_token),
                   "login_now": utcnow()}
    conn = session.connection()  # Core execution: the ORM layer adds nothing here
    for attempt in range(2):
        row = conn.execute(_BEAT_READ, read_params).first()
        if row is None:
            return None
        if row.active_session_id != row.session_id:
            reason = "superseded" if row.active_session_id is not None else "not_started"
            _reject(session, row, beat, reason, ip, now)
            return _verdict(row, reason)
        if not row.duration_seconds:  # a document lesson: nothing to watch
            _reject(session, row, beat, "not_started", ip, now, "no video")
            return _verdict(row, "not_started")

        policy = policy_for(row.duration_seconds, row.max_playback_rate, row.min_coverage)
        last_wall = row.last_beat_at.timestamp() if row.last_beat_at is not None else None
        state = watch.RunState(row.last_seq, row.last_position, last_wall,
                               row.anchor_position, row.anchor_wall)
        outcome = watch.judge_beat(
            state, watch.Beat(beat.seq, beat.position, now.timestamp(), beat.event), policy)
        if outcome.state is state:  # replayed / out of range: nothing to write back
            _reject(session, row, beat, outcome.rejected or "replayed", ip, now)
            return _verdict(row, outcome.rejected)

        new = outcome.state
        merged = watch.loads(row.intervals)
        params: dict[str, Any] = {
            "w_id": row.id, "w_old_seq": row.last_seq, "w_session_id": row.session_id,
            "v_last_seq": new.last_seq, "v_last_position": new.last_position,
            "v_last_beat_at": _at(new.last_wall), "v_anchor_position": new.anchor_position,
            "v_anchor_wall": new.anchor_wall, "v_intervals": row.intervals,
            "v_watched_seconds": row.watched_seconds,
            "v_furthest_position": row.furthest_position,
            "v_session_intervals": row.session_intervals,
            "v_session_beats": row.session_beats + (outcome.rejected is None),
            "v_completed_at": row.completed_at, "v_updated_at": now,
        }
        completing = False
        credited = outcome.credited
        if credited is not None:
            params["v_session_intervals"] = watch.dumps(watch.clip(
                watch.add_interval(watch.loads(row.session_intervals), credited),
                policy.duration))
            if row.completed_at is None:  # frozen once complete (it matches the ledger)
                merged = watch.clip(watch.add_interval(merged, credited), policy.duration)
                params.update(v_intervals=watch.dumps(merged),
                              v_watched_seconds=watch.total(merged),
                              v_furthest_position=max(row.furthest_position, credited[1]))
                if watch.is_complete(merged, policy):
                    completing = True
                    params["v_completed_at"] = now
        coverage = watch.coverage(merged, policy.duration)  # before the write: short locks
        if conn.execute(_BEAT_WRITE, params).rowcount == 1:
            break
        if attempt == 1:  # lost the race twice: count it as a duplicate
            _reject(session, row, beat, "replayed", ip, now, "concurrent beat")
            return _verdict(row, "replayed")
    if outcome.rejected is not None:
        _reject(session, row, beat, outcome.rejected, ip, now)
    if completing:
        _record_completion(session, user_id=row.user_id, enrollment_id=row.enrollment_id,
                           lesson_id=row.lesson_id, progress_id=row.id, at=now, evidence={
                               "duration": policy.duration,
                               "watched_seconds": round(params["v_watched_seconds"], 3),
                               "coverage": round(coverage, 6),
                               "intervals_digest": watch.intervals_digest(merged),
                           })
    return BeatResult(params["v_watched_seconds"], coverage,
                      params["v_completed_at"] is not None, params["v_furthest_position"],
                      outcome.rejected)


# --- completion -------------------------------------------------------------------------


def _record_completion(session: Session, *, user_id: int, enrollment_id: int, lesson_id: int,
                       progress_id: int, at: datetime, evidence: dict[str, Any]) -> int:
    """Append "lesson.completed" (and "course.completed" when it was the last lesson) in
    the caller's transaction; return the lesson entry's sequence number."""
    info = session.execute(
        select(User.username, Employee.employee_no, Course.code, CourseVersion.id,
               CourseVersion.number, CourseVersion.content_hash, Enrollment.cycle, Lesson.kind,
               Lesson.position, Lesson.title)
        .select_from(Lesson)
        .join(CourseVersion, CourseVersion.id == Lesson.version_id)
        .join(Course, Course.id == CourseVersion.course_id)
        .join(Enrollment, Enrollment.id == enrollment_id)
        .join(User, User.id == user_id)
        .outerjoin(Employee, Employee.id == User.employee_id)
        .where(Lesson.id == lesson_id)
    ).one()
    sessions = session.scalar(select(func.count()).select_from(PlaybackSession).where(
        PlaybackSession.enrollment_id == enrollment_id, PlaybackSession.lesson_id == lesson_id))
    rejected = session.scalar(select(func.count()).select_from(WatchRejection).where(
        WatchRejection.enrollment_id == enrollment_id, WatchRejection.lesson_id == lesson_id))
    entry = ledger.append(session, kind="lesson.completed", subject=f"lesson:{lesson_id}",
                          actor_id=user_id, payload={
                              "user": info.username, "employee_no": info.employee_no,
                              "course_code": info.code, "version_number": info.number,
                              "content_hash": info.content_hash, "lesson_id": lesson_id,
                              "lesson_kind": info.kind, "lesson_position": info.position,
                              "lesson_title": info.title, "completed_at": at.isoformat(),
                              "enrollment_id": enrollment_id, "cycle": info.cycle,
                              "session_count": sessions, "rejected_beats": rejected,
                              **evidence,
                          })
    session.execute(update(LessonProgress.__table__).where(_P.id == progress_id)
                    .values(completion_ledger_seq=entry.seq))
    _complete_course_if_done(session, user_id=user_id, enrollment_id=enrollment_id,
                             version_id=info.id, at=at, info=info)
    return entry.seq


def _completion_info(session: Session, *, user_id: int, enrollment_id: int, lesson_id: int):
    return session.execute(
        select(User.username, Employee.employee_no, Course.code, CourseVersion.id,
               CourseVersion.number, CourseVersion.content_hash, Enrollment.cycle)
        .select_from(Lesson)
        .join(CourseVersion, CourseVersion.id == Lesson.version_id)
        .join(Course, Course.id == CourseVersion.course_id)
        .join(Enrollment, Enrollment.id == enrollment_id)
        .join(User, User.id == user_id)
        .outerjoin(Employee, Employee.id == User.employee_id)
        .where(Lesson.id == lesson_id)
    ).one()


def complete_lesson(session: Session, *, user_id: int, enrollment_id: int, lesson_id: int,
                    at: datetime, ledger_seq: int) -> None:
    """Mark a lesson of an enrolment complete whose evidence is an entry appended by
    another module (a signature, a passed exam) and complete the course when it was the
    last lesson."""
    _ensure_progress(session, enrollment_id, user_id, lesson_id)
    session.execute(update(LessonProgress.__table__)
                    .where(_P.enrollment_id == enrollment_id, _P.lesson_id == lesson_id,
                           _P.completed_at.is_(None))
                    .values(completed_at=at, completion_ledger_seq=ledger_seq, updated_at=at))
    info = _completion_info(session, user_id=user_id, enrollment_id=enrollment_id,
                            lesson_id=lesson_id)
    _complete_course_if_done(session, user_id=user_id, enrollment_id=enrollment_id,
                             version_id=info.id, at=at, info=info)


def _complete_course_if_done(session: Session, *, user_id: int, enrollment_id: int,
                             version_id: int, at: datetime, info) -> None:
    """Append "course.completed" listing each lesson's evidence entry (seq and hash)."""
    lessons = session.execute(
        select(Lesson.id, Lesson.kind, LessonProgress.completed_at,
               LessonProgress.completion_ledger_seq, LedgerEntry.hash)
        .outerjoin(LessonProgress, and_(LessonProgress.lesson_id == Lesson.id,
                                        LessonProgress.enrollment_id == enrollment_id))
        .outerjoin(LedgerEntry, LedgerEntry.seq == LessonProgress.completion_ledger_seq)
        .where(Lesson.version_id == version_id).order_by(Lesson.position)
    ).all()
    if not lessons or any(row.completed_at is None for row in lessons):
        return
    enrolment = Enrollment.__table__.c
    done = session.execute(
        update(Enrollment.__table__)
        .where(enrolment.id == enrollment_id, enrolment.completed_at.is_(None))
        .values(completed_at=at)
    ).rowcount
    if done:
        ledger.append(session, kind="course.completed", subject=f"course_version:{version_id}",
                      actor_id=user_id, payload={
                          "user": info.username, "employee_no": info.employee_no,
                          "course_code": info.code, "version_number": info.number,
                          "content_hash": info.content_hash, "completed_at": at.isoformat(),
                          "enrollment_id": enrollment_id, "cycle": info.cycle,
                          "lessons": [{"lesson_id": row.id, "kind": row.kind,
                                       "ledger_seq": row.completion_ledger_seq,
                                       "ledger_hash": row.hash}
                                      for row in lessons],
                      })


class DocumentRefused(Exception):
    """The "I have read this" confirmation was refused; ``code`` says why."""

    def __init__(self, code: str, remaining: int = 0) -> None:
        super().__init__(code)
        self.code = code  # "too_early" or "stale"
        self.remaining = remaining


def complete_document(session: Session, *, user_id: int, lesson: Lesson, token: str,
                      min_seconds: int) -> bool:
    """Complete a document lesson when the learner confirms reading it, at least
    ``min_seconds`` after the page was served (the session's start, on the server's
    clock). Returns False when it was complete already."""
    now = clock()
    row = session.execute(
        select(PlaybackSession.id, PlaybackSession.started_at, LessonProgress.id,
               LessonProgress.active_session_id, LessonProgress.completed_at,
               LessonProgress.session_intervals, LessonProgress.session_beats,
               LessonProgress.enrollment_id)
        .join(LessonProgress, and_(LessonProgress.enrollment_id == PlaybackSession.enrollment_id,
                                   LessonProgress.lesson_id == PlaybackSession.lesson_id))
        .where(PlaybackSession.token == token, PlaybackSession.user_id == user_id,
               PlaybackSession.lesson_id == lesson.id)
    ).first()
    if row is None or row[3] != row[0]:
        raise DocumentRefused("stale")
    session_id, started_at, progress_id, _active, completed_at, _si, _sb, enrollment_id = row
    if completed_at is not None:
        return False
    elapsed = (now - started_at).total_seconds()
    if elapsed < min_seconds:
        raise DocumentRefused("too_early", remaining=max(1, int(min_seconds - elapsed + 0.999)))
    done = session.execute(
        update(LessonProgress.__table__)
        .where(_P.id == progress_id, _P.completed_at.is_(None),
               _P.active_session_id == session_id)
        .values(completed_at=now, updated_at=now)
    ).rowcount
    if not done:
        return False
    _end_session(session, session_id, reason="completed", at=now, intervals="[]", beats=0,
                 last_beat_at=None)
    _record_completion(session, user_id=user_id, enrollment_id=enrollment_id,
                       lesson_id=lesson.id, progress_id=progress_id, at=now, evidence={"reading_seconds": round(elapsed, 1),
                                         "min_reading_seconds": min_seconds})
    return True
