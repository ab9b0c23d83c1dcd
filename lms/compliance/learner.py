"""Due dates and overdue state for the learner's "My learning" page.

``courses`` sits below ``lms.compliance`` and must not import it, so "My learning" asks
the app for an optional provider (``app.extensions["learning.due_dates"]``) and this
module registers one at app creation. The provider reads all of a user's assignments in
ONE query and turns each into a ``DueInfo`` keyed by the course version the learner is
enrolled on; working days are counted on the Chinese calendar (with admin overrides).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from courses.learning_views import DUE_DATES_EXTENSION
from lms.compliance.engine import local_date
from lms.compliance.models import Assignment
from lms.workday_overrides import load_calendar
from lms.workdays import UnknownYearError, WorkCalendar

__all__ = ["DUE_DATES_EXTENSION", "DUE_STATES", "DueInfo", "due_dates", "due_info", "register"]

DUE_STATES = ("due", "overdue", "suspended", "completed-on-time", "completed-late")


@dataclass(frozen=True)
class DueInfo:
    """What a learner sees next to one course: the due date (a local date) and where they
    stand. ``working_days`` is the working days left (state "due") or overdue by (state
    "overdue"); None for other states or when the calendar does not know the year."""

    due_date: date
    state: str
    working_days: int | None = None
    completed_on: date | None = None


def due_info(*, due: date, status: str, completed_at: datetime | None, today: date,
             calendar: WorkCalendar) -> DueInfo:
    """The learner-facing state of one assignment on ``today`` (pure)."""
    if status == "completed":
        done = local_date(completed_at) if completed_at is not None else None
        late = done is None or done > due  # no completion time: not claimed on time
        return DueInfo(due, "completed-late" if late else "completed-on-time",
                       completed_on=done)
    if status == "suspended":
        return DueInfo(due, "suspended")
    try:
        if today > due:
            return DueInfo(due, "overdue", calendar.workdays_between(due, today))
        return DueInfo(due, "due", calendar.workdays_between(today, due))
    except UnknownYearError:  # a year nobody declared yet: show the date, not a guess
        return DueInfo(due, "overdue" if today > due else "due")


def due_dates(session: Session, user_id: int, today: date) -> dict[int, DueInfo]:
    """{version id: DueInfo} for every assignment of the user (waived ones excepted), in
    one query. Where one version carries several cycles, the latest cycle wins."""
    rows = session.execute(
        select(Assignment.version_id, Assignment.due_date, Assignment.status,
               Assignment.completed_at)
        .where(Assignment.user_id == user_id, Assignment.status != "waived")
        .order_by(Assignment.cycle)
    ).all()
    if not rows:
        return {}
    calendar = load_calendar(session)
    return {version_id: due_info(due=due, status=status, completed_at=completed_at,
                                 today=today, calendar=calendar)
            for version_id, due, status, completed_at in rows}


def register(app: Flask) -> None:
    """Offer due dates to "My learning" (called from ``create_app``)."""
    app.extensions[DUE_DATES_EXTENSION] = due_dates
