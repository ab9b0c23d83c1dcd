"""Trainer authoring: courses, versions (draft → published → retired), immutability of
published content, lessons of a draft and video upload."""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from courses.authoring import content_hash
from courses.immutability import PublishedVersionError
from courses.models import Course, CourseVersion, Lesson, MediaAsset
from lms.extensions import db
from lms.ledger import LedgerEntry, verify
from lms.ledger_core import canonical_json

DEMO_WEBM = Path(__file__).resolve().parents[2] / "courses" / "demo_media" / "demo.webm"


@pytest.fixture
def staff(people):
    return {
        "trainer": people.user("trainer", "trainer", "trainee"),
        "trainer2": people.user("trainer2", "trainer"),
        "hr": people.user("hr", "hr"),
        "admin": people.user("admin", "admin"),
        "trainee": people.user("trainee", "trainee"),
    }


@pytest.fixture
def trainer(client, staff):
    client.login("trainer")
    return client


def _media_files(app) -> list[Path]:
    root = Path(app.config["MEDIA_ROOT"])
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def _ledger(kind: str) -> list[dict]:
    return [json.loads(e.payload) for e in db.session.scalars(
        select(LedgerEntry).where(LedgerEntry.kind == kind).order_by(LedgerEntry.seq))]


def _create_course(client, code="RISK-ID-01", topic="identity_verification", **extra):
    data = {"code": code, "title_zh": "入职身份核验", "title_en": "ID checks at hiring",
            "risk_topic": topic, "description": "核对身份证与本人。", "owner_id": "",
            "max_playback_rate": "1.5", **extra}
    resp = client.post("/authoring/courses/new", data, token_from="/authoring/courses/new")
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return db.session.scalar(select(Course).where(Course.code == code.upper()))


def _version(course: Course, number: int) -> CourseVersion:
    return db.session.scalar(select(CourseVersion).where(
        CourseVersion.course_id == course.id, CourseVersion.number == number))


def _add_document(client, version: CourseVersion, title="核对身份证", body="第一段。\n\n第二段。"):
    url = f"/authoring/versions/{version.id}/lessons/document"
    return client.post(url, {"title": title, "body": body}, token_from=url)


def _upload(client, version: CourseVersion, data: bytes, filename="demo.webm", title="",
            **kw):
    url = f"/authoring/versions/{version.id}/lessons/video"
    return client.post(url, {"title": title, "file": (io.BytesIO(data), filename)},
                       token_from=url, content_type="multipart/form-data", **kw)


def _publish(client, version: CourseVersion):
    page = f"/authoring/versions/{version.id}"
    return client.post(f"{page}/publish", token_from=page)


def _lesson_titles(version: CourseVersion) -> list[str]:
    return list(db.session.scalars(select(Lesson.title).where(Lesson.version_id == version.id)
                                   .order_by(Lesson.position)))


# --- courses ------------------------------------------------------------------------


def test_trainer_creates_a_course_with_an_empty_draft_and_codes_are_unique(app, trainer, staff):
    course = _create_course(trainer, code="risk-id-01", owner_id=str(staff["trainer"].id))
    assert course.code == "RISK-ID-01"  # codes are kept upper-case
    assert course.owner_id == staff["trainer"].id
    assert course.max_playback_rate == 1.5
    assert [(v.number, v.status) for v in course.versions] == [(1, "draft")]
    page = trainer.get(f"/authoring/courses/{course.id}").get_data(as_text=True)
    assert "入职身份核验" in page and 'data-status="draft"' in page

    resp = trainer.post("/authoring/courses/new", {
        "code": "Risk-ID-01", "title_zh": "另一门课", "risk_topic": "other",
        "max_playback_rate": "1.0"}, token_from="/authoring/courses/new")
    assert resp.status_code == 400
    assert "RISK-ID-01" in resp.get_data(as_text=True)  # the message names the taken code
    assert db.session.scalar(select(func.count()).select_from(Course)) == 1


