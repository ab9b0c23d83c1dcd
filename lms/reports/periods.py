"""Reporting periods (months and quarters in Asia/Shanghai) and the arithmetic the KPI
needs: bounds as local dates and as UTC instants, the "as of" day of a period, rates
rounded the way a person reads them, and working days late with a memo.

Pure: standard library and ``lms.workdays`` only, so it is tested without an app.

A period is named ``2026-09`` (a month) or ``2026-Q3`` (a quarter). Its bounds are
local calendar dates, first and last day inclusive; timestamps (completion, exam
submission, signature) are compared with the half-open UTC interval from local
midnight of the first day to local midnight after the last. China keeps UTC+8 all
year, but the conversion goes through zoneinfo so nothing assumes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from lms.workdays import WorkCalendar

__all__ = [
    "PERIOD_KINDS",
    "SHANGHAI",
    "MemoCalendar",
    "Period",
    "as_of_day",
    "local_midnight_utc",
    "parse_period",
    "percent",
    "period_of",
    "recent_periods",
]

SHANGHAI = ZoneInfo("Asia/Shanghai")
PERIOD_KINDS = ("month", "quarter")
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
_QUARTER = re.compile(r"([0-9]{4})-?[Qq]([0-9])")
MIN_YEAR, MAX_YEAR = 2000, 2100


@dataclass(frozen=True, order=True)
class Period:
    """A calendar month (index 1–12) or quarter (index 1–4) of a year."""

    year: int
    kind: str
    index: int

    def __post_init__(self) -> None:
        if self.kind not in PERIOD_KINDS:
            raise ValueError(f"unknown period kind {self.kind!r}")
        top = 12 if self.kind == "month" else 4
        if not 1 <= self.index <= top:
            raise ValueError(f"{self.kind} {self.index} is out of range 1..{top}")
        if not MIN_YEAR <= self.year <= MAX_YEAR:
            raise ValueError(f"year {self.year} is out of range {MIN_YEAR}..{MAX_YEAR}")

    @property
    def key(self) -> str:
        """``2026-09`` or ``2026-Q3`` (what ``parse_period`` reads back)."""
        if self.kind == "month":
            return f"{self.year}-{self.index:02d}"
        return f"{self.year}-Q{self.index}"

    def __str__(self) -> str:
        return self.key

    @property
    def first_month(self) -> int:
        return self.index if self.kind == "month" else 3 * self.index - 2

    @property
    def start(self) -> date:
        """The first local day of the period."""
        return date(self.year, self.first_month, 1)

    @property
    def end(self) -> date:
        """The last local day of the period (inclusive)."""
        return self.following().start - timedelta(days=1)

    def following(self) -> Period:
        if self.kind == "month":
            return Period(self.year + self.index // 12, "month", self.index % 12 + 1)
        return Period(self.year + self.index // 4, "quarter", self.index % 4 + 1)

    def preceding(self) -> Period:
        if self.kind == "month":
            return (Period(self.year - 1, "month", 12) if self.index == 1
                    else Period(self.year, "month", self.index - 1))
        return (Period(self.year - 1, "quarter", 4) if self.index == 1
                else Period(self.year, "quarter", self.index - 1))

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end

    def utc_bounds(self) -> tuple[datetime, datetime]:
        """[local midnight of the first day, local midnight after the last day) in UTC."""
        return local_midnight_utc(self.start), local_midnight_utc(self.end + timedelta(days=1))

    def months(self) -> list[Period]:
        """The months of the period (itself for a month)."""
        if self.kind == "month":
            return [self]
        return [Period(self.year, "month", self.first_month + i) for i in range(3)]


def parse_period(text: str | None) -> Period:
    """Read ``2026-09`` / ``2026-Q3`` (also ``2026Q3``, lower-case q); ValueError with a
    message naming what was expected otherwise."""
    cleaned = (text or "").strip()
    month = _MONTH.fullmatch(cleaned)
    quarter = _QUARTER.fullmatch(cleaned)
    try:
        if month:
            return Period(int(month.group(1)), "month", int(month.group(2)))
        if quarter:
            return Period(int(quarter.group(1)), "quarter", int(quarter.group(2)))
    except ValueError as exc:
        raise ValueError(f"{cleaned!r}: {exc}") from exc
    raise ValueError(f"{cleaned!r} is not a period: expected YYYY-MM (a month) or "
                     "YYYY-Qn (a quarter), e.g. 2026-09 or 2026-Q3")


def period_of(day: date, kind: str) -> Period:
    """The month or quarter a local date falls in."""
    if kind == "month":
        return Period(day.year, "month", day.month)
    return Period(day.year, "quarter", (day.month - 1) // 3 + 1)


def recent_periods(today: date, kind: str, count: int) -> list[Period]:
    """The period containing ``today`` and the ``count - 1`` before it, newest first."""
    out = [period_of(today, kind)]
    while len(out) < count:
        out.append(out[-1].preceding())
    return out


def local_midnight_utc(day: date) -> datetime:
    """00:00 of a local (Asia/Shanghai) date, as an aware UTC datetime."""
    return datetime.combine(day, time(0), tzinfo=SHANGHAI).astimezone(UTC)


def as_of_day(period: Period, today: date) -> date:
    """The last local day a period's figures look at: its last day once it is over, else
    today. A closed period's figures therefore never change when people catch up later
    (appraisal needs that); the running period shows where things stand now."""
    return min(period.end, today)


def percent(part: int, whole: int) -> Decimal | None:
    """``part / whole`` as a percentage with one decimal, halves rounded up (2 of 3 ->
    66.7); None when there is nothing to divide (shown as a dash, never as 0 % or 100 %)."""
    if whole <= 0:
        return None
    value = Decimal(part) * 100 / Decimal(whole)
    return value.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


class MemoCalendar:
    """A working-day calendar whose ``workdays_between`` is memoised: a report's
    thousands of late assignments share a handful of (due date, end day) pairs, and
    each uncached count walks the days between. Quacks like ``WorkCalendar`` for
    ``workdays_between`` (what ``lms.compliance.learner.due_info`` asks of it)."""

    def __init__(self, calendar: WorkCalendar) -> None:
        self.calendar = calendar
        self._memo: dict[tuple[date, date], int] = {}

    def workdays_between(self, start: date, end: date) -> int:
        key = (start, end)
        if key not in self._memo:
            self._memo[key] = self.calendar.workdays_between(start, end)
        return self._memo[key]

    def late_days(self, due: date, end: date) -> int:
        """Working days in (due, end]; 0 when ``end`` is not after ``due``. Raises
        ``UnknownYearError`` for a year the calendar does not know."""
        return self.workdays_between(due, end) if end > due else 0
