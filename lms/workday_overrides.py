"""Admin-managed corrections to the statutory calendar, and the calendar built from them.

``chinesecalendar`` knows the State Council's holidays and 调休 weekends up to the year it
was released for. Local holidays, company shutdowns, or a year the package does not know
yet are entered here; a year only counts as known once an admin declares it complete.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from lms.dbtypes import UTCDateTime, utcnow
from lms.extensions import db
from lms.workdays import WorkCalendar


class WorkdayOverride(db.Model):
    __tablename__ = "workday_overrides"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    is_workday: Mapped[bool] = mapped_column(Boolean)
    note: Mapped[str] = mapped_column(String(200))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CalendarYear(db.Model):
    """A year an admin has declared complete (all its holidays entered as overrides)."""

    __tablename__ = "calendar_years"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    note: Mapped[str] = mapped_column(String(200))
    declared_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    declared_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def load_calendar(session: Session) -> WorkCalendar:
    """The working-day calendar with every override and declared year applied."""
    overrides = dict(session.execute(select(WorkdayOverride.day, WorkdayOverride.is_workday)).all())
    years = frozenset(session.execute(select(CalendarYear.year)).scalars())
    return WorkCalendar(overrides=overrides, extra_years=years)