def test_course_form_refuses_bad_input_field_by_field(app, trainer, staff):
    resp = trainer.post("/authoring/courses/new", {
        "code": "bad code!", "title_zh": "", "risk_topic": "weather",
        "max_playback_rate": "3", "owner_id": str(staff["hr"].id)},
        token_from="/authoring/courses/new")
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert html.count('class="error"') >= 3
    assert db.session.scalar(select(func.count()).select_from(Course)) == 0

    # An owner must be a trainer (the form lists only trainers; the service checks too).
    resp = trainer.post("/authoring/courses/new", {
        "code": "C-1", "title_zh": "课", "risk_topic": "other", "max_playback_rate": "1",
        "owner_id": str(staff["hr"].id)}, token_from="/authoring/courses/new")
    assert resp.status_code == 400
    assert db.session.scalar(select(func.count()).select_from(Course)) == 0


def test_course_list_filters_by_risk_topic_and_hr_may_look_but_not_author(app, client, staff):
    client.login("trainer")
    _create_course(client, code="RISK-ID-01", topic="identity_verification")
    _create_course(client, code="RISK-SI-01", topic="social_insurance")
    client.logout()

    client.login("hr")
    html = client.get("/authoring/courses?topic=social_insurance").get_data(as_text=True)
    assert 'data-course-code="RISK-SI-01"' in html
    assert 'data-course-code="RISK-ID-01"' not in html
    html = client.get("/authoring/courses").get_data(as_text=True)
    assert 'data-course-code="RISK-SI-01"' in html and 'data-course-code="RISK-ID-01"' in html
    assert "/authoring/courses/new" not in html  # no authoring buttons for HR
    course = db.session.scalar(select(Course).where(Course.code == "RISK-ID-01"))
    assert client.get(f"/authoring/courses/{course.id}").status_code == 200
    assert client.get(f"/authoring/versions/{course.versions[0].id}").status_code == 200
    assert client.get("/authoring/courses/new").status_code == 403
    assert client.get(f"/authoring/courses/{course.id}/edit").status_code == 403


def test_trainee_gets_403_on_authoring_pages(app, client, staff):
    client.login("trainer")
    course = _create_course(client)
    draft = course.versions[0]
    _add_document(client, draft)
    lesson = draft.lessons[0]
    client.logout()

    client.login("trainee")
    for url in ("/authoring/courses", "/authoring/courses/new",
                f"/authoring/courses/{course.id}", f"/authoring/courses/{course.id}/edit",
                f"/authoring/versions/{draft.id}", f"/authoring/versions/{draft.id}/edit",
                f"/authoring/versions/{draft.id}/lessons/video",
                f"/authoring/versions/{draft.id}/lessons/document",
                f"/authoring/lessons/{lesson.id}/edit"):
        assert client.get(url).status_code == 403, url
    resp = client.post(f"/authoring/versions/{draft.id}/publish", token_from="/")
    assert resp.status_code == 403
    resp = client.post(f"/authoring/lessons/{lesson.id}/delete", token_from="/")
    assert resp.status_code == 403
    # A body over the video cap is refused before the role check runs: still no upload page.
    app.config["MAX_VIDEO_MB"] = 1
    resp = client.post(f"/authoring/versions/{draft.id}/lessons/video",
                       {"file": (io.BytesIO(b"\0" * 3 * 1024 * 1024), "a.webm")},
                       token_from="/", content_type="multipart/form-data")
    assert resp.status_code == 413
    assert "video-upload" not in resp.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(CourseVersion, draft.id).status == "draft"
    assert db.session.get(Lesson, lesson.id) is not None


def test_course_code_is_pinned_once_a_version_is_published(app, trainer):
    course = _create_course(trainer)
    _add_document(trainer, course.versions[0])
    url = f"/authoring/courses/{course.id}/edit"
    form = {"code": "RISK-ID-02", "title_zh": "入职身份核验（新标题）", "risk_topic":
            "identity_verification", "max_playback_rate": "1.0"}
    assert trainer.post(url, form, token_from=url).status_code == 302  # draft only: fine
    db.session.expire_all()
    assert db.session.get(Course, course.id).code == "RISK-ID-02"

    assert _publish(trainer, course.versions[0]).status_code == 302
    resp = trainer.post(url, {**form, "code": "RISK-ID-03"}, token_from=url)
    assert resp.status_code == 400
    db.session.expire_all()
    assert db.session.get(Course, course.id).code == "RISK-ID-02"
    # Titles still change: they describe the course, not what a version teaches.
    resp = trainer.post(url, {**form, "title_zh": "入职身份核验要点"}, token_from=url)
    assert resp.status_code == 302
    db.session.expire_all()
    assert db.session.get(Course, course.id).title_zh == "入职身份核验要点"


