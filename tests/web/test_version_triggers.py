"""Published course content is frozen by the database itself (migration 0006): raw SQL
and bulk ``update()`` statements, which pass by the service layer and the ORM guard,
are refused by triggers on SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask_migrate import downgrade, upgrade
from sqlalchemy import select, text, update
from support import ON_POSTGRES

from courses.authoring import (
    CourseInput,
    add_document_lesson,
    create_course,
    new_version,
    publish_version,
)
from courses.media import ingest_video
from courses.models import Course, CourseVersion, Lesson, MediaAsset
from lms.app import create_app
from lms.dbtypes import utcnow
from lms.extensions import db

DEMO_WEBM = Path(__file__).resolve().parents[2] / "courses" / "demo_media" / "demo.webm"
IMMUTABLE = "published course version is immutable"


@dataclass
class Catalogue:
    course_id: int  # RISK-A: version 1 published, version 2 a draft
    published_id: int
    draft_id: int
    published_doc_id: int  # a document lesson of version 1
    draft_doc_id: int  # a document lesson of version 2
    used_media_id: int  # the video of version 1 (and of its copy in version 2)
    draft_media_id: int  # a video used only by the draft
    spare_media_id: int  # a video no lesson uses
    other_course_id: int  # RISK-B: only a draft


def _course_input(code: str) -> CourseInput:
    return CourseInput(code=code, title_zh="入职身份核验", title_en="ID checks", risk_topic="other",
                       description="", owner_id=None, is_optional=False, max_playback_rate=1.0)


def _asset(key: str) -> MediaAsset:
    asset = MediaAsset(storage_key=key, sha256=key[0] * 64, size_bytes=1000,
                       content_type="video/webm", duration_seconds=12.5,
                       original_filename=f"{key}.webm")
    db.session.add(asset)
    db.session.flush()
    return asset


@pytest.fixture
def catalogue(app, people) -> Catalogue:
    """Built through the ORM and the authoring services, as the application does."""
    actor = people.user("trainer", "trainer").id
    session = db.session
    course = create_course(session, _course_input("RISK-A"), actor_id=actor)
    v1 = course.versions[0]
    doc = add_document_lesson(session, v1, title="核对身份证", body="第一段。")
    with DEMO_WEBM.open("rb") as stream:
        video = ingest_video(session, stream, "demo.webm", uploaded_by_id=actor,
                             max_bytes=10_000_000)
    session.add(Lesson(version=v1, position=2, kind="video", title="视频", media=video))
    session.flush()
    publish_version(session, v1, actor_id=actor)
    session.commit()

    v2 = new_version(session, course, change_note="补充一课", requires_retraining=False,
                     actor_id=actor)  # copies version 1's lessons, video included
    draft_doc = add_document_lesson(session, v2, title="草稿课", body="草稿正文。")
    draft_media = _asset("draft-only")
    session.add(Lesson(version=v2, position=4, kind="video", title="新视频", media=draft_media))
    spare = _asset("spare")
    other = create_course(session, _course_input("RISK-B"), actor_id=actor)
    session.commit()
    assert (v1.status, v2.status) == ("published", "draft")
    return Catalogue(course.id, v1.id, v2.id, doc.id, draft_doc.id, video.id, draft_media.id,
                     spare.id, other.id)


def _frozen_state(cat: Catalogue) -> tuple:
    """Everything of version 1 that learners' records rely on, as stored."""
    db.session.expire_all()
    state = (
        db.session.execute(select(CourseVersion.__table__)
                           .where(CourseVersion.id == cat.published_id)).one(),
        db.session.execute(select(Lesson.__table__).where(Lesson.version_id == cat.published_id)
                           .order_by(Lesson.id)).all(),
        db.session.execute(select(MediaAsset.__table__)
                           .where(MediaAsset.id == cat.used_media_id)).one(),
        db.session.scalar(select(Course.code).where(Course.id == cat.course_id)),
    )
    db.session.rollback()
    return state


