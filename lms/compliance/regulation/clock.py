"""The regulation clock: how many Chinese working days an update has left, how urgent
that is, and whether a push was on time. Pure functions (no Flask, no database).

Counting rule: the deadline is the last local (Asia/Shanghai) day on which pushing is
on time. "Remaining" is the number of working days after today up to and including
the deadline (``WorkCalendar.workdays_between``), so on the detection day an update
has exactly N left, on the deadline day 0 ("due today"), and past the deadline the
count is negative: minus the working days since the deadline, at least -1 (on the
weekend right after a Friday deadline the update is already overdue although no
working day has passed).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from lms.workdays import UnknownYearError, WorkCalendar

__all__ = [
    "ALERT_2_DAYS_LEFT",
    "ALERT_OVERDUE",
    "SOON_WORKING_DAYS",
    "URGENCIES",
    "ClockReading",
    "alerts_due",
    "is_on_time",
    "on_time_rate",
    "read_clock",
    "remaining_working_days",
    "urgency",
]

SOON_WORKING_DAYS = 2  # this many left or fewer: amber, and the "2 days left" alert
URGENCIES = ("overdue", "soon", "ok", "unknown")  # red, amber, green, no calendar
ALERT_2_DAYS_LEFT = "2_days_left"
ALERT_OVERDUE = "overdue"


def remaining_working_days(today: date, deadline: date, calendar: WorkCalendar) -> int:
    """Working days left until the end of ``deadline`` (0 on the day itself, negative
    once it has passed). Raises ``UnknownYearError`` rather than guess."""
    if today <= deadline:
        return calendar.workdays_between(today, deadline)
    return -max(1, calendar.workdays_between(deadline, today))


def urgency(remaining: int | None, *, overdue: bool) -> str:
    """"overdue" (red) past the deadline, "soon" (amber) with at most
    ``SOON_WORKING_DAYS`` left, "ok" (green) otherwise; "unknown" without a count."""
    if overdue:
        return "overdue"
    if remaining is None:
        return "unknown"
    return "soon" if remaining <= SOON_WORKING_DAYS else "ok"


@dataclass(frozen=True)
class ClockReading:
    """An open update's clock on one day; ``remaining`` is None when the calendar does
    not know a year between today and the deadline (the date is still shown)."""

    deadline: date
    remaining: int | None
    urgency: str

    @property
    def overdue(self) -> bool:
        return self.urgency == "overdue"


def read_clock(today: date, deadline: date, calendar: WorkCalendar) -> ClockReading:
    """The clock of an open update on ``today``."""
    overdue = today > deadline
    try:
        remaining: int | None = remaining_working_days(today, deadline, calendar)
    except UnknownYearError:
        remaining = None
    return ClockReading(deadline, remaining, urgency(remaining, overdue=overdue))


def is_on_time(pushed_on: date, deadline: date) -> bool:
    """On time means pushed (local date) on or before the deadline day."""
    return pushed_on <= deadline


def on_time_rate(on_time: int, pushed: int) -> float | None:
    """The share of pushed updates that were on time (None when nothing was pushed)."""
    if pushed < 0 or not 0 <= on_time <= pushed:
        raise ValueError(f"on_time {on_time} must be between 0 and pushed {pushed}")
    return None if pushed == 0 else on_time / pushed


def alerts_due(reading: ClockReading, already_sent: set[str] | frozenset[str]) -> list[str]:
    """Which alerts an open update needs now, each at most once in its life: "overdue"
    once the deadline has passed, else "2_days_left" at two working days or fewer (also
    when the first look comes later than that). An update first seen overdue gets only
    the overdue alert: "2 days left" would be false by then."""
    if reading.overdue:
        return [] if ALERT_OVERDUE in already_sent else [ALERT_OVERDUE]
    if reading.remaining is not None and reading.remaining <= SOON_WORKING_DAYS \
            and ALERT_2_DAYS_LEFT not in already_sent:
        return [ALERT_2_DAYS_LEFT]
    return []