def test_course_creation_and_every_change_are_ledger_entries(app, trainer):
    course = _create_course(trainer)
    created = _ledger("course.created")
    assert len(created) == 1 and created[0]["code"] == "RISK-ID-01"
    url = f"/authoring/courses/{course.id}/edit"
    form = {"code": "RISK-ID-01", "title_zh": "入职身份核验要点", "risk_topic":
            "identity_verification", "max_playback_rate": "1.5",
            "title_en": "ID checks at hiring", "description": "核对身份证与本人。"}
    assert trainer.post(url, form, token_from=url).status_code == 302
    updated = _ledger("course.updated")
    assert len(updated) == 1
    assert updated[0]["changes"] == {"title_zh": ["入职身份核验", "入职身份核验要点"]}
    assert trainer.post(url, form, token_from=url).status_code == 302  # no change: no entry
    assert len(_ledger("course.updated")) == 1


# --- versions -----------------------------------------------------------------------


def test_version_lifecycle_numbering_and_one_draft_at_a_time(app, trainer, staff):
    course = _create_course(trainer)
    v1 = course.versions[0]
    _add_document(trainer, v1, title="第一课")
    assert _upload(trainer, v1, DEMO_WEBM.read_bytes(), title="视频").status_code == 302

    # A course has one draft at a time.
    new_url = f"/authoring/courses/{course.id}/versions/new"
    resp = trainer.post(new_url, {"change_note": "更新"}, token_from=f"/authoring/courses/{course.id}")
    assert resp.status_code == 400
    assert db.session.scalar(select(func.count()).select_from(CourseVersion)) == 1

    assert _publish(trainer, v1).status_code == 302
    db.session.expire_all()
    v1 = db.session.get(CourseVersion, v1.id)
    assert v1.status == "published" and v1.published_by_id == staff["trainer"].id
    assert v1.published_at is not None and re.fullmatch(r"[0-9a-f]{64}", v1.content_hash)

    # A new version needs a change note.
    resp = trainer.post(new_url, {"change_note": "  "}, token_from=new_url)
    assert resp.status_code == 400
    resp = trainer.post(new_url, {"change_note": "补充社保案例", "requires_retraining": "y"},
                        token_from=new_url)
    assert resp.status_code == 302
    v2 = _version(course, 2)
    assert (v2.status, v2.change_note, v2.requires_retraining) == ("draft", "补充社保案例", True)
    # It starts from the latest version's lessons, playing the same stored video.
    assert _lesson_titles(v2) == _lesson_titles(v1) == ["第一课", "视频"]
    old_video = db.session.scalar(select(Lesson).where(Lesson.version_id == v1.id,
                                                       Lesson.kind == "video"))
    new_video = db.session.scalar(select(Lesson).where(Lesson.version_id == v2.id,
                                                       Lesson.kind == "video"))
    assert new_video.media_id == old_video.media_id and new_video.id != old_video.id
    assert db.session.scalar(select(func.count()).select_from(MediaAsset)) == 1

    # Publishing v2 retires nothing by itself.
    assert _publish(trainer, v2).status_code == 302
    db.session.expire_all()
    assert [(v.number, v.status) for v in db.session.get(Course, course.id).versions] == [
        (1, "published"), (2, "published")]
    page = f"/authoring/versions/{v1.id}"
    assert trainer.post(f"{page}/retire", token_from=page).status_code == 302
    db.session.expire_all()
    v1 = db.session.get(CourseVersion, v1.id)
    assert v1.status == "retired" and v1.retired_at is not None
    # Retiring twice is refused.
    assert trainer.post(f"{page}/retire", token_from=page).status_code == 409

    resp = trainer.post(new_url, {"change_note": "第三版"}, token_from=new_url)
    assert resp.status_code == 302
    assert _version(course, 3).status == "draft"

    published = _ledger("course.version_published")
    assert [(p["course_code"], p["version"]) for p in published] == [
        ("RISK-ID-01", 1), ("RISK-ID-01", 2)]
    assert published[0]["content_hash"] == v1.content_hash
    retired = _ledger("course.version_retired")
    assert [(p["version"], p["content_hash"]) for p in retired] == [(1, v1.content_hash)]
    assert verify(db.session).ok


