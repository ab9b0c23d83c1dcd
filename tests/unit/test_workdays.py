"""Chinese working-day arithmetic: statutory holidays, 调休 weekends, overrides, unknown years.

Expected dates below were counted by hand from chinese_calendar 1.11.0's 2026 data
(State Council schedule): National Day 10-01..10-07 off with 09-20 (Sun) and
10-10 (Sat) worked; Mid-Autumn 09-25..09-27 off; Spring Festival 02-15..02-23 off
with 02-14 (Sat) and 02-28 (Sat) worked.
"""

from __future__ import annotations

import pickle
import time
from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lms.workdays import (
    UnknownYearError,
    WorkCalendar,
    default_calendar,
    parse_iso_date,
)

CAL = default_calendar()


# --- is_workday against the 2026 schedule ---------------------------------------------


@pytest.mark.parametrize("day", range(1, 8))
def test_national_day_2026_golden_week_is_off(day: int) -> None:
    assert CAL.is_workday(date(2026, 10, day)) is False


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 9, 19), False),  # ordinary Saturday
        (date(2026, 9, 20), True),  # Sunday worked (调休) for National Day
        (date(2026, 9, 25), False),  # Mid-Autumn Festival, a Friday
        (date(2026, 9, 30), True),  # last working day before the golden week
        (date(2026, 10, 8), True),  # back to work, Thursday
        (date(2026, 10, 10), True),  # Saturday worked (调休) for National Day
        (date(2026, 10, 11), False),  # ordinary Sunday
        (date(2026, 2, 14), True),  # Saturday worked (调休) for Spring Festival
        (date(2026, 2, 16), False),  # Spring Festival, a Monday
        (date(2026, 2, 23), False),  # last Spring Festival day, a Monday
        (date(2026, 2, 28), True),  # Saturday worked (调休) for Spring Festival
        (date(2026, 3, 1), False),  # ordinary Sunday
        (date(2026, 3, 2), True),  # ordinary Monday
    ],
)
def test_is_workday_2026_schedule(day: date, expected: bool) -> None:
    assert CAL.is_workday(day) is expected


def test_datetime_is_treated_as_its_date() -> None:
    assert CAL.is_workday(datetime(2026, 10, 10, 23, 59)) is True
    assert CAL.add_workdays(datetime(2026, 9, 30, 18, 0), 1) == date(2026, 10, 8)


# --- add_workdays / workdays_between -------------------------------------------------


def test_national_day_2026_seven_workdays_from_sep_28() -> None:
    # After Mon 09-28: 09-29 (1), 09-30 (2), [10-01..10-07 off], 10-08 (3), 10-09 (4),
    # Sat 10-10 调休 (5), [Sun 10-11 off], 10-12 (6), 10-13 (7).
    assert CAL.add_workdays(date(2026, 9, 28), 7) == date(2026, 10, 13)
    assert CAL.workdays_between(date(2026, 9, 28), date(2026, 10, 13)) == 7


def test_due_date_spanning_adjusted_saturday_counts_it() -> None:
    # From Thu 10-08: Fri 10-09 (1), Sat 10-10 调休 (2). A weekday-only count would say Mon 10-12.
    assert CAL.add_workdays(date(2026, 10, 8), 2) == date(2026, 10, 10)
    assert CAL.add_workdays(date(2026, 10, 8), 3) == date(2026, 10, 12)
    assert CAL.workdays_between(date(2026, 10, 9), date(2026, 10, 11)) == 1


def test_adjusted_sunday_before_national_day_is_counted() -> None:
    # From Fri 09-18: Sun 09-20 调休 (1), Mon 09-21 (2).
    assert CAL.add_workdays(date(2026, 9, 18), 1) == date(2026, 9, 20)
    assert CAL.add_workdays(date(2026, 9, 18), 2) == date(2026, 9, 21)