def _refused(statement: str | sa.Executable, **params) -> None:
    """The database refuses the statement, naming the rule; nothing of it remains."""
    if isinstance(statement, str):
        statement = text(statement)
    with pytest.raises(sa.exc.DatabaseError) as caught:
        db.session.execute(statement, params)
    db.session.rollback()
    assert IMMUTABLE in str(caught.value), caught.value
    if ON_POSTGRES:
        assert caught.value.orig.sqlstate == "42501"  # insufficient_privilege


def _allowed(statement: str | sa.TextClause, **params) -> int:
    """The statement goes through; the number of rows it changed."""
    if isinstance(statement, str):
        statement = text(statement)
    rowcount = db.session.execute(statement, params).rowcount
    db.session.commit()
    return rowcount


def _at(name: str, value) -> sa.BindParameter:
    return sa.bindparam(name, value, type_=CourseVersion.__table__.c.retired_at.type)


# --- course_versions ---------------------------------------------------------------------


def test_a_published_version_row_cannot_be_changed_or_deleted(catalogue):
    cat = catalogue
    before = _frozen_state(cat)
    v = cat.published_id
    _refused("UPDATE course_versions SET change_note = '偷偷改' WHERE id = :v", v=v)
    _refused("UPDATE course_versions SET content_hash = :h WHERE id = :v", h="0" * 64, v=v)
    _refused("UPDATE course_versions SET status = 'draft' WHERE id = :v", v=v)
    _refused("UPDATE course_versions SET number = 7 WHERE id = :v", v=v)
    _refused("UPDATE course_versions SET published_by_id = NULL WHERE id = :v", v=v)
    _refused("UPDATE course_versions SET requires_retraining = NOT requires_retraining "
             "WHERE id = :v", v=v)
    # Retirement may not smuggle in another change.
    _refused(text("UPDATE course_versions SET status = 'retired', retired_at = :at, "
                  "change_note = '顺便改' WHERE id = :v").bindparams(_at("at", utcnow())), v=v)
    _refused(text("UPDATE course_versions SET status = 'retired', retired_at = :at, "
                  "published_at = :at WHERE id = :v").bindparams(_at("at", utcnow())), v=v)
    # A bulk ORM update passes by the before_flush guard, not by the database.
    _refused(update(CourseVersion).where(CourseVersion.id == v).values(change_note="批量改"))
    _refused("DELETE FROM course_versions WHERE id = :v", v=v)
    assert _frozen_state(cat) == before


def _another_value(column: sa.Column) -> tuple[str, dict]:
    """A SET expression giving ``column`` a different value, by its type."""
    kind = getattr(column.type, "impl", column.type).python_type  # UTCDateTime: its impl
    if kind is bool:
        return f"NOT {column.name}", {}
    if kind is int:
        return f"COALESCE({column.name}, 0) + 1000", {}
    if kind is str:
        return "'x'", {}  # nothing stored is 'x'; fits every String(n)
    if kind is datetime:
        return ":other", {"other": sa.bindparam("other", datetime(2001, 1, 1, tzinfo=UTC),
                                                type_=column.type)}
    raise AssertionError(f"no test value for {column.name} ({kind})")


def test_retirement_cannot_change_any_other_column(catalogue):
    """Every column, as the model has them now: a column added later fails here until
    the trigger compares it too."""
    cat = catalogue
    before = _frozen_state(cat)
    columns = [c for c in CourseVersion.__table__.columns if c.name not in {"status",
                                                                            "retired_at"}]
    assert len(columns) >= 10
    for column in columns:
        expression, binds = _another_value(column)
        statement = text(f"UPDATE course_versions SET status = 'retired', retired_at = :at, "
                         f"{column.name} = {expression} WHERE id = :v")
        _refused(statement.bindparams(_at("at", utcnow()), *binds.values()),
                 v=cat.published_id)
    assert _frozen_state(cat) == before