def test_publish_is_refused_without_lessons(app, trainer):
    course = _create_course(trainer)
    v1 = course.versions[0]
    resp = _publish(trainer, v1)
    assert resp.status_code == 409
    assert "id=\"publish\"" in resp.get_data(as_text=True)  # still a draft, still publishable
    assert "flash-error" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(CourseVersion, v1.id).status == "draft"
    assert db.session.get(CourseVersion, v1.id).content_hash is None
    assert _ledger("course.version_published") == []


def test_publish_is_refused_for_a_video_lesson_without_its_video(app, trainer):
    course = _create_course(trainer)
    v1 = course.versions[0]
    db.session.add(Lesson(version_id=v1.id, position=1, kind="video", title="缺视频"))
    db.session.commit()
    resp = _publish(trainer, v1)
    assert resp.status_code == 409
    assert "缺视频" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(CourseVersion, v1.id).status == "draft"


def test_content_hash_is_stable_and_changes_with_any_lesson(app, trainer):
    course = _create_course(trainer)
    v1 = course.versions[0]
    _add_document(trainer, v1, title="核对身份证", body="人证合一。")
    _upload(trainer, v1, DEMO_WEBM.read_bytes(), title="视频")

    def current() -> str:
        db.session.expire_all()
        lessons = db.session.scalars(select(Lesson).where(Lesson.version_id == v1.id)).all()
        return content_hash("RISK-ID-01", 1, list(lessons))

    first = current()
    assert current() == first  # stable
    # Pinned format: anyone can recompute it from the lessons with any SHA-256 tool.
    sha = hashlib.sha256(DEMO_WEBM.read_bytes()).hexdigest()
    media = db.session.scalar(select(MediaAsset))
    expected = canonical_json({"course": "RISK-ID-01", "version": 1, "lessons": [
        {"position": 1, "kind": "document", "title": "核对身份证", "body": "人证合一。",
         "media": None},
        {"position": 2, "kind": "video", "title": "视频", "body": "",
         "media": {"sha256": sha, "duration_seconds": media.duration_seconds}},
    ]})
    assert first == hashlib.sha256(expected.encode("utf-8")).hexdigest()

    lesson = db.session.scalar(select(Lesson).where(Lesson.version_id == v1.id,
                                                    Lesson.kind == "document"))
    url = f"/authoring/lessons/{lesson.id}/edit"
    trainer.post(url, {"title": "核对身份证", "body": "人证合一，逐项核对。"}, token_from=url)
    changed = current()
    assert changed != first
    page = f"/authoring/versions/{v1.id}"
    trainer.post(f"/authoring/lessons/{lesson.id}/move", {"direction": "down"}, token_from=page)
    assert current() not in (first, changed)  # order counts too

    assert _publish(trainer, v1).status_code == 302
    db.session.expire_all()
    assert db.session.get(CourseVersion, v1.id).content_hash == current()
    assert current() in trainer.get(page).get_data(as_text=True)


# --- immutability -------------------------------------------------------------------


def _published_course(client):
    course = _create_course(client)
    v1 = course.versions[0]
    _add_document(client, v1, title="原标题", body="原文。")
    _upload(client, v1, DEMO_WEBM.read_bytes(), title="视频")
    assert _publish(client, v1).status_code == 302
    db.session.expire_all()
    return db.session.get(CourseVersion, v1.id)


def _snapshot(version_id: int):
    db.session.expire_all()
    version = db.session.get(CourseVersion, version_id)
    return ((version.status, version.change_note, version.requires_retraining,
             version.content_hash),
            db.session.execute(select(Lesson.id, Lesson.position, Lesson.title, Lesson.body,
                                      Lesson.media_id).where(Lesson.version_id == version_id)
                               .order_by(Lesson.id)).all())