def test_spring_festival_2026() -> None:
    # After Thu 02-12: Fri 02-13 (1), Sat 02-14 调休 (2), [02-15..02-23 off],
    # 02-24 (3), 02-25 (4), 02-26 (5).
    assert CAL.add_workdays(date(2026, 2, 12), 5) == date(2026, 2, 26)
    # From the last working day before the break, one working day later is after it.
    assert CAL.add_workdays(date(2026, 2, 14), 1) == date(2026, 2, 24)
    assert CAL.workdays_between(date(2026, 2, 14), date(2026, 2, 23)) == 0
    assert CAL.workdays_between(date(2026, 2, 13), date(2026, 2, 24)) == 2
    # Sat 02-28 is worked, Sun 03-01 is not.
    assert CAL.add_workdays(date(2026, 2, 27), 2) == date(2026, 3, 2)


def test_plain_week() -> None:
    # 2026-03-09 is a Monday in an ordinary week.
    monday = date(2026, 3, 9)
    assert CAL.add_workdays(monday, 4) == date(2026, 3, 13)  # Friday
    assert CAL.add_workdays(monday, 5) == date(2026, 3, 16)  # skips the weekend
    assert CAL.workdays_between(monday, date(2026, 3, 15)) == 4
    assert CAL.workdays_between(monday, date(2026, 3, 16)) == 5
    # From a Saturday, the next working day is Monday.
    assert CAL.add_workdays(date(2026, 3, 14), 1) == date(2026, 3, 16)


def test_n_zero_returns_start_even_on_a_day_off() -> None:
    assert CAL.add_workdays(date(2026, 3, 10), 0) == date(2026, 3, 10)
    assert CAL.add_workdays(date(2026, 10, 3), 0) == date(2026, 10, 3)
    assert CAL.workdays_between(date(2026, 10, 3), date(2026, 10, 3)) == 0


def test_negative_n_goes_backwards() -> None:
    # Back from Thu 10-08: 09-30 (1), 09-29 (2), 09-28 (3), [09-25..09-27 off], 09-24 (4).
    assert CAL.add_workdays(date(2026, 10, 8), -1) == date(2026, 9, 30)
    assert CAL.add_workdays(date(2026, 10, 8), -4) == date(2026, 9, 24)
    # Back from Mon 10-12 (Sun 10-11 off): Sat 10-10 调休 (1).
    assert CAL.add_workdays(date(2026, 10, 12), -1) == date(2026, 10, 10)
    # Back from a day off: the nearest earlier working day.
    assert CAL.add_workdays(date(2026, 10, 4), -1) == date(2026, 9, 30)


def test_workdays_between_reverse_order_is_negative() -> None:
    assert CAL.workdays_between(date(2026, 10, 13), date(2026, 9, 28)) == -7
    assert CAL.workdays_between(date(2026, 3, 16), date(2026, 3, 9)) == -5
    assert CAL.workdays_between(date(2026, 10, 8), CAL.add_workdays(date(2026, 10, 8), -4)) == -4


def test_long_spans_are_fast() -> None:
    # A few thousand working days spanning most of the known years must stay cheap
    # (chinese_calendar.is_workday alone costs ~30 µs per call).
    start = date(2010, 1, 4)
    CAL.add_workdays(start, 1)  # warm nothing in particular; the timing covers year caching too
    began = time.perf_counter()
    end = CAL.add_workdays(start, 3000)
    assert CAL.workdays_between(start, end) == 3000
    assert CAL.add_workdays(end, -3000) == start  # 2010-01-04 is a working day
    assert time.perf_counter() - began < 2.0


# --- overrides ---------------------------------------------------------------------


def test_override_local_holiday_on_a_weekday() -> None:
    local = WorkCalendar(overrides={date(2026, 3, 11): False})  # Wednesday
    assert CAL.is_workday(date(2026, 3, 11)) is True
    assert local.is_workday(date(2026, 3, 11)) is False
    assert CAL.add_workdays(date(2026, 3, 9), 3) == date(2026, 3, 12)
    assert local.add_workdays(date(2026, 3, 9), 3) == date(2026, 3, 13)
    assert local.workdays_between(date(2026, 3, 9), date(2026, 3, 13)) == 3


def test_override_sunday_worked() -> None:
    cal = WorkCalendar(overrides={date(2026, 3, 15): True})  # Sunday
    assert cal.is_workday(date(2026, 3, 15)) is True
    assert cal.add_workdays(date(2026, 3, 13), 1) == date(2026, 3, 15)
    assert CAL.add_workdays(date(2026, 3, 13), 1) == date(2026, 3, 16)
    assert cal.workdays_between(date(2026, 3, 13), date(2026, 3, 16)) == 2


