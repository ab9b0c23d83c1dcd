"""Due dates in "My learning": working days left / overdue across National Day 2026, the
badge state of each assignment, overdue first, and one query for all assignments."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import event

from courses import learning_views
from courses.models import Course, CourseVersion, Enrollment, Lesson
from lms.compliance.engine import evaluate_rule
from lms.compliance.models import Assignment, AssignmentRule, RuleDepartment
from lms.extensions import db
from lms.workdays import default_calendar

# Assigned Monday 2026-09-28 10:00 Beijing time with 7 working days: due Tuesday
# 2026-10-13 (10-01..10-07 off, Saturday 10-10 a 调休 working day).
MONDAY = datetime(2026, 9, 28, 2, 0, tzinfo=UTC)
DUE = date(2026, 10, 13)


def _course(code: str, title: str = "入职身份核验", *, optional: bool = False) -> CourseVersion:
    course = Course(code=code, title_zh=title, risk_topic="identity_verification",
                    is_optional=optional)
    version = CourseVersion(course=course, number=1, status="draft")
    db.session.add_all([course, version])
    db.session.flush()
    db.session.add(Lesson(version=version, position=1, kind="document", title="阅读",
                          body="劳动合同应当以书面形式订立。"))
    db.session.flush()
    version.status = "published"
    version.content_hash = "ab" * 32
    db.session.commit()
    return version


def _assign(user, version: CourseVersion, due: date, *, status: str = "open",
            completed_at: datetime | None = None) -> None:
    db.session.add(Assignment(
        user_id=user.id, employee_id=user.employee_id, course_id=version.course_id,
        version_id=version.id, source="manual", cycle=1, trigger_date=date(2026, 9, 28),
        due_date=due, status=status, completed_at=completed_at,
        suspended_at=MONDAY if status == "suspended" else None))
    db.session.add(Enrollment(user_id=user.id, version_id=version.id, source="assigned",
                              completed_at=completed_at))
    db.session.commit()


@pytest.fixture
def learner(people):
    store = people.department("南京门店", code="RT-NJ")
    emp = people.employee("李店员", department=store, employee_no="E2")
    return people.user("ue2", "trainee", employee=emp)


@pytest.fixture
def on_day(monkeypatch):
    def set_today(day: date) -> None:
        monkeypatch.setattr(learning_views, "today", lambda: day)
    return set_today


def due_lines(html: str) -> dict[str, dict[str, str]]:
    """{course code: data-* of its due line and badge} in page order."""
    out: dict[str, dict[str, str]] = {}
    for item in re.findall(r'<li class="course-item"(.*?)</li>', html, re.S):
        code = re.search(r'data-course-code="([^"]+)"', item).group(1)
        out[code] = dict(re.findall(r'data-(due-date|state|working-days)="([^"]*)"', item))
    return out


def test_working_days_left_and_overdue_across_national_day(client, learner, on_day):
    version = _course("RISK-ID-01")
    rule = AssignmentRule(name="入职规则", course_id=version.course_id, due_working_days=7,
                          effective_from=date(2026, 9, 1))
    db.session.add(rule)
    db.session.flush()
    db.session.add(RuleDepartment(rule_id=rule.id, department_id=learner.employee.department_id))
    db.session.commit()
    evaluate_rule(db.session, rule, calendar=default_calendar(), now=MONDAY)
    db.session.commit()
    client.login("ue2")

    expected = [
        (date(2026, 9, 30), "due", "5"),       # 10-08, 10-09, 10-10 (调休), 10-12, 10-13
        (date(2026, 10, 4), "due", "5"),       # in the holiday: nothing counted yet
        (date(2026, 10, 9), "due", "3"),       # 10-10, 10-12, 10-13
        (date(2026, 10, 13), "due", "0"),      # due today
        (date(2026, 10, 14), "overdue", "1"),
        (date(2026, 10, 19), "overdue", "4"),  # 14, 15, 16, 19: the weekend not counted
    ]
    for today, state, days in expected:
        on_day(today)
        html = client.get("/learning").get_data(as_text=True)
        line = due_lines(html)["RISK-ID-01"]
        assert line == {"due-date": DUE.isoformat(), "state": state, "working-days": days}, today
    assert "2026-10-13" in html


def test_states_and_overdue_first(client, learner, on_day):
    on_day(date(2026, 10, 16))
    late_open = _course("C-OVERDUE-OLD", "考勤制度")
    soon = _course("C-DUE", "绩效管理制度")
    recent_overdue = _course("C-OVERDUE-NEW", "劳动合同")
    paused = _course("C-SUSPENDED", "社保缴纳")
    on_time = _course("C-ON-TIME", "保密制度")
    late = _course("C-LATE", "反舞弊")
    free = _course("C-FREE", "沟通技巧", optional=True)
    _assign(learner, late_open, date(2026, 9, 25))
    _assign(learner, soon, date(2026, 10, 20))
    _assign(learner, recent_overdue, date(2026, 10, 15))
    _assign(learner, paused, date(2026, 10, 9), status="suspended")
    # Due 10-13: done 23:30 Beijing time that day is on time, 00:30 the next day is late.
    _assign(learner, on_time, DUE, status="completed",
            completed_at=datetime(2026, 10, 13, 15, 30, tzinfo=UTC))
    _assign(learner, late, DUE, status="completed",
            completed_at=datetime(2026, 10, 13, 16, 30, tzinfo=UTC))
    db.session.add(Enrollment(user_id=learner.id, version_id=free.id, source="self"))
    db.session.commit()
    client.login("ue2")
    lines = due_lines(client.get("/learning").get_data(as_text=True))
    assert list(lines)[:3] == ["C-OVERDUE-OLD", "C-OVERDUE-NEW", "C-DUE"]
    assert lines["C-OVERDUE-OLD"] == {"due-date": "2026-09-25", "state": "overdue",
                                      "working-days": "11"}  # 9-28..9-30, 10-08..10-16 with 10-10 (调休)
    assert lines["C-OVERDUE-NEW"]["working-days"] == "1"
    assert lines["C-DUE"]["working-days"] == "2"
    assert lines["C-SUSPENDED"] == {"due-date": "2026-10-09", "state": "suspended"}
    assert lines["C-ON-TIME"]["state"] == "completed-on-time"
    assert lines["C-LATE"]["state"] == "completed-late"
    assert lines["C-FREE"] == {}  # not assigned: no due date


def test_someone_elses_assignments_are_not_shown(client, learner, people, on_day):
    on_day(date(2026, 10, 16))
    other = people.user("other", "trainee", employee=people.employee("王店长"))
    version = _course("C-OTHER")
    _assign(other, version, date(2026, 9, 25))
    client.login("ue2")
    html = client.get("/learning").get_data(as_text=True)
    assert "C-OTHER" not in html and "data-state" not in html


def _count_queries(client) -> int:
    statements: list[str] = []

    def listener(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        assert client.get("/learning").status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    return len(statements)


def test_no_query_per_course(client, make_client, learner, people, on_day):
    on_day(date(2026, 10, 16))
    other = people.user("ten", "trainee", employee=people.employee("十门课", employee_no="E10"))
    _assign(learner, _course("ONE"), date(2026, 10, 15))
    for i in range(10):
        _assign(other, _course(f"TEN-{i}"), date(2026, 10, 10 + i))
    client.login("ue2")
    ten = make_client()
    ten.login("ten")
    assert len(due_lines(ten.get("/learning").get_data(as_text=True))) == 10
    one_count, ten_count = _count_queries(client), _count_queries(ten)
    assert one_count == ten_count, (one_count, ten_count)