def test_a_published_version_cannot_be_edited_through_the_pages(app, trainer):
    v1 = _published_course(trainer)
    before = _snapshot(v1.id)
    media_before = _media_files(app)
    doc = db.session.scalar(select(Lesson).where(Lesson.version_id == v1.id,
                                                 Lesson.kind == "document"))
    page = f"/authoring/versions/{v1.id}"
    attempts = [
        (f"{page}/edit", {"change_note": "偷偷改"}),
        (f"/authoring/lessons/{doc.id}/edit", {"title": "改过", "body": "改过的正文"}),
        (f"{page}/lessons/document", {"title": "新课", "body": "新内容"}),
        (f"/authoring/lessons/{doc.id}/move", {"direction": "down"}),
        (f"/authoring/lessons/{doc.id}/delete", {}),
        (f"{page}/publish", {}),
    ]
    for url, data in attempts:
        resp = trainer.post(url, data, token_from=page)
        assert resp.status_code == 409, url
        html = resp.get_data(as_text=True)
        assert "flash-error" in html and "id=\"content-hash\"" in html, url
    resp = _upload(trainer, v1, DEMO_WEBM.read_bytes())
    assert resp.status_code == 409
    # Edit pages of a frozen version say why instead of offering a form.
    assert trainer.get(f"/authoring/lessons/{doc.id}/edit").status_code == 409

    assert _snapshot(v1.id) == before
    assert _media_files(app) == media_before
    assert "/lessons/document" not in trainer.get(page).get_data(as_text=True)


def test_a_published_version_cannot_be_edited_through_the_orm(app, trainer):
    v1 = _published_course(trainer)
    before = _snapshot(v1.id)
    doc_id = db.session.scalar(select(Lesson.id).where(Lesson.version_id == v1.id,
                                                       Lesson.kind == "document"))

    def refused(change) -> None:
        db.session.expire_all()
        change()
        with pytest.raises(PublishedVersionError):
            db.session.commit()
        db.session.rollback()

    refused(lambda: setattr(db.session.get(CourseVersion, v1.id), "change_note", "改"))
    refused(lambda: setattr(db.session.get(CourseVersion, v1.id), "content_hash", "0" * 64))
    refused(lambda: setattr(db.session.get(CourseVersion, v1.id), "status", "draft"))
    refused(lambda: setattr(db.session.get(Lesson, doc_id), "title", "改过"))
    refused(lambda: setattr(db.session.get(Lesson, doc_id), "body", "改过的正文"))
    refused(lambda: setattr(db.session.get(Lesson, doc_id), "position", 9))
    refused(lambda: db.session.delete(db.session.get(Lesson, doc_id)))
    refused(lambda: db.session.add(Lesson(version_id=v1.id, position=3, kind="document",
                                          title="塞进来", body="x")))
    refused(lambda: db.session.add(Lesson(version=db.session.get(CourseVersion, v1.id),
                                          position=3, kind="document", title="塞进来",
                                          body="x")))
    refused(lambda: setattr(db.session.scalar(select(MediaAsset)), "sha256", "f" * 64))
    refused(lambda: setattr(db.session.get(Course, v1.course_id), "code", "OTHER-01"))
    # Expired objects (as after a commit) are caught too: the guard reads the database.
    lesson = db.session.get(Lesson, doc_id)
    db.session.expire(lesson)
    lesson.title = "过期后再改"
    with pytest.raises(PublishedVersionError):
        db.session.flush()
    db.session.rollback()
    assert _snapshot(v1.id) == before

    # The one move a published version may still make: retirement.
    version = db.session.get(CourseVersion, v1.id)
    version.status = "retired"
    version.retired_at = version.published_at
    db.session.commit()
    refused(lambda: setattr(db.session.get(CourseVersion, v1.id), "status", "published"))
    refused(lambda: setattr(db.session.get(CourseVersion, v1.id), "retired_at", None))
    # Course description fields stay editable.
    db.session.get(Course, v1.course_id).title_en = "New English title"
    db.session.commit()


# --- lessons of a draft -------------------------------------------------------------