def test_retirement_is_the_one_change_and_a_retired_version_is_frozen(catalogue):
    cat = catalogue
    v = cat.published_id
    retired_at = utcnow()
    assert _allowed(text("UPDATE course_versions SET status = 'retired', retired_at = :at "
                         "WHERE id = :v").bindparams(_at("at", retired_at)), v=v) == 1
    version = db.session.get(CourseVersion, v)
    assert version.status == "retired"
    assert abs((version.retired_at - retired_at).total_seconds()) < 1

    before = _frozen_state(cat)
    _refused("UPDATE course_versions SET status = 'published', retired_at = NULL "
             "WHERE id = :v", v=v)
    _refused("UPDATE course_versions SET retired_at = NULL WHERE id = :v", v=v)
    _refused("UPDATE course_versions SET change_note = '退役后改' WHERE id = :v", v=v)
    _refused("DELETE FROM course_versions WHERE id = :v", v=v)
    _refused("UPDATE lessons SET title = '退役后改' WHERE id = :l", l=cat.published_doc_id)
    _refused("UPDATE media_assets SET sha256 = :h WHERE id = :m", h="e" * 64,
             m=cat.used_media_id)
    _refused("UPDATE courses SET code = 'RISK-Z' WHERE id = :c", c=cat.course_id)
    assert _frozen_state(cat) == before


def test_a_draft_version_stays_editable_and_publishing_it_freezes_it(catalogue):
    cat = catalogue
    d = cat.draft_id
    assert _allowed("UPDATE course_versions SET change_note = '改过的说明', "
                    "requires_retraining = :t WHERE id = :v", t=True, v=d) == 1
    version = db.session.get(CourseVersion, d)
    assert (version.change_note, version.requires_retraining) == ("改过的说明", True)

    # Publishing (draft -> published) is an update of a draft: allowed ...
    assert _allowed(text("UPDATE course_versions SET status = 'published', content_hash = :h, "
                         "published_at = :at WHERE id = :v")
                    .bindparams(_at("at", utcnow())), h="a" * 64, v=d) == 1
    # ... and from then on the version is frozen like any other.
    _refused("UPDATE course_versions SET change_note = '发布后改' WHERE id = :v", v=d)
    _refused("DELETE FROM lessons WHERE id = :l", l=cat.draft_doc_id)
    _refused("UPDATE media_assets SET sha256 = :h WHERE id = :m", h="e" * 64,
             m=cat.draft_media_id)


def test_an_empty_draft_can_be_deleted_but_not_an_empty_published_version(catalogue):
    """No lesson or enrolment points at either, so no foreign key stands in the way."""
    cat = catalogue
    draft = db.session.scalar(select(CourseVersion.id)
                              .where(CourseVersion.course_id == cat.other_course_id))
    _allowed(text("INSERT INTO course_versions (course_id, number, status, change_note, "
                  "requires_retraining, created_at, published_at) VALUES "
                  "(:c, 2, 'published', '', :f, :at, :at)").bindparams(_at("at", utcnow())),
             c=cat.other_course_id, f=False)
    _refused("DELETE FROM course_versions WHERE course_id = :c AND number = 2",
             c=cat.other_course_id)
    assert _allowed("DELETE FROM course_versions WHERE id = :v", v=draft) == 1
    db.session.expire_all()
    assert [v.status for v in db.session.get(Course, cat.other_course_id).versions] == [
        "published"]


def test_a_lesson_added_while_its_version_is_being_published_is_refused(catalogue):
    """The publisher commits first: the lesson's trigger waits for it and then sees the
    version published, instead of passing on the draft status it saw before."""
    cat = catalogue
    engine = db.engine
    outcome: list[str] = []

    def add_lesson() -> None:
        try:
            with engine.begin() as conn:
                conn.execute(text(
                    "INSERT INTO lessons (version_id, position, kind, title, body, min_coverage)"
                    " VALUES (:v, 9, 'document', '抢在发布时加', 'x', 0.98)"), {"v": cat.draft_id})
            outcome.append("added")
        except sa.exc.DatabaseError as exc:
            outcome.append(str(exc))

    with engine.connect() as publisher:
        publisher.execute(text("UPDATE course_versions SET status = 'published' WHERE id = :v"),
                          {"v": cat.draft_id})
        thread = threading.Thread(target=add_lesson)
        thread.start()
        thread.join(1.0)
        assert thread.is_alive(), outcome  # waiting for the publisher
        publisher.commit()
    thread.join(20)
    assert len(outcome) == 1 and IMMUTABLE in outcome[0], outcome
    assert db.session.scalar(select(sa.func.count()).select_from(Lesson)
                             .where(Lesson.version_id == cat.draft_id)) == 4


