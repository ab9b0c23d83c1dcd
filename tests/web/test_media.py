"""Serving uploaded videos: staff and enrolled learners only, with HTTP Range support so
the player can seek."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from courses.authoring import (
    CourseInput,
    add_video_lesson,
    create_course,
    new_version,
    publish_version,
)
from courses.models import Enrollment
from lms.extensions import db

DEMO_WEBM = Path(__file__).resolve().parents[2] / "courses" / "demo_media" / "demo.webm"
DATA = DEMO_WEBM.read_bytes()


@pytest.fixture
def course_media(app, people):
    """A published course whose v1 plays the demo video, and a later v2 draft without it."""
    trainer = people.user("trainer", "trainer")
    course = create_course(db.session, CourseInput(
        code="RISK-ID-01", title_zh="入职身份核验", title_en="", risk_topic="identity_verification",
        description="", owner_id=trainer.id, is_optional=False, max_playback_rate=1.0),
        actor_id=trainer.id)
    v1 = course.versions[0]
    with DEMO_WEBM.open("rb") as fh:
        lesson = add_video_lesson(db.session, v1, title="视频", stream=fh, filename="demo.webm",
                                  uploaded_by_id=trainer.id, max_bytes=10 * 1024 * 1024)
    publish_version(db.session, v1, actor_id=trainer.id)
    other = create_course(db.session, CourseInput(
        code="RISK-SI-01", title_zh="社会保险", title_en="", risk_topic="social_insurance",
        description="", owner_id=trainer.id, is_optional=True, max_playback_rate=1.0),
        actor_id=trainer.id)
    db.session.commit()
    return {"media_id": lesson.media_id, "v1": v1, "other": other, "course": course}


def _enrol(user, version) -> None:
    db.session.add(Enrollment(user_id=user.id, version_id=version.id, source="manual"))
    db.session.commit()


def test_staff_get_the_whole_file_privately_cached(app, client, people, course_media):
    people.user("hr", "hr")
    for username in ("trainer", "hr"):
        client.login(username)
        resp = client.get(f"/media/{course_media['media_id']}")
        assert resp.status_code == 200, username
        assert resp.data == DATA
        assert resp.mimetype == "video/webm"
        assert "private" in resp.headers["Cache-Control"]
        assert "public" not in resp.headers["Cache-Control"]
        assert resp.headers["Accept-Ranges"] == "bytes"
        client.logout()


def test_range_requests_get_206_with_the_right_bytes(app, client, course_media):
    client.login("trainer")
    url = f"/media/{course_media['media_id']}"
    resp = client.get(url, headers={"Range": "bytes=0-99"})
    assert resp.status_code == 206
    assert resp.headers["Content-Range"] == f"bytes 0-99/{len(DATA)}"
    assert resp.data == DATA[:100]

    resp = client.get(url, headers={"Range": "bytes=100000-"})
    assert resp.status_code == 206
    assert resp.headers["Content-Range"] == f"bytes 100000-{len(DATA) - 1}/{len(DATA)}"
    assert resp.data == DATA[100000:]

    resp = client.get(url, headers={"Range": f"bytes={len(DATA) + 10}-"})
    assert resp.status_code == 416


def test_an_enrolled_learner_may_play_it_and_nobody_else(app, client, people, course_media):
    enrolled = people.user("enrolled", "trainee")
    elsewhere = people.user("elsewhere", "trainee")
    people.user("stranger", "trainee", "manager")
    _enrol(enrolled, course_media["v1"])
    _enrol(elsewhere, course_media["other"].versions[0])
    url = f"/media/{course_media['media_id']}"

    client.login("enrolled")
    resp = client.get(url, headers={"Range": "bytes=0-9"})
    assert resp.status_code == 206 and resp.data == DATA[:10]
    client.logout()

    for username in ("elsewhere", "stranger"):
        client.login(username)
        assert client.get(url).status_code == 404, username
        assert client.get(url, headers={"Range": "bytes=0-9"}).status_code == 404, username
        client.logout()

    resp = client.get(url)
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]


def test_a_later_version_reusing_the_video_grants_access_too(app, client, people, course_media):
    course = course_media["course"]
    learner = people.user("learner", "trainee")
    v2 = new_version(db.session, course, change_note="更新", requires_retraining=False,
                     actor_id=None)
    publish_version(db.session, v2, actor_id=None)
    db.session.commit()
    _enrol(learner, v2)
    client.login("learner")
    assert client.get(f"/media/{course_media['media_id']}").status_code == 200


def test_unknown_or_missing_files_are_404(app, client, course_media):
    client.login("trainer")
    assert client.get("/media/999999").status_code == 404
    for path in Path(app.config["MEDIA_ROOT"]).rglob("*.webm"):
        path.unlink()
    assert client.get(f"/media/{course_media['media_id']}").status_code == 404


def test_the_authoring_page_links_the_video(app, client, course_media):
    client.login("trainer")
    html = client.get(f"/authoring/versions/{course_media['v1'].id}").get_data(as_text=True)
    assert re.search(rf'href="/media/{course_media["media_id"]}"', html)