def test_lessons_of_a_draft_are_added_reordered_edited_and_deleted(app, trainer):
    course = _create_course(trainer)
    v1 = course.versions[0]
    for title in ("甲", "乙", "丙"):
        assert _add_document(trainer, v1, title=title).status_code == 302
    resp = _add_document(trainer, v1, title="", body="")
    assert resp.status_code == 400
    assert _lesson_titles(v1) == ["甲", "乙", "丙"]

    page = f"/authoring/versions/{v1.id}"
    ids = {t: i for i, t in db.session.execute(select(Lesson.id, Lesson.title))}
    trainer.post(f"/authoring/lessons/{ids['丙']}/move", {"direction": "up"}, token_from=page)
    assert _lesson_titles(v1) == ["甲", "丙", "乙"]
    trainer.post(f"/authoring/lessons/{ids['甲']}/move", {"direction": "up"}, token_from=page)
    assert _lesson_titles(v1) == ["甲", "丙", "乙"]  # already first
    trainer.post(f"/authoring/lessons/{ids['甲']}/move", {"direction": "down"}, token_from=page)
    assert _lesson_titles(v1) == ["丙", "甲", "乙"]

    url = f"/authoring/lessons/{ids['甲']}/edit"
    resp = trainer.post(url, {"title": "甲（修订）", "body": "新的正文"}, token_from=url)
    assert resp.status_code == 302
    assert _lesson_titles(v1) == ["丙", "甲（修订）", "乙"]

    resp = trainer.post(f"/authoring/lessons/{ids['丙']}/delete", token_from=page)
    assert resp.status_code == 302
    assert _lesson_titles(v1) == ["甲（修订）", "乙"]
    assert list(db.session.scalars(select(Lesson.position).where(Lesson.version_id == v1.id)
                                   .order_by(Lesson.position))) == [1, 2]
    html = trainer.get(page).get_data(as_text=True)
    assert html.index("甲（修订）") < html.index("乙")


# --- video upload -------------------------------------------------------------------


def test_upload_of_the_demo_video_shows_its_duration_size_and_sha256(app, trainer, staff):
    course = _create_course(trainer)
    v1 = course.versions[0]
    page = trainer.get(f"/authoring/versions/{v1.id}/lessons/video").get_data(as_text=True)
    assert "<progress" in page and "upload.js" in page and 'enctype="multipart/form-data"' in page

    data = DEMO_WEBM.read_bytes()
    resp = _upload(trainer, v1, data, filename="入职核验.webm")
    assert resp.status_code == 302
    html = trainer.get(resp.headers["Location"]).get_data(as_text=True)
    sha = hashlib.sha256(data).hexdigest()
    assert 'data-seconds="8.0"' in html and "8.0" in html
    assert sha in html
    assert f'data-bytes="{len(data)}"' in html
    lesson = db.session.scalar(select(Lesson).where(Lesson.version_id == v1.id))
    assert lesson.title == "入职核验" and lesson.kind == "video"  # title from the file name
    assert lesson.media.duration_seconds == pytest.approx(8.0, abs=0.05)
    assert lesson.media.content_type == "video/webm"
    stored = _media_files(app)
    assert len(stored) == 1 and stored[0].read_bytes() == data
    assert "入职核验" not in stored[0].name  # the server chooses the name

    [entry] = _ledger("media.uploaded")
    assert entry["sha256"] == sha and entry["size"] == len(data)
    assert entry["duration"] == pytest.approx(8.0, abs=0.05)
    assert entry["filename"] == "入职核验.webm"
    row = db.session.scalar(select(LedgerEntry).where(LedgerEntry.kind == "media.uploaded"))
    assert row.actor_id == staff["trainer"].id


