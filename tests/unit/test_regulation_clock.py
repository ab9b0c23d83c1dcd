"""The regulation clock (pure): deadlines N working days after the local detection date,
working days left, urgency colours, the on-time rule and rate, which alert is due.

Calendar facts used below, as chinesecalendar 1.11 has them for 2026 (checked by calling
it, see ``test_the_2026_calendar_is_what_these_tests_assume``): National Day holidays
Thu 1 – Wed 7 October; Sun 20 September and Sat 10 October are adjusted working days
(调休); Fri 25 September (Mid-autumn) is a holiday.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import chinese_calendar
import pytest

from lms.compliance.regulation.clock import (
    ALERT_2_DAYS_LEFT,
    ALERT_OVERDUE,
    ClockReading,
    alerts_due,
    is_on_time,
    on_time_rate,
    read_clock,
    remaining_working_days,
    urgency,
)
from lms.compliance.regulation.intake import deadline_for
from lms.workdays import UnknownYearError, WorkCalendar

CAL = WorkCalendar()


def test_the_2026_calendar_is_what_these_tests_assume():
    national_day = [date(2026, 10, d) for d in range(1, 8)]
    assert not any(chinese_calendar.is_workday(d) for d in national_day)
    assert chinese_calendar.is_workday(date(2026, 10, 8))  # Thursday: back to work
    assert chinese_calendar.is_workday(date(2026, 10, 10))  # Saturday 调休
    assert chinese_calendar.is_workday(date(2026, 9, 20))  # Sunday 调休
    assert not chinese_calendar.is_workday(date(2026, 9, 25))  # Mid-autumn Friday


@pytest.mark.parametrize(("detected_utc", "deadline"), [
    # Tue 29 Sep 10:00 in Beijing: Sep 30, Oct 8, 9, 10 (Sat 调休), 12, 13, 14
    (datetime(2026, 9, 29, 2, 0, tzinfo=UTC), date(2026, 10, 14)),
    # 16:30 UTC on the 29th is already Wed 30 Sep 00:30 in Beijing: one day later
    (datetime(2026, 9, 29, 16, 30, tzinfo=UTC), date(2026, 10, 15)),
    # detected during the holiday (Sat 3 Oct): the seven working days start on the 8th
    (datetime(2026, 10, 3, 4, 0, tzinfo=UTC), date(2026, 10, 15)),
    # detected on the 调休 Saturday itself: Oct 12 .. 16, 19, 20
    (datetime(2026, 10, 10, 4, 0, tzinfo=UTC), date(2026, 10, 20)),
    # an ordinary week: Mon 16 Nov -> Wed 25 Nov
    (datetime(2026, 11, 16, 1, 0, tzinfo=UTC), date(2026, 11, 25)),
])
def test_deadline_counts_chinese_working_days_from_the_local_detection_date(detected_utc,
                                                                            deadline):
    assert deadline_for(detected_utc, 7, CAL) == deadline


def test_the_deadline_setting_is_used():
    assert deadline_for(datetime(2026, 11, 16, 1, 0, tzinfo=UTC), 3, CAL) == date(2026, 11, 19)


def test_remaining_is_n_on_the_detection_day_and_zero_on_the_deadline_day():
    detected = date(2026, 9, 29)
    deadline = deadline_for(datetime(2026, 9, 29, 2, 0, tzinfo=UTC), 7, CAL)
    assert remaining_working_days(detected, deadline, CAL) == 7
    assert remaining_working_days(deadline, deadline, CAL) == 0


@pytest.mark.parametrize(("today", "deadline", "remaining", "colour"), [
    # during National Day: the holiday does not count
    (date(2026, 10, 3), date(2026, 10, 14), 6, "ok"),
    (date(2026, 9, 30), date(2026, 10, 14), 6, "ok"),
    # Friday before the 调休 Saturday: Sat 10, Mon 12, Tue 13, Wed 14 all count
    (date(2026, 10, 9), date(2026, 10, 14), 4, "ok"),
    (date(2026, 10, 9), date(2026, 10, 13), 3, "ok"),
    # on the 调休 Saturday: Mon 12 and Tue 13 left -> amber
    (date(2026, 10, 10), date(2026, 10, 13), 2, "soon"),
    (date(2026, 10, 11), date(2026, 10, 13), 2, "soon"),  # Sunday: still two
    (date(2026, 10, 12), date(2026, 10, 13), 1, "soon"),
    (date(2026, 10, 13), date(2026, 10, 13), 0, "soon"),  # due today
    # overdue: minus the working days since the deadline, at least one
    (date(2026, 10, 14), date(2026, 10, 13), -1, "overdue"),
    (date(2026, 10, 17), date(2026, 10, 16), -1, "overdue"),  # Saturday after a Friday
    (date(2026, 10, 19), date(2026, 10, 16), -1, "overdue"),
    (date(2026, 10, 20), date(2026, 10, 16), -2, "overdue"),
    # a deadline just before the holiday, looked at during it and after it
    (date(2026, 10, 5), date(2026, 9, 30), -1, "overdue"),
    (date(2026, 10, 10), date(2026, 9, 30), -3, "overdue"),  # Oct 8, 9 and the Saturday
])
def test_remaining_working_days_and_urgency_across_national_day(today, deadline, remaining,
                                                                colour):
    reading = read_clock(today, deadline, CAL)
    assert reading == ClockReading(deadline, remaining, colour)
    assert remaining_working_days(today, deadline, CAL) == remaining


def test_urgency_thresholds():
    assert urgency(3, overdue=False) == "ok"
    assert urgency(2, overdue=False) == "soon"
    assert urgency(0, overdue=False) == "soon"
    assert urgency(-1, overdue=True) == "overdue"
    assert urgency(None, overdue=False) == "unknown"
    assert urgency(None, overdue=True) == "overdue"


def test_a_year_without_a_calendar_shows_no_count_but_is_never_guessed():
    reading = read_clock(date(2026, 12, 30), date(2027, 1, 8), CAL)
    assert reading.remaining is None and reading.urgency == "unknown"
    late = read_clock(date(2027, 1, 11), date(2027, 1, 8), CAL)
    assert late.remaining is None and late.urgency == "overdue"
    with pytest.raises(UnknownYearError):
        remaining_working_days(date(2026, 12, 30), date(2027, 1, 8), CAL)
    with pytest.raises(UnknownYearError):
        deadline_for(datetime(2026, 12, 28, 2, 0, tzinfo=UTC), 7, CAL)


def test_an_admin_declared_year_is_used():
    cal = WorkCalendar(extra_years=frozenset({2027}))
    assert deadline_for(datetime(2026, 12, 28, 2, 0, tzinfo=UTC), 7, cal) == date(2027, 1, 6)


def test_on_time_means_pushed_by_the_end_of_the_deadline_day():
    assert is_on_time(date(2026, 10, 10), date(2026, 10, 10))  # on the 调休 Saturday
    assert is_on_time(date(2026, 10, 3), date(2026, 10, 14))
    assert not is_on_time(date(2026, 10, 15), date(2026, 10, 14))


def test_on_time_rate():
    assert on_time_rate(0, 0) is None
    assert on_time_rate(3, 4) == 0.75
    assert on_time_rate(0, 2) == 0.0
    with pytest.raises(ValueError):
        on_time_rate(3, 2)


def test_alerts_two_days_left_once_then_overdue_once():
    deadline = date(2026, 10, 13)
    sent: set[str] = set()
    assert alerts_due(read_clock(date(2026, 10, 9), deadline, CAL), sent) == []  # 3 left
    assert alerts_due(read_clock(date(2026, 10, 10), deadline, CAL), sent) == [ALERT_2_DAYS_LEFT]
    sent.add(ALERT_2_DAYS_LEFT)
    assert alerts_due(read_clock(date(2026, 10, 12), deadline, CAL), sent) == []
    assert alerts_due(read_clock(date(2026, 10, 13), deadline, CAL), sent) == []  # due today
    assert alerts_due(read_clock(date(2026, 10, 14), deadline, CAL), sent) == [ALERT_OVERDUE]
    sent.add(ALERT_OVERDUE)
    assert alerts_due(read_clock(date(2026, 10, 20), deadline, CAL), sent) == []


def test_a_late_first_look_gets_the_alert_that_is_true_then():
    # first seen with one day left: the "2 days left" alert (it says how many remain)
    assert alerts_due(read_clock(date(2026, 10, 12), date(2026, 10, 13), CAL), set()) \
        == [ALERT_2_DAYS_LEFT]
    # first seen past the deadline: only "overdue"
    assert alerts_due(read_clock(date(2026, 10, 14), date(2026, 10, 13), CAL), set()) \
        == [ALERT_OVERDUE]