def test_override_wins_over_adjusted_working_day() -> None:
    cal = WorkCalendar(overrides={date(2026, 10, 10): False})
    assert cal.is_workday(date(2026, 10, 10)) is False
    assert cal.add_workdays(date(2026, 10, 8), 2) == date(2026, 10, 12)


def test_overrides_are_copied_and_read_only() -> None:
    source = {date(2026, 3, 11): False}
    cal = WorkCalendar(overrides=source)
    source[date(2026, 3, 11)] = True
    source[date(2026, 3, 12)] = False
    assert cal.is_workday(date(2026, 3, 11)) is False
    assert cal.is_workday(date(2026, 3, 12)) is True
    with pytest.raises(TypeError):
        cal.overrides[date(2026, 3, 13)] = False  # type: ignore[index]
    assert cal == WorkCalendar(overrides={date(2026, 3, 11): False})
    assert hash(cal) == hash(WorkCalendar(overrides={date(2026, 3, 11): False}))


@pytest.mark.parametrize(
    "overrides",
    [
        {datetime(2026, 3, 11, 0, 0): False},  # would never match a date lookup
        {date(2026, 3, 11): 0},  # not a bool
        {date(2026, 3, 11): "false"},  # truthy string, a classic mistake
    ],
)
def test_bad_overrides_are_rejected(overrides: dict) -> None:
    with pytest.raises(TypeError):
        WorkCalendar(overrides=overrides)


# --- unknown years -------------------------------------------------------------------


def test_known_years() -> None:
    assert CAL.is_known_year(2004)
    assert CAL.is_known_year(2026)
    assert not CAL.is_known_year(2003)
    assert not CAL.is_known_year(2027)
    assert WorkCalendar(extra_years=frozenset({2027})).is_known_year(2027)


def test_unknown_year_raises_from_is_workday() -> None:
    with pytest.raises(UnknownYearError, match="2027") as info:
        CAL.is_workday(date(2027, 3, 1))
    assert info.value.year == 2027
    assert isinstance(info.value, ValueError)
    assert "没有 2027 年的节假日安排" in str(info.value)


def test_unknown_year_raises_when_add_workdays_crosses_into_it() -> None:
    # 12-29, 12-30, 12-31 are working days; the 4th would be in 2027.
    assert CAL.add_workdays(date(2026, 12, 28), 3) == date(2026, 12, 31)
    with pytest.raises(UnknownYearError) as info:
        CAL.add_workdays(date(2026, 12, 28), 10)
    assert info.value.year == 2027
    with pytest.raises(UnknownYearError):
        CAL.workdays_between(date(2026, 12, 28), date(2027, 1, 8))
    with pytest.raises(UnknownYearError) as before:
        CAL.add_workdays(date(2004, 1, 5), -5)
    assert before.value.year == 2003


def test_unknown_year_error_pickles() -> None:
    err = pickle.loads(pickle.dumps(UnknownYearError(2027)))  # noqa: S301 - our own bytes
    assert err.year == 2027
    assert str(err) == str(UnknownYearError(2027))


def test_declared_extra_year_with_overrides_works() -> None:
    cal = WorkCalendar(
        overrides={
            date(2027, 1, 1): False,  # New Year's Day, a Friday
            date(2027, 1, 9): True,  # a made-up 调休 Saturday
        },
        extra_years=frozenset({2027}),
    )
    # 12-29 (1), 12-30 (2), 12-31 (3), [Fri 01-01 off, weekend], 01-04 (4) .. 01-08 (8),
    # Sat 01-09 worked (9), [Sun 01-10 off], Mon 01-11 (10).
    assert cal.add_workdays(date(2026, 12, 28), 10) == date(2027, 1, 11)
    assert cal.workdays_between(date(2026, 12, 28), date(2027, 1, 11)) == 10
    assert cal.is_workday(date(2027, 1, 1)) is False
    assert cal.is_workday(date(2027, 1, 2)) is False  # plain weekend in a declared year
    assert cal.is_workday(date(2027, 1, 4)) is True
    with pytest.raises(UnknownYearError, match="2028"):
        cal.is_workday(date(2028, 1, 3))


