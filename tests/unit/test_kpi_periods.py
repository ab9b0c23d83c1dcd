"""Reporting periods in Asia/Shanghai and the KPI's arithmetic: bounds, parsing, the
as-of day, rates rounded as people read them, working days late through the memo."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lms.reports.periods import (
    MemoCalendar,
    Period,
    as_of_day,
    local_midnight_utc,
    parse_period,
    percent,
    period_of,
    recent_periods,
)
from lms.workdays import UnknownYearError, WorkCalendar, default_calendar


@pytest.mark.parametrize("text, start, end", [
    ("2026-09", date(2026, 9, 1), date(2026, 9, 30)),
    ("2026-02", date(2026, 2, 1), date(2026, 2, 28)),
    ("2028-02", date(2028, 2, 1), date(2028, 2, 29)),  # leap year
    ("2026-12", date(2026, 12, 1), date(2026, 12, 31)),
    ("2026-Q1", date(2026, 1, 1), date(2026, 3, 31)),
    ("2026-Q3", date(2026, 7, 1), date(2026, 9, 30)),
    ("2026q4", date(2026, 10, 1), date(2026, 12, 31)),
    (" 2026-Q2 ", date(2026, 4, 1), date(2026, 6, 30)),
])
def test_bounds_are_local_calendar_days(text, start, end):
    period = parse_period(text)
    assert (period.start, period.end) == (start, end)
    assert parse_period(period.key) == period


@pytest.mark.parametrize("text", ["", None, "2026-13", "2026-00", "2026-Q0", "2026-Q5",
                                  "2026/09", "26-09", "2026-9", "September", "1999-12",
                                  "2101-01", "2026-09-01"])
def test_bad_periods_are_refused_with_the_expected_form(text):
    with pytest.raises(ValueError, match=r"YYYY|out of range"):
        parse_period(text)


def test_utc_bounds_start_at_beijing_midnight():
    start, end = parse_period("2026-10").utc_bounds()
    assert start == datetime(2026, 9, 30, 16, 0, tzinfo=UTC)
    assert end == datetime(2026, 10, 31, 16, 0, tzinfo=UTC)
    assert local_midnight_utc(date(2027, 1, 1)) == datetime(2026, 12, 31, 16, 0, tzinfo=UTC)


def test_following_preceding_and_year_ends():
    assert parse_period("2026-12").following() == parse_period("2027-01")
    assert parse_period("2027-01").preceding() == parse_period("2026-12")
    assert parse_period("2026-Q4").following() == parse_period("2027-Q1")
    assert parse_period("2026-Q1").preceding() == parse_period("2025-Q4")
    assert [p.key for p in parse_period("2026-Q3").months()] == ["2026-07", "2026-08",
                                                                  "2026-09"]


def test_period_of_and_recent_periods():
    assert period_of(date(2026, 9, 30), "quarter").key == "2026-Q3"
    assert period_of(date(2026, 10, 1), "quarter").key == "2026-Q4"
    assert period_of(date(2026, 1, 31), "month").key == "2026-01"
    assert [p.key for p in recent_periods(date(2026, 2, 10), "month", 3)] == [
        "2026-02", "2026-01", "2025-12"]
    assert [p.key for p in recent_periods(date(2026, 2, 10), "quarter", 2)] == [
        "2026-Q1", "2025-Q4"]


def test_as_of_day_is_the_last_day_once_over_else_today():
    september = parse_period("2026-09")
    assert as_of_day(september, date(2026, 10, 16)) == date(2026, 9, 30)
    assert as_of_day(september, date(2026, 9, 12)) == date(2026, 9, 12)
    assert as_of_day(parse_period("2026-Q3"), date(2026, 9, 30)) == date(2026, 9, 30)


@pytest.mark.parametrize("part, whole, shown", [
    (2, 3, Decimal("66.7")), (1, 3, Decimal("33.3")), (3, 7, Decimal("42.9")),
    (2, 7, Decimal("28.6")), (1, 8, Decimal("12.5")), (1, 16, Decimal("6.3")),  # half up
    (0, 5, Decimal("0.0")), (5, 5, Decimal("100.0")), (0, 0, None),
])
def test_percent_rounds_half_up_and_has_no_rate_without_a_base(part, whole, shown):
    assert percent(part, whole) == shown


@given(st.integers(0, 10_000), st.integers(1, 10_000))
def test_percent_stays_between_0_and_100_when_part_le_whole(part, whole):
    part = min(part, whole)
    value = percent(part, whole)
    assert Decimal(0) <= value <= Decimal(100)
    assert abs(value - Decimal(part) * 100 / whole) <= Decimal("0.05")


def test_late_days_count_chinese_working_days_and_memoise():
    memo = MemoCalendar(default_calendar())
    # due the last working day before National Day, done on 10-09: 10-08 and 10-09
    assert memo.late_days(date(2026, 9, 30), date(2026, 10, 9)) == 2
    # done on a holiday after the due date: late by date, but no working day lost
    assert memo.late_days(date(2026, 9, 30), date(2026, 10, 1)) == 0
    # the Sunday worked for National Day (调休) counts
    assert memo.late_days(date(2026, 9, 19), date(2026, 9, 21)) == 2
    assert memo.late_days(date(2026, 10, 13), date(2026, 10, 13)) == 0
    assert memo.late_days(date(2026, 10, 13), date(2026, 10, 1)) == 0
    assert len(memo._memo) == 3  # one walk per pair, not per call


def test_late_days_refuse_an_unknown_year():
    memo = MemoCalendar(WorkCalendar())
    with pytest.raises(UnknownYearError):
        memo.late_days(date(2031, 1, 5), date(2031, 1, 9))


def test_period_validates_its_fields():
    with pytest.raises(ValueError):
        Period(2026, "week", 1)
    with pytest.raises(ValueError):
        Period(2026, "month", 13)
