"""Shared helpers of the regulation tests (import as ``from regulation_support import
...``): Beijing times, updates made through the real intake, feed sources, a published
course. The fixtures (``org``, ``page_clock``) are in ``regulation_fixtures``, loaded
with ``pytest_plugins``."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from courses.authoring import CourseInput, add_document_lesson, create_course, publish_version
from courses.models import Course, CourseVersion
from lms.compliance.regulation import intake
from lms.compliance.regulation.models import FeedSource, RegulationUpdate
from lms.extensions import db
from lms.workday_overrides import load_calendar

SHANGHAI = ZoneInfo("Asia/Shanghai")


def beijing(year: int, month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    """A Beijing wall-clock time as the UTC moment the app stores."""
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


def make_update(title: str = "关于调整最低工资标准的通知", *, detected_at: datetime,
                source: FeedSource | None = None, key: str | None = None,
                commit: bool = True) -> RegulationUpdate:
    """An update through the real intake (deadline from the real work calendar)."""
    row = intake.create_update(
        db.session, origin="feed" if source else "manual", source=source,
        dedupe_key=key or f"test:{title}:{detected_at.isoformat()}", title=title,
        link="https://www.mohrss.gov.cn/example.html", guid=None, summary="摘要：第一行\n第二行",
        content_sha256="ab" * 32, published_at=None, published_raw=None, date_flagged=False,
        detected_at=detected_at, calendar=load_calendar(db.session))
    if commit:
        db.session.commit()
    return row


def make_source(name: str = "人社部政策发布", topic: str = "labour_contracts") -> FeedSource:
    source = FeedSource(name=name, url="https://example.gov.cn/rss.xml", default_topic=topic)
    db.session.add(source)
    db.session.commit()
    return source


def published_course(code: str = "RISK-LC-01", *, actor_id: int | None = None
                     ) -> CourseVersion:
    """A course with one published version, made with the real authoring services."""
    course = create_course(db.session, CourseInput(
        code=code, title_zh="劳动合同管理", title_en="", risk_topic="labour_contracts",
        description="", owner_id=None, is_optional=False, max_playback_rate=1.0),
        actor_id=actor_id)
    version = course.versions[0]
    add_document_lesson(db.session, version, title="劳动合同的订立", body="应当以书面形式订立。")
    publish_version(db.session, version, actor_id=actor_id)
    db.session.commit()
    return db.session.get(CourseVersion, version.id)


def course_by_code(code: str) -> Course | None:
    from sqlalchemy import select

    return db.session.scalar(select(Course).where(Course.code == code))
