"""Watch tracking through the real endpoints, with the server's clock under control:
only time really watched is credited, every refused beat is logged, and completion is
written to the ledger exactly once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import event, func, select
from support import Clock

from courses import tracking, watch
from courses.media import ingest_video
from courses.models import (
    Course,
    CourseVersion,
    Enrollment,
    Lesson,
    LessonProgress,
    PlaybackSession,
    WatchRejection,
)
from lms.auth.sessions import revoke_user_sessions
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.ledger import LedgerEntry, verify

DEMO_WEBM = Path(__file__).resolve().parents[2] / "courses" / "demo_media" / "demo.webm"



@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(tracking, "clock", c)
    return c


def make_course(*, code: str = "RISK-ID-01", kinds: tuple[str, ...] = ("video",),
                max_rate: float = 1.0) -> CourseVersion:
    """A published version built directly with the ORM (draft first, then published)."""
    course = Course(code=code, title_zh="入职身份核验", title_en="Identity checks at hiring",
                    risk_topic="identity_verification", max_playback_rate=max_rate)
    version = CourseVersion(course=course, number=1, status="draft")
    db.session.add_all([course, version])
    db.session.flush()
    for position, kind in enumerate(kinds, start=1):
        media = None
        if kind == "video":
            with DEMO_WEBM.open("rb") as fh:
                media = ingest_video(db.session, fh, "demo.webm", uploaded_by_id=None,
                                     max_bytes=10 * 1024 * 1024)
        db.session.add(Lesson(version=version, position=position, kind=kind,
                              title=f"第{position}课", media=media,
                              body="劳动合同应当以书面形式订立。" if kind == "document" else ""))
    db.session.flush()
    version.status = "published"
    version.content_hash = "c0" * 32
    version.published_at = utcnow()
    db.session.commit()
    return version


@pytest.fixture
def learner(people):
    emp = people.employee("李雷", employee_no="E10001")
    return people.user("lilei", "trainee", employee=emp)


@pytest.fixture
def video(app, learner):
    version = make_course()
    db.session.add(Enrollment(user_id=learner.id, version_id=version.id, source="manual"))
    db.session.commit()
    return version.lessons[0]


class Player:
    """What player.js does, through the test client."""

    def __init__(self, client, lesson_id: int) -> None:
        self.client = client
        self.lesson_id = lesson_id
        self.csrf = client.csrf(f"/learning/lessons/{lesson_id}")
        self.token: str | None = None
        self.seq = 0
        self.duration = 0.0

    def start(self) -> dict:
        resp = self.client.c.post(f"/learning/lessons/{self.lesson_id}/session",
                                  headers={"X-CSRFToken": self.csrf})
        assert resp.status_code == 200, resp.data
        data = resp.get_json()
        self.token, self.seq, self.duration = data["session"], 0, data["duration"]
        return data

    def beat(self, position: float, event: str = "tick", *, seq: int | None = None,
             token: str | None = None, csrf: bool = True):
        if seq is None:
            self.seq += 1
            seq = self.seq
        form = {"session": token or self.token, "seq": str(seq), "position": str(position),
                "event": event}
        if csrf:
            form["csrf_token"] = self.csrf
        return self.client.c.post("/learning/beat", data=form)


def watch_honestly(player: Player, clock: Clock, *, until: float | None = None,
                   step: float = 2.0):
    """Play from 0 at 1×, a beat every ``step`` seconds, to ``until`` (the end)."""
    until = player.duration if until is None else until
    position = 0.0
    resp = player.beat(position, "play")
    while position < until:
        clock.advance(step)
        position = min(until, position + step)
        resp = player.beat(position)
        assert resp.status_code == 200
    return resp


def progress_of(user_id: int, lesson_id: int) -> LessonProgress:
    return db.session.execute(select(LessonProgress).where(
        LessonProgress.user_id == user_id, LessonProgress.lesson_id == lesson_id)).scalar_one()


def rejections(reason: str | None = None) -> list[WatchRejection]:
    stmt = select(WatchRejection).order_by(WatchRejection.id)
    if reason:
        stmt = stmt.where(WatchRejection.reason == reason)
    return list(db.session.execute(stmt).scalars())


def completion_entries() -> list[LedgerEntry]:
    return list(db.session.execute(select(LedgerEntry).where(
        LedgerEntry.kind == "lesson.completed")).scalars())


def test_honest_viewing_completes_the_lesson_with_one_ledger_entry(client, clock, learner, video):
    client.login("lilei")
    player = Player(client, video.id)
    start = player.start()
    assert start["resume"] == 0 and start["max_rate"] == 1.0 and start["heartbeat"] == 5
    resp = watch_honestly(player, clock)
    body = resp.get_json()
    assert body["completed"] is True and body["coverage"] >= 0.99

    progress = progress_of(learner.id, video.id)
    assert progress.completed_at is not None
    intervals = watch.loads(progress.intervals)
    assert watch.coverage(intervals, video.media.duration_seconds) >= 0.99
    entries = completion_entries()
    assert len(entries) == 1
    payload = json.loads(entries[0].payload)
    assert entries[0].subject == f"lesson:{video.id}"
    assert payload["intervals_digest"] == watch.intervals_digest(intervals)
    assert payload["employee_no"] == "E10001" and payload["course_code"] == "RISK-ID-01"
    assert payload["version_number"] == 1 and payload["content_hash"] == "c0" * 32
    assert payload["lesson_id"] == video.id and payload["coverage"] >= 0.99
    assert payload["watched_seconds"] == watch.total(intervals) == pytest.approx(8.0)
    assert payload["session_count"] == 1 and payload["rejected_beats"] == 0
    assert progress.completion_ledger_seq == entries[0].seq
    # The only lesson: the course is complete too, and the chain still verifies.
    enrolment = db.session.execute(select(Enrollment)).scalar_one()
    assert enrolment.completed_at is not None
    assert db.session.execute(select(LedgerEntry).where(
        LedgerEntry.kind == "course.completed")).scalar_one()
    assert verify(db.session).ok


def test_replayed_and_out_of_order_beats_are_ignored_and_logged(client, clock, learner, video):
    client.login("lilei")
    player = Player(client, video.id)
    player.start()
    player.beat(0.0, "play")
    clock.advance(2)
    player.beat(2.0)
    clock.advance(2)
    player.beat(4.0)
    watched = progress_of(learner.id, video.id).watched_seconds
    clock.advance(2)
    replay = player.beat(6.0, seq=3)  # the seq of the beat before, again
    late = player.beat(7.5, seq=2)  # an older beat arriving late
    assert replay.get_json()["rejected"] == "replayed"
    assert late.get_json()["rejected"] == "replayed"
    assert progress_of(learner.id, video.id).watched_seconds == watched == 4.0
    logged = rejections("replayed")
    assert [(r.seq, r.position) for r in logged] == [(3, 6.0), (2, 7.5)]
    assert all(r.user_id == learner.id and r.lesson_id == video.id for r in logged)


def test_a_jump_to_the_end_is_not_credited(client, clock, learner, video):
    client.login("lilei")
    player = Player(client, video.id)
    player.start()
    player.beat(0.0, "play")
    clock.advance(1)
    resp = player.beat(8.0, "ended")
    assert resp.get_json() == {"watched": 0.0, "coverage": 0.0, "completed": False,
                               "furthest": 0.0, "rejected": "jump"}
    progress = progress_of(learner.id, video.id)
    assert progress.watched_seconds == 0.0 and progress.completed_at is None
    assert [r.reason for r in rejections()] == ["jump"]
    assert completion_entries() == []


def test_the_ended_event_alone_completes_nothing(client, clock, learner, video):
    client.login("lilei")
    player = Player(client, video.id)
    player.start()
    for _ in range(5):
        clock.advance(2)
        player.beat(8.0, "ended")
    progress = progress_of(learner.id, video.id)
    assert progress.completed_at is None and progress.watched_seconds == 0.0
    assert completion_entries() == []


def test_a_second_tab_supersedes_the_first_and_adds_no_credit(client, clock, learner, video):
    client.login("lilei")
    first = Player(client, video.id)
    first.start()
    first.beat(0.0, "play")
    clock.advance(2)
    first.beat(2.0)
    clock.advance(1)  # session starts are spaced at least 3 s apart
    second = Player(client, video.id)
    second.start()  # a second tab: the first session is ended
    clock.advance(2)
    stale = first.beat(4.0)
    assert stale.get_json()["rejected"] == "superseded"
    second.beat(2.0, "play")
    clock.advance(2)
    second.beat(4.0)
    clock.advance(2)
    first.beat(6.0)  # still refused, still no credit
    progress = progress_of(learner.id, video.id)
    assert progress.watched_seconds == 4.0
    assert watch.loads(progress.intervals) == [(0.0, 4.0)]
    old, new = db.session.execute(select(PlaybackSession).order_by(PlaybackSession.id)).scalars()
    assert old.ended_reason == "superseded" and old.ended_at is not None
    assert watch.loads(old.credited_intervals) == [(0.0, 2.0)] and old.beats_accepted == 2
    assert new.ended_at is None and progress.active_session_id == new.id
    assert [r.session_id for r in rejections("superseded")] == [old.id, old.id]


def test_restarting_sessions_rapidly_is_refused_so_fresh_allowances_cannot_add_up(
        client, clock, learner, video):
    """Each session's first beats may use the rules' small jitter allowance; starting a new
    session every moment to claim it again would beat the wall clock, so starts are spaced."""
    client.login("lilei")
    first = Player(client, video.id)
    first.start()
    clock.advance(1)
    again = client.c.post(f"/learning/lessons/{video.id}/session",
                          headers={"X-CSRFToken": first.csrf})
    assert again.status_code == 429
    assert again.get_json()["error"] == "too_soon" and int(again.headers["Retry-After"]) == 2
    assert db.session.scalar(select(func.count()).select_from(PlaybackSession)) == 1
    clock.advance(2)
    assert Player(client, video.id).start()["session"] != first.token


def test_another_users_session_token_is_refused(client, make_client, clock, people, learner,
                                                video):
    client.login("lilei")
    player = Player(client, video.id)
    player.start()
    player.beat(0.0, "play")
    intruder = people.user("hanmeimei", "trainee", employee=people.employee("韩梅梅"))
    db.session.add(Enrollment(user_id=intruder.id, version_id=video.version_id, source="manual"))
    db.session.commit()
    other = make_client()
    other.login("hanmeimei")
    thief = Player(other, video.id)
    clock.advance(2)
    resp = thief.beat(2.0, token=player.token, seq=2)
    assert resp.status_code == 403
    assert progress_of(learner.id, video.id).last_seq == 1
    assert progress_of(learner.id, video.id).watched_seconds == 0.0
    # ...and the learner's own session carries on unharmed.
    assert player.beat(2.0).get_json()["watched"] == 2.0


def test_a_revoked_login_cannot_beat(client, clock, learner, video):
    client.login("lilei")
    player = Player(client, video.id)
    player.start()
    player.beat(0.0, "play")
    revoke_user_sessions(db.session, learner.id, reason="disabled")  # e.g. user disabled
    db.session.commit()
    clock.advance(2)
    assert player.beat(2.0).status_code == 403
    assert progress_of(learner.id, video.id).last_seq == 1


def test_beats_after_completion_do_not_write_the_ledger_again(client, clock, learner, video):
    client.login("lilei")
    player = Player(client, video.id)
    player.start()
    watch_honestly(player, clock)
    progress = progress_of(learner.id, video.id)
    digest_before, intervals_before = progress.completion_ledger_seq, progress.intervals
    # Watch it again in a new session, from the start.
    again = player.start()
    assert again["completed"] is True and again["resume"] == 0
    resp = watch_honestly(player, clock)
    assert resp.get_json()["completed"] is True
    assert len(completion_entries()) == 1
    progress = progress_of(learner.id, video.id)
    assert progress.completion_ledger_seq == digest_before
    assert progress.intervals == intervals_before  # frozen: it matches the ledger's digest


def test_a_beat_without_csrf_token_is_refused(client, clock, learner, video):
    client.login("lilei")
    player = Player(client, video.id)
    player.start()
    resp = player.beat(0.0, "play", csrf=False)
    assert resp.status_code == 400
    assert progress_of(learner.id, video.id).last_seq == 0


def test_malformed_beats_are_refused(client, clock, learner, video):
    client.login("lilei")
    player = Player(client, video.id)
    player.start()
    for position in ("nan", "inf", "abc"):
        assert player.beat(position).status_code == 400  # type: ignore[arg-type]
    assert player.beat(99.0).get_json()["rejected"] == "out_of_range"


def test_resume_position_comes_from_the_last_session(client, clock, learner, video):
    client.login("lilei")
    player = Player(client, video.id)
    player.start()
    watch_honestly(player, clock, until=4.0)
    start = player.start()
    assert start["resume"] == 4.0 and start["furthest"] == 4.0
    assert start["watched"] == 4.0 and start["completed"] is False


def test_an_accepted_beat_costs_two_statements(app, client, clock, learner, video):
    client.login("lilei")
    player = Player(client, video.id)
    player.start()
    player.beat(0.0, "play")
    clock.advance(2)
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement.split(None, 1)[0].upper())

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        resp = player.beat(2.0)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert resp.get_json()["watched"] == 2.0
    assert len(statements) <= 3, statements
    assert statements == ["SELECT", "UPDATE"]


def test_document_lesson_completes_only_after_the_minimum_reading_time(
        app, client, clock, learner):
    version = make_course(code="DOC-01", kinds=("document",))
    db.session.add(Enrollment(user_id=learner.id, version_id=version.id, source="manual"))
    db.session.commit()
    lesson = version.lessons[0]
    client.login("lilei")
    page = client.get(f"/learning/lessons/{lesson.id}").get_data(as_text=True)
    assert "劳动合同应当以书面形式订立。" in page
    token = db.session.execute(select(PlaybackSession.token)).scalar_one()
    clock.advance(10)
    early = client.post(f"/learning/lessons/{lesson.id}/read", {"session": token},
                        token_from="/learning")
    assert early.status_code == 409
    assert "20" in early.get_data(as_text=True)  # seconds still to go
    progress = progress_of(learner.id, lesson.id)
    assert progress.completed_at is None
    clock.advance(21)
    done = client.post(f"/learning/lessons/{lesson.id}/read", {"session": token},
                       token_from="/learning")
    assert done.status_code == 302
    assert progress_of(learner.id, lesson.id).completed_at is not None
    entry = completion_entries()
    assert len(entry) == 1 and json.loads(entry[0].payload)["reading_seconds"] == 31.0


def test_reopening_a_document_at_once_is_not_refused_like_a_video_session(
        app, client, clock, learner):
    """The spacing of session starts guards the video allowance; reading a document
    again (a reload, a second tab) must simply restart its reading clock."""
    version = make_course(code="DOC-02", kinds=("document",))
    db.session.add(Enrollment(user_id=learner.id, version_id=version.id, source="manual"))
    db.session.commit()
    lesson = version.lessons[0]
    client.login("lilei")
    assert client.get(f"/learning/lessons/{lesson.id}").status_code == 200
    assert client.get(f"/learning/lessons/{lesson.id}").status_code == 200
    assert db.session.scalar(select(func.count()).select_from(PlaybackSession)) == 2
