"""The lesson player in a real Chromium: the demo video plays and the lesson completes
after it was watched; dragging the playhead to the end completes nothing; a forged
heartbeat claiming the end is not credited."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from support import PASSWORD

from courses.media import ingest_video
from courses.models import (
    Course,
    CourseVersion,
    Enrollment,
    Lesson,
    LessonProgress,
    WatchRejection,
)
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.ledger import LedgerEntry

pytestmark = pytest.mark.browser

DEMO_WEBM = Path(__file__).resolve().parents[2] / "courses" / "demo_media" / "demo.webm"


@pytest.fixture
def lesson(app, people):
    """A published one-video course the learner "lilei" is enrolled on."""
    emp = people.employee("李雷", employee_no="E10001")
    user = people.user("lilei", "trainee", employee=emp)
    course = Course(code="RISK-ID-01", title_zh="入职身份核验", title_en="",
                    risk_topic="identity_verification", max_playback_rate=1.0)
    version = CourseVersion(course=course, number=1, status="draft")
    db.session.add_all([course, version])
    db.session.flush()
    with DEMO_WEBM.open("rb") as fh:
        media = ingest_video(db.session, fh, "demo.webm", uploaded_by_id=None,
                             max_bytes=10 * 1024 * 1024)
    lesson = Lesson(version=version, position=1, kind="video", title="身份证件核验", media=media)
    db.session.add(lesson)
    db.session.flush()
    version.status, version.content_hash, version.published_at = "published", "ab" * 32, utcnow()
    db.session.add(Enrollment(user_id=user.id, version_id=version.id, source="manual"))
    db.session.commit()
    return {"id": lesson.id, "user_id": user.id, "duration": media.duration_seconds}


def open_player(page, lesson_id: int) -> None:
    page.goto("/login")
    page.get_by_label("用户名").fill("lilei")
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url("**/")
    page.goto(f"/learning/lessons/{lesson_id}")
    page.wait_for_selector("#lesson-video[data-ready='1']")


def progress(user_id: int, lesson_id: int) -> LessonProgress | None:
    db.session.expire_all()
    return db.session.execute(select(LessonProgress).where(
        LessonProgress.user_id == user_id, LessonProgress.lesson_id == lesson_id)
    ).scalar_one_or_none()


PLAY = "v => { v.muted = true; return v.play().then(() => true); }"


def test_the_demo_video_plays_and_the_lesson_completes(page, lesson):
    open_player(page, lesson["id"])
    video = page.locator("#lesson-video")
    assert video.evaluate(PLAY) is True
    page.wait_for_selector("#watch-progress[data-state='completed']", timeout=25_000)
    assert page.locator("#watch-completed").is_visible()
    assert video.evaluate("v => v.currentTime") >= lesson["duration"] - 0.5

    row = progress(lesson["user_id"], lesson["id"])
    assert row is not None and row.completed_at is not None
    entry = db.session.execute(select(LedgerEntry).where(
        LedgerEntry.kind == "lesson.completed")).scalar_one()
    assert json.loads(entry.payload)["coverage"] >= 0.98


def test_dragging_the_playhead_to_the_end_does_not_complete(page, lesson):
    open_player(page, lesson["id"])
    video = page.locator("#lesson-video")
    video.evaluate(PLAY)
    page.wait_for_timeout(1_000)
    video.evaluate("v => { v.currentTime = v.duration; }")
    page.wait_for_timeout(500)
    position = video.evaluate("v => { v.pause(); return v.currentTime; }")
    assert position < 3.0, "the player did not snap back"
    page.wait_for_timeout(1_000)  # let the pause and seek beats land
    assert page.locator("#watch-progress").get_attribute("data-state") != "completed"
    row = progress(lesson["user_id"], lesson["id"])
    assert row is not None and row.completed_at is None
    assert row.watched_seconds < 3.0
    assert page.locator("#player-message").inner_text().strip() != ""


FORGE = """async v => {
  const csrf = v.dataset.csrf;
  // the page itself just opened a session; the server spaces session starts 3 s apart
  await new Promise(resolve => setTimeout(resolve, 3100));
  const start = await fetch(v.dataset.sessionUrl, {method: "POST",
      headers: {"X-CSRFToken": csrf}}).then(r => r.json());
  const beat = async (seq, position) => {
    const body = new URLSearchParams({session: start.session, seq: String(seq),
                                      position: String(position), event: "ended",
                                      csrf_token: csrf});
    return fetch(v.dataset.beatUrl, {method: "POST", body}).then(r => r.json());
  };
  await beat(1, 0);
  await new Promise(resolve => setTimeout(resolve, 1000));
  return await beat(2, start.duration);
}"""


def test_a_forged_heartbeat_claiming_the_end_is_not_credited(page, lesson):
    open_player(page, lesson["id"])
    verdict = page.locator("#lesson-video").evaluate(FORGE)
    assert verdict["rejected"] == "jump"
    assert verdict["completed"] is False and verdict["watched"] == 0
    row = progress(lesson["user_id"], lesson["id"])
    assert row.completed_at is None and row.watched_seconds == 0
    jumps = db.session.execute(select(WatchRejection).where(
        WatchRejection.reason == "jump")).scalars().all()
    assert len(jumps) == 1 and jumps[0].position == pytest.approx(lesson["duration"])