def test_override_alone_answers_for_that_day_of_an_unknown_year() -> None:
    cal = WorkCalendar(overrides={date(2027, 1, 1): False})
    assert cal.is_workday(date(2027, 1, 1)) is False
    with pytest.raises(UnknownYearError):
        cal.is_workday(date(2027, 1, 4))


def test_extra_years_does_not_override_package_data() -> None:
    cal = WorkCalendar(extra_years=frozenset({2026}))
    assert cal.is_workday(date(2026, 10, 1)) is False
    assert cal.is_workday(date(2026, 10, 10)) is True


# --- parse_iso_date ------------------------------------------------------------------


def test_parse_iso_date_accepts_iso() -> None:
    assert parse_iso_date("2026-10-08") == date(2026, 10, 8)
    assert parse_iso_date(" 2026-10-08\n") == date(2026, 10, 8)


@pytest.mark.parametrize(
    "text",
    ["", "2026/10/08", "20261008", "2026-W40-4", "2026-10-8", "08-10-2026", "２０２６-10-08", "x"],
)
def test_parse_iso_date_rejects_other_formats(text: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        parse_iso_date(text)


def test_parse_iso_date_rejects_impossible_dates() -> None:
    with pytest.raises(ValueError, match="2026-02-30"):
        parse_iso_date("2026-02-30")
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        parse_iso_date("2026-13-01")


# --- properties ----------------------------------------------------------------------

# Starts in 2020..2026 with the result kept inside the known years: 200 working days is
# under a year, so starting no later than 2026-01-31 never leaves 2026.
starts = st.dates(min_value=date(2020, 1, 1), max_value=date(2026, 1, 31))
counts = st.integers(min_value=0, max_value=200)


@settings(max_examples=200, deadline=None)
@given(start=starts, n=counts)
def test_between_inverts_add(start: date, n: int) -> None:
    assert CAL.workdays_between(start, CAL.add_workdays(start, n)) == n


@settings(max_examples=200, deadline=None)
@given(start=starts, n=st.integers(min_value=1, max_value=200))
def test_add_lands_on_a_workday(start: date, n: int) -> None:
    result = CAL.add_workdays(start, n)
    assert result > start
    assert CAL.is_workday(result)
    assert CAL.add_workdays(start, -n) < start
    assert CAL.is_workday(CAL.add_workdays(start, -n))


@settings(max_examples=200, deadline=None)
@given(start=starts, n=st.integers(min_value=0, max_value=199))
def test_add_is_strictly_monotonic_in_n(start: date, n: int) -> None:
    assert CAL.add_workdays(start, n) < CAL.add_workdays(start, n + 1)
    assert CAL.add_workdays(start, -n) > CAL.add_workdays(start, -(n + 1))


@settings(max_examples=200, deadline=None)
@given(start=starts, n=st.integers(min_value=1, max_value=200))
def test_backwards_inverts_forwards_from_a_workday(start: date, n: int) -> None:
    # Snap to a working day: from a day off, "n back" and "n forward" are not inverses.
    day = CAL.add_workdays(start, 1)
    back = CAL.add_workdays(day, -n)
    assert CAL.workdays_between(day, back) == -n
    assert CAL.add_workdays(back, n) == day


@settings(max_examples=200, deadline=None)
@given(
    a=st.dates(min_value=date(2021, 1, 1), max_value=date(2024, 6, 30)),  # a ± 600 days stays known
    gap_ab=st.integers(min_value=-300, max_value=300),
    gap_bc=st.integers(min_value=-300, max_value=300),
)
def test_between_is_antisymmetric_and_additive(a: date, gap_ab: int, gap_bc: int) -> None:
    b = a + timedelta(days=gap_ab)
    c = b + timedelta(days=gap_bc)
    assert CAL.workdays_between(a, b) == -CAL.workdays_between(b, a)
    assert CAL.workdays_between(a, b) + CAL.workdays_between(b, c) == CAL.workdays_between(a, c)


@settings(max_examples=100, deadline=None)
@given(start=starts, end=starts)
def test_between_matches_a_direct_count(start: date, end: date) -> None:
    lo, hi = sorted((start, end))
    direct = sum(CAL.is_workday(lo + timedelta(days=i)) for i in range(1, (hi - lo).days + 1))
    assert CAL.workdays_between(lo, hi) == direct
