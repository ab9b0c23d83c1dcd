"""What the regulation dashboard reads: open updates most urgent first with their
clocks, the on-time rate (overall and per source) in SQL aggregates, the list of all
updates, and one update's history.

On-time rate: among updates DETECTED in the last ``window_days`` calendar days that have
been pushed (pushed or closed), the share pushed on or before their deadline day (local
date). Updates still open are not in the rate (their outcome is not known yet; those
already past the deadline are counted beside it), nor are those set aside as not
relevant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, aliased

from lms.compliance.engine import local_date
from lms.compliance.regulation.clock import ClockReading, on_time_rate, read_clock
from lms.compliance.regulation.models import (
    OPEN_STATES,
    FeedSource,
    RegulationEvent,
    RegulationUpdate,
)
from lms.paging import Page
from lms.people.models import User
from lms.workdays import WorkCalendar

__all__ = ["WINDOW_DAYS", "HistoryLine", "OpenItem", "RateRow", "history", "on_time_rates",
           "open_updates", "updates_page"]

WINDOW_DAYS = 90
PER_PAGE = 25


@dataclass(frozen=True)
class OpenItem:
    update: RegulationUpdate
    source_name: str | None
    clock: ClockReading


def _page_args(page: int, per_page: int, total: int) -> tuple[int, int]:
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    return page, (page - 1) * per_page


def open_updates(session: Session, *, today: date, calendar: WorkCalendar, page: int = 1,
                 per_page: int = PER_PAGE) -> Page:
    """Open updates (new, triaged, material ready), earliest deadline first (working days
    left grow with the deadline date, so this is the most urgent first), with clocks."""
    is_open = RegulationUpdate.state.in_(OPEN_STATES)
    total = session.scalar(select(func.count()).select_from(RegulationUpdate).where(is_open))
    page, offset = _page_args(page, per_page, total or 0)
    rows = session.execute(
        select(RegulationUpdate, FeedSource.name)
        .outerjoin(FeedSource, FeedSource.id == RegulationUpdate.source_id)
        .where(is_open)
        .order_by(RegulationUpdate.deadline_date, RegulationUpdate.detected_at,
                  RegulationUpdate.id)
        .limit(per_page).offset(offset)).all()
    items = [OpenItem(u, name, read_clock(today, u.deadline_date, calendar)) for u, name in rows]
    return Page(items=items, page=page, per_page=per_page, total=total or 0)


def updates_page(session: Session, *, state: str | None, page: int = 1,
                 per_page: int = PER_PAGE) -> Page:
    """All updates (or those in one state), newest detection first: (update, source name)."""
    where = [RegulationUpdate.state == state] if state else []
    total = session.scalar(select(func.count()).select_from(RegulationUpdate).where(*where))
    page, offset = _page_args(page, per_page, total or 0)
    rows = session.execute(
        select(RegulationUpdate, FeedSource.name)
        .outerjoin(FeedSource, FeedSource.id == RegulationUpdate.source_id)
        .where(*where)
        .order_by(RegulationUpdate.detected_at.desc(), RegulationUpdate.id.desc())
        .limit(per_page).offset(offset)).all()
    return Page(items=[(u, name) for u, name in rows], page=page, per_page=per_page,
                total=total or 0)


@dataclass(frozen=True)
class RateRow:
    """One line of the on-time table: a source (None: entered by hand; the overall row
    has ``overall``)."""

    source_id: int | None
    name: str | None
    detected: int  # detected in the window (any state)
    pushed: int
    on_time: int
    open_overdue: int  # still open and past the deadline
    overall: bool = False

    @property
    def late(self) -> int:
        return self.pushed - self.on_time

    @property
    def rate(self) -> float | None:
        return on_time_rate(self.on_time, self.pushed)


def on_time_rates(session: Session, *, now: datetime, window_days: int = WINDOW_DAYS
                  ) -> tuple[RateRow, list[RateRow]]:
    """(overall, per source) for updates detected since ``now - window_days``: ONE
    GROUP BY over the window's rows; the overall row is the sum of the groups."""
    u = RegulationUpdate
    since = now - timedelta(days=window_days)
    today = local_date(now)
    pushed = u.pushed_at.is_not(None)
    rows = session.execute(
        select(u.source_id, FeedSource.name,
               func.count(),
               func.count(case((pushed, 1))),
               func.count(case((pushed & u.on_time.is_(True), 1))),
               func.count(case((u.state.in_(OPEN_STATES) & (u.deadline_date < today), 1))))
        .outerjoin(FeedSource, FeedSource.id == u.source_id)
        .where(u.detected_at >= since)
        .group_by(u.source_id, FeedSource.name)
        .order_by(FeedSource.name.is_(None), FeedSource.name)).all()
    per_source = [RateRow(sid, name, d, p, o, od) for sid, name, d, p, o, od in rows]
    overall = RateRow(None, None, sum(r.detected for r in per_source),
                      sum(r.pushed for r in per_source), sum(r.on_time for r in per_source),
                      sum(r.open_overdue for r in per_source), overall=True)
    return overall, per_source


@dataclass(frozen=True)
class HistoryLine:
    event: RegulationEvent
    actor: str | None


def history(session: Session, update_id: int) -> list[HistoryLine]:
    """The update's events in order, with who acted (one query)."""
    actor = aliased(User)
    rows = session.execute(
        select(RegulationEvent, actor.display_name)
        .outerjoin(actor, actor.id == RegulationEvent.actor_id)
        .where(RegulationEvent.update_id == update_id)
        .order_by(RegulationEvent.id)).all()
    return [HistoryLine(e, name) for e, name in rows]
