"""Regulation updates and the feeds they come from.

A ``RegulationUpdate`` is a revised law, a new dispute case or an interpretation that
must reach the people it concerns within N (7) Chinese working days of its detection.
It comes from a polled ``FeedSource`` (one update per distinct feed item) or is entered
by a trainer by hand. Its state moves new → triaged | not_relevant → material_ready →
pushed → closed; each transition is a ledger entry and a row in ``regulation_events``.

Pushing turns the update's audience (an ``AssignmentRule`` owned by the update) into
assignments of its briefing course, so learners see it in "My learning" like any other
assignment, with the same reminders, read receipts and evidence.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from courses.models import Course, CourseVersion
from lms.compliance.models import AssignmentRule
from lms.dbtypes import UTCDateTime, utcnow
from lms.extensions import db

__all__ = [
    "FETCH_STATUSES",
    "UPDATE_ORIGINS",
    "UPDATE_STATES",
    "FeedAllowedHost",
    "FeedSource",
    "RegulationEvent",
    "RegulationUpdate",
]

UPDATE_STATES = ("new", "triaged", "not_relevant", "material_ready", "pushed", "closed")
OPEN_STATES = ("new", "triaged", "material_ready")  # the clock is running
UPDATE_ORIGINS = ("feed", "manual")
FETCH_STATUSES = ("ok", "not_modified", "error")
MATERIAL_KINDS = ("briefing", "course")
MIN_POLL_MINUTES = 5
MAX_POLL_MINUTES = 7 * 24 * 60


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class FeedSource(db.Model):
    """An RSS/Atom feed polled by the tick (admin-managed). The last fetch outcome and
    its error stay on the row, so a broken feed is visible and never stops the tick."""

    __tablename__ = "feed_sources"
    __table_args__ = (
        CheckConstraint(f"poll_minutes >= {MIN_POLL_MINUTES} AND poll_minutes <= {MAX_POLL_MINUTES}",
                        name="poll_minutes"),
        CheckConstraint("last_status IS NULL OR " + _in("last_status", FETCH_STATUSES),
                        name="last_status"),
        Index("ix_feed_sources_due", "enabled", "next_poll_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    url: Mapped[str] = mapped_column(String(2000))
    default_topic: Mapped[str] = mapped_column(String(32), default="other")  # RISK_TOPICS code
    poll_minutes: Mapped[int] = mapped_column(Integer, default=60)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # conditional GET validators from the last 200 response
    etag: Mapped[str | None] = mapped_column(String(512))
    last_modified: Mapped[str | None] = mapped_column(String(128))
    last_polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_poll_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # NULL: due now
    last_status: Mapped[str | None] = mapped_column(String(16))
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    items_seen: Mapped[int] = mapped_column(Integer, default=0)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FeedAllowedHost(db.Model):
    """A host name an admin allows feeds to reach although it resolves to a private or
    loopback address (an intranet regulation mirror, the test server)."""

    __tablename__ = "feed_allowed_hosts"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)  # lower-case, no port
    note: Mapped[str] = mapped_column(String(200), default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RegulationUpdate(db.Model):
    """One regulation change or case, with its N-working-day clock from detection."""

    __tablename__ = "regulation_updates"
    __table_args__ = (
        CheckConstraint(_in("state", UPDATE_STATES), name="state"),
        CheckConstraint(_in("origin", UPDATE_ORIGINS), name="origin"),
        CheckConstraint("material_kind IS NULL OR " + _in("material_kind", MATERIAL_KINDS),
                        name="material_kind"),
        CheckConstraint("deadline_working_days >= 1", name="deadline_working_days"),
        # dedupe within a source: guid, else link, else content hash (service decides)
        UniqueConstraint("source_id", "dedupe_key", name="uq_regulation_updates_source_key"),
        Index("ix_regulation_updates_state_deadline", "state", "deadline_date"),
        Index("ix_regulation_updates_source_link", "source_id", "link"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    origin: Mapped[str] = mapped_column(String(8))
    source_id: Mapped[int | None] = mapped_column(ForeignKey("feed_sources.id",
                                                             ondelete="RESTRICT"))
    dedupe_key: Mapped[str] = mapped_column(String(80))  # "guid:<sha256>", "link:…", "hash:…"
    guid: Mapped[str | None] = mapped_column(String(1000))
    link: Mapped[str | None] = mapped_column(String(2000))
    title: Mapped[str] = mapped_column(String(500))
    summary: Mapped[str] = mapped_column(Text, default="")
    content_sha256: Mapped[str] = mapped_column(String(64))
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    published_raw: Mapped[str | None] = mapped_column(String(200))  # as the feed wrote it
    date_flagged: Mapped[bool] = mapped_column(Boolean, default=False)  # unparseable date
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deadline_working_days: Mapped[int] = mapped_column(Integer, default=7)
    deadline_date: Mapped[date] = mapped_column(Date)  # local date: on time = pushed by its end
    state: Mapped[str] = mapped_column(String(16), default="new")
    topic: Mapped[str | None] = mapped_column(String(32))  # RISK_TOPICS code
    triage_note: Mapped[str] = mapped_column(Text, default="")  # why (not) relevant
    # the audience: an inactive rule owned by this update, activated when pushed
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("assignment_rules.id",
                                                           ondelete="RESTRICT"))
    material_kind: Mapped[str | None] = mapped_column(String(16))
    briefing_title: Mapped[str | None] = mapped_column(String(200))
    briefing_body: Mapped[str | None] = mapped_column(Text)
    require_signature: Mapped[bool] = mapped_column(Boolean, default=False)
    course_id: Mapped[int | None] = mapped_column(ForeignKey("courses.id", ondelete="RESTRICT"))
    version_id: Mapped[int | None] = mapped_column(ForeignKey("course_versions.id",
                                                              ondelete="RESTRICT"))
    pushed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    on_time: Mapped[bool | None] = mapped_column(Boolean)  # set when pushed
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # alerts already sent ("2_days_left", "overdue"): the tick sends each once
    alerts_sent: Mapped[str] = mapped_column(String(64), default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    source: Mapped[FeedSource | None] = relationship()
    rule: Mapped[AssignmentRule | None] = relationship()
    course: Mapped[Course | None] = relationship()
    version: Mapped[CourseVersion | None] = relationship()


class RegulationEvent(db.Model):
    """One state transition of an update (who, when, from, to, note, ledger seq)."""

    __tablename__ = "regulation_events"
    __table_args__ = (Index("ix_regulation_events_update", "update_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    update_id: Mapped[int] = mapped_column(ForeignKey("regulation_updates.id",
                                                      ondelete="RESTRICT"))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    note: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ledger_seq: Mapped[int] = mapped_column(Integer)


# partial index for the dashboard's open list (most urgent first)
Index("ix_regulation_updates_open", RegulationUpdate.deadline_date,
      sqlite_where=text("state IN ('new', 'triaged', 'material_ready')"),
      postgresql_where=text("state IN ('new', 'triaged', 'material_ready')"))