def test_script_upload_sends_the_csrf_header_and_gets_json(app, trainer):
    course = _create_course(trainer)
    v1 = course.versions[0]
    url = f"/authoring/versions/{v1.id}/lessons/video"
    token = trainer.csrf(url)
    headers = {"X-CSRFToken": token, "X-Requested-With": "XMLHttpRequest"}
    resp = trainer.c.post(url, data={"file": (io.BytesIO(DEMO_WEBM.read_bytes()), "a.webm")},
                          headers=headers, content_type="multipart/form-data")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["ok"] is True and body["redirect"].endswith(f"/authoring/versions/{v1.id}")
    assert body["duration"] == pytest.approx(8.0, abs=0.05)

    resp = trainer.c.post(url, data={"file": (io.BytesIO(b"hello world\n" * 20), "a.mp4")},
                          headers=headers, content_type="multipart/form-data")
    assert resp.status_code == 400
    assert "MP4" in resp.get_json()["errors"][0]
    # Without the token the upload is refused before anything is stored.
    resp = trainer.c.post(url, data={"file": (io.BytesIO(DEMO_WEBM.read_bytes()), "a.webm")},
                          headers={"X-Requested-With": "XMLHttpRequest"},
                          content_type="multipart/form-data")
    assert resp.status_code == 400
    assert len(_media_files(app)) == 1
    # Over the cap while streaming: the script gets the same specific message as JSON.
    app.config["MAX_VIDEO_MB"] = 1
    resp = trainer.c.post(url, data={"file": (io.BytesIO(b"\0" * 3 * 1024 * 1024), "a.webm")},
                          headers=headers, content_type="multipart/form-data")
    assert resp.status_code == 413
    assert "1 MB" in resp.get_json()["errors"][0]
    assert len(_media_files(app)) == 1

    js = trainer.get("/static/upload.js").get_data(as_text=True)
    assert "X-CSRFToken" in js and "upload.addEventListener(\"progress\"" in js


@pytest.mark.parametrize(("content", "filename", "message"), [
    (b"This is a text file, not a video.\n" * 100, "notes.mp4", "该文件不是 MP4 或 WebM 视频"),
    (DEMO_WEBM.read_bytes()[:200], "broken.webm", "无法从文件中读取视频时长"),
    (b"", "empty.webm", None),
])
def test_files_that_are_not_playable_videos_are_refused(app, trainer, content, filename,
                                                        message):
    course = _create_course(trainer)
    v1 = course.versions[0]
    resp = _upload(trainer, v1, content, filename=filename)
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert "flash-error" in html
    if message:
        assert message in html
    assert _lesson_titles(v1) == []
    assert db.session.scalar(select(func.count()).select_from(MediaAsset)) == 0
    assert _media_files(app) == []
    assert _ledger("media.uploaded") == []


def test_the_refusal_messages_are_specific(app, client, staff):
    client.login("trainer")
    course = _create_course(client)
    v1 = course.versions[0]
    assert client.post("/lang/en", {"next": "/"}, token_from="/").status_code == 302
    html = _upload(client, v1, b"plain text " * 50, filename="x.mp4").get_data(as_text=True)
    assert "This file is not an MP4 or WebM video" in html
    html = _upload(client, v1, DEMO_WEBM.read_bytes()[:200]).get_data(as_text=True)
    assert ("The video&#39;s duration could not be read from the file; it may be damaged or "
            "in an unsupported format. Use MP4 (H.264/AAC) or WebM (VP8/VP9).") in html


@pytest.mark.parametrize("size", [
    1024 * 1024 + 10,  # just over: caught while storing (ingest's max_bytes)
    3 * 1024 * 1024,  # well over: caught while the request body streams in
])
def test_oversize_video_is_refused_and_nothing_is_kept(app, trainer, size):
    app.config["MAX_VIDEO_MB"] = 1
    course = _create_course(trainer)
    v1 = course.versions[0]
    data = DEMO_WEBM.read_bytes()
    data = (data * (size // len(data) + 1))[:size]
    resp = _upload(trainer, v1, data)
    assert resp.status_code == 413
    assert "1 MB" in resp.get_data(as_text=True)
    assert _media_files(app) == []
    assert _lesson_titles(v1) == []
    assert db.session.scalar(select(func.count()).select_from(MediaAsset)) == 0

    # Bigger than the global 20 MB form cap is fine for videos under MAX_VIDEO_MB.
    app.config["MAX_VIDEO_MB"] = 30
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    big = DEMO_WEBM.read_bytes() + b"\0" * (2 * 1024 * 1024)
    assert _upload(trainer, v1, big).status_code == 302
    assert len(_media_files(app)) == 1
