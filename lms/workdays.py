"""Chinese working-day arithmetic (工作日计算) for due dates and reminders.

Deadlines in Chinese labour practice are counted in working days, and the
calendar is not just Monday–Friday: statutory holidays fall on weekdays and
adjusted weekends (调休) are working days.  The ``chinese_calendar`` package
carries the State Council schedule for the years it knows; an admin can layer
local overrides on top and declare later years that the package does not know
yet.  An unknown year is an error, never a guess, because guessing "weekdays
only" would silently put a due date on a public holiday.

Pure logic: standard library plus ``chinese_calendar`` only, so it can be used
from the web app, the CLI and the tests alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache
from types import MappingProxyType

import chinese_calendar

__all__ = [
    "UnknownYearError",
    "WorkCalendar",
    "default_calendar",
    "parse_iso_date",
]

_ONE_DAY = timedelta(days=1)
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class UnknownYearError(ValueError):
    """Raised instead of guessing when no holiday schedule exists for a year."""

    def __init__(self, year: int) -> None:
        self.year = year
        super().__init__(
            f"没有 {year} 年的节假日安排 (no holiday calendar for year {year}): "
            "add it in the workday overrides"
        )

    def __reduce__(self) -> tuple[type[UnknownYearError], tuple[int]]:
        # Keep the exception picklable (e.g. across worker processes) despite
        # the custom __init__ signature.
        return (type(self), (self.year,))


@cache
def _package_rest_days(year: int) -> frozenset[date] | None:
    """Non-working days of ``year`` per chinese_calendar, or None if it does not know the year.

    chinese_calendar.is_workday rescans its whole holiday table on every call
    (~30 µs), so a long day loop would be slow; one pass per year, cached for
    the life of the process, makes every later lookup a set membership test.
    """
    try:
        chinese_calendar.is_workday(date(year, 1, 1))
    except NotImplementedError:
        return None
    day = date(year, 1, 1)
    rest: set[date] = set()
    while day.year == year:
        if not chinese_calendar.is_workday(day):
            rest.add(day)
        day += _ONE_DAY
    return frozenset(rest)


def _as_date(day: date) -> date:
    """Drop the time part of a datetime, which would otherwise never match override keys."""
    return day.date() if isinstance(day, datetime) else day


@dataclass(frozen=True)
class WorkCalendar:
    """The working-day calendar: chinese_calendar plus admin overrides and declared years.

    ``overrides`` maps a date to True (working day) or False (day off) and wins
    over everything else, e.g. a local holiday or a company make-up Saturday.
    ``extra_years`` lists years the package does not know but that an admin has
    declared complete through overrides; in those years Monday–Friday are
    working days unless overridden.
    """

    overrides: Mapping[date, bool] = field(default_factory=dict, hash=False)
    extra_years: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        # Copy into a read-only view so a caller mutating its dict later cannot
        # change a calendar that is already in use (the dataclass is "frozen").
        checked: dict[date, bool] = {}
        for day, working in self.overrides.items():
            if not isinstance(day, date) or isinstance(day, datetime):
                raise TypeError(f"override key must be a datetime.date, got {day!r}")
            if not isinstance(working, bool):
                raise TypeError(f"override for {day} must be True or False, got {working!r}")
            checked[day] = working
        object.__setattr__(self, "overrides", MappingProxyType(checked))
        object.__setattr__(self, "extra_years", frozenset(self.extra_years))

    def is_known_year(self, year: int) -> bool:
        """Whether the calendar can answer for every day of ``year`` without guessing."""
        return _package_rest_days(year) is not None or year in self.extra_years

    def is_workday(self, day: date) -> bool:
        """Whether ``day`` is a working day; raises UnknownYearError rather than guess."""
        day = _as_date(day)
        override = self.overrides.get(day)
        if override is not None:
            return override
        rest = _package_rest_days(day.year)
        if rest is not None:
            return day not in rest
        if day.year in self.extra_years:
            return day.weekday() < 5
        raise UnknownYearError(day.year)

    def add_workdays(self, start: date, n: int) -> date:
        """The date ``n`` working days after ``start`` (start not counted); negative ``n`` goes back.

        For n > 0 the result is the n-th working day strictly after start, for
        n < 0 the |n|-th working day strictly before it, and n == 0 returns
        start unchanged (even if it is a day off).  The result is always a
        working day when n != 0.
        """
        day = _as_date(start)
        step = _ONE_DAY if n >= 0 else -_ONE_DAY
        remaining = abs(n)
        while remaining:
            day += step
            if self.is_workday(day):
                remaining -= 1
        return day

    def workdays_between(self, start: date, end: date) -> int:
        """Working days in (start, end]; if end < start, minus the working days in (end, start].

        Defined as W(end) - W(start) where W counts working days up to and
        including a date, so it is antisymmetric and additive:
        between(a, b) + between(b, c) == between(a, c).  Hence
        ``workdays_between(a, add_workdays(a, n)) == n`` holds for every n >= 0,
        and for n < 0 whenever ``a`` itself is a working day (going back from a
        day off, the day off is not a working day to count).
        """
        start, end = _as_date(start), _as_date(end)
        if end < start:
            return -self.workdays_between(end, start)
        count = 0
        day = start
        while day < end:
            day += _ONE_DAY
            if self.is_workday(day):
                count += 1
        return count


def default_calendar() -> WorkCalendar:
    """The plain national calendar: chinese_calendar's data with no overrides."""
    return WorkCalendar()


def parse_iso_date(text: str) -> date:
    """Parse a strict ``YYYY-MM-DD`` date, with an error message fit to show a CLI user.

    Stricter than date.fromisoformat, which also accepts forms like ``20261001``
    or ``2026-W40-4`` that are more likely typos than intent here.
    """
    if not isinstance(text, str):
        raise ValueError(f"日期必须是文本 (date must be text), got {type(text).__name__}")
    cleaned = text.strip()
    if not _ISO_DATE.fullmatch(cleaned):
        raise ValueError(
            f"无效日期 {text!r} (invalid date {text!r}): expected YYYY-MM-DD, e.g. 2026-10-08"
        )
    try:
        return date.fromisoformat(cleaned)
    except ValueError as exc:
        raise ValueError(
            f"无效日期 {text!r} (invalid date {text!r}): {exc}; expected a real calendar date as YYYY-MM-DD"
        ) from exc