# --- lessons -------------------------------------------------------------------------------


def test_lessons_of_a_published_version_cannot_be_added_changed_moved_or_deleted(catalogue):
    cat = catalogue
    before = _frozen_state(cat)
    v, lesson = cat.published_id, cat.published_doc_id
    _refused("INSERT INTO lessons (version_id, position, kind, title, body, min_coverage) "
             "VALUES (:v, 9, 'document', '塞进来', 'x', 0.98)", v=v)
    _refused("UPDATE lessons SET title = '改过' WHERE id = :l", l=lesson)
    _refused("UPDATE lessons SET body = '改过的正文' WHERE id = :l", l=lesson)
    _refused("UPDATE lessons SET position = -1 WHERE id = :l", l=lesson)
    _refused("UPDATE lessons SET media_id = :m WHERE version_id = :v AND kind = 'video'",
             m=cat.spare_media_id, v=v)
    _refused("UPDATE lessons SET min_coverage = 0.1 WHERE version_id = :v", v=v)
    # Moving a lesson out of the published version into the draft, or the other way.
    _refused("UPDATE lessons SET version_id = :d, position = 99 WHERE id = :l",
             d=cat.draft_id, l=lesson)
    _refused("UPDATE lessons SET version_id = :v, position = 99 WHERE id = :l",
             v=v, l=cat.draft_doc_id)
    _refused(update(Lesson).where(Lesson.version_id == v).values(title="批量改"))
    _refused("DELETE FROM lessons WHERE id = :l", l=lesson)
    assert _frozen_state(cat) == before
    assert db.session.get(Lesson, cat.draft_doc_id).version_id == cat.draft_id


def test_lessons_of_a_draft_are_added_changed_and_deleted_freely(catalogue):
    cat = catalogue
    d = cat.draft_id
    assert _allowed("INSERT INTO lessons (version_id, position, kind, title, body, "
                    "min_coverage) VALUES (:v, 9, 'document', '新课', '新内容', 0.98)", v=d) == 1
    assert _allowed("UPDATE lessons SET title = '草稿课（修订）', body = '新正文' WHERE id = :l",
                    l=cat.draft_doc_id) == 1
    assert _allowed("UPDATE lessons SET media_id = :m WHERE version_id = :v AND kind = 'video' "
                    "AND media_id = :old", m=cat.spare_media_id, v=d,
                    old=cat.draft_media_id) == 1
    assert _allowed("DELETE FROM lessons WHERE version_id = :v AND position = 9", v=d) == 1
    db.session.expire_all()
    titles = db.session.scalars(select(Lesson.title).where(Lesson.version_id == d)
                                .order_by(Lesson.position)).all()
    assert titles == ["核对身份证", "视频", "草稿课（修订）", "新视频"]


# --- media ---------------------------------------------------------------------------------


def test_media_of_a_published_version_cannot_be_swapped_or_deleted(catalogue):
    cat = catalogue
    before = _frozen_state(cat)
    m = cat.used_media_id
    _refused("UPDATE media_assets SET sha256 = :h WHERE id = :m", h="f" * 64, m=m)
    _refused("UPDATE media_assets SET storage_key = 'elsewhere.webm' WHERE id = :m", m=m)
    _refused("UPDATE media_assets SET size_bytes = size_bytes + 1 WHERE id = :m", m=m)
    _refused("UPDATE media_assets SET duration_seconds = 1 WHERE id = :m", m=m)
    _refused(update(MediaAsset).values(duration_seconds=999.0))  # every asset at once
    # Refused by the trigger (its message), before the foreign key would be checked.
    _refused("DELETE FROM media_assets WHERE id = :m", m=m)
    assert _frozen_state(cat) == before


def test_media_not_pinned_by_a_published_version_can_change(catalogue):
    cat = catalogue
    assert _allowed("UPDATE media_assets SET sha256 = :h, duration_seconds = 30 "
                    "WHERE id = :m", h="b" * 64, m=cat.draft_media_id) == 1
    assert _allowed("DELETE FROM media_assets WHERE id = :m", m=cat.spare_media_id) == 1
    # Fields outside the content hash stay editable even on a published video.
    assert _allowed("UPDATE media_assets SET original_filename = '入职.webm' WHERE id = :m",
                    m=cat.used_media_id) == 1
    # Writing the same value is no change.
    assert _allowed("UPDATE media_assets SET sha256 = sha256 WHERE id = :m",
                    m=cat.used_media_id) == 1
    db.session.expire_all()
    assert db.session.get(MediaAsset, cat.draft_media_id).sha256 == "b" * 64
    assert db.session.get(MediaAsset, cat.spare_media_id) is None
    assert db.session.get(MediaAsset, cat.used_media_id).original_filename == "入职.webm"


# --- courses -------------------------------------------------------------------------------


def test_a_course_code_is_pinned_once_a_version_is_published(catalogue):
    cat = catalogue
    before = _frozen_state(cat)
    _refused("UPDATE courses SET code = 'RISK-Z' WHERE id = :c", c=cat.course_id)
    _refused(update(Course).values(code=Course.code + "-X"))  # RISK-B too: all or nothing
    assert _frozen_state(cat) == before

    # The description of a published course may change, and a draft-only course's code.
    assert _allowed("UPDATE courses SET title_zh = '新标题', title_en = 'New title', "
                    "code = code WHERE id = :c", c=cat.course_id) == 1
    assert _allowed("UPDATE courses SET code = 'RISK-B2' WHERE id = :c",
                    c=cat.other_course_id) == 1
    db.session.expire_all()
    assert db.session.get(Course, cat.course_id).title_zh == "新标题"
    assert db.session.get(Course, cat.other_course_id).code == "RISK-B2"


# --- the migration -------------------------------------------------------------------------


TRIGGERS = {  # as created by migration 0006
    "postgresql": {"course_versions_frozen", "lessons_frozen", "media_assets_frozen_update",
                   "media_assets_frozen_delete", "courses_frozen_code"},
    "sqlite": {"course_versions_frozen_update", "course_versions_frozen_delete",
               "lessons_frozen_insert", "lessons_frozen_update", "lessons_frozen_delete",
               "media_assets_frozen_update", "media_assets_frozen_delete",
               "courses_frozen_code"},
}


def _triggers() -> set[str]:
    if ON_POSTGRES:
        sql = ("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgenabled <> 'D' "
               "AND tgrelid::regclass::text IN "
               "('course_versions', 'lessons', 'media_assets', 'courses')")
    else:
        sql = ("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN "
               "('course_versions', 'lessons', 'media_assets', 'courses')")
    names = set(db.session.scalars(text(sql)))
    db.session.rollback()
    return names


def test_every_guard_trigger_exists_at_head(app):
    """A later SQLite batch migration that rebuilds one of these tables drops its
    triggers without a word; this is where that shows."""
    assert _triggers() == TRIGGERS["postgresql" if ON_POSTGRES else "sqlite"]


def test_the_migration_adds_and_removes_the_triggers(databases):
    app = create_app({"SQLALCHEMY_DATABASE_URI": databases.empty_url(), "TESTING": True})
    with app.app_context():
        try:
            upgrade()
            db.session.execute(text(
                "INSERT INTO courses (id, code, title_zh, title_en, risk_topic, description, "
                "is_optional, max_playback_rate, created_at) VALUES "
                "(1, 'C1', '课', '', 'other', '', :f, 1.0, :at)"
            ).bindparams(_at("at", utcnow())), {"f": False})
            db.session.execute(text(
                "INSERT INTO course_versions (id, course_id, number, status, change_note, "
                "requires_retraining, created_at) VALUES (1, 1, 1, 'published', '', :f, :at)"
            ).bindparams(_at("at", utcnow())), {"f": False})
            db.session.commit()
            _refused("UPDATE course_versions SET change_note = 'x' WHERE id = 1")

            downgrade(revision="0005")
            assert _triggers() == set()
            assert _allowed("UPDATE course_versions SET change_note = 'x' WHERE id = 1") == 1
            upgrade()
            _refused("UPDATE course_versions SET change_note = 'y' WHERE id = 1")
            assert db.session.scalar(text("SELECT change_note FROM course_versions")) == "x"
            db.session.rollback()
        finally:
            db.session.remove()
            db.engine.dispose()
