"""Recertification: a rule that recurs every N months assigns a new round N months after
each completion. The new round starts with empty learning records (the policy must be
read and signed again) and every earlier round, with its signature, stays on record."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from support import Clock
from test_signatures import make_course, make_policy, open_page, sign

from assessments import signing
from assessments.policies import Signature
from courses.models import Enrollment, LessonProgress
from lms.compliance.engine import months_before, run_assignment_tick
from lms.compliance.models import Assignment, AssignmentRule, RuleDepartment
from lms.extensions import db
from lms.ledger import LedgerEntry, verify
from lms.workdays import default_calendar

CAL = default_calendar()
# Monday 2025-11-10, 10:00 Beijing time
START = datetime(2025, 11, 10, 2, 0, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    c.now = START
    monkeypatch.setattr(signing, "clock", c)
    return c


@pytest.fixture
def setup(people, clock):
    dept = people.department("财务部", code="FIN")
    emp = people.employee("李雷", department=dept, employee_no="E10001")
    learner = people.user("lilei", "trainee", employee=emp)
    version = make_course(make_policy())
    rule = AssignmentRule(name="年度绩效制度确认", course_id=version.course_id,
                          due_working_days=5, effective_from=date(2025, 11, 1),
                          recur_months=12)
    db.session.add(rule)
    db.session.flush()
    db.session.add(RuleDepartment(rule_id=rule.id, department_id=dept.id))
    db.session.commit()
    return {"learner": learner, "version": version, "lesson": version.lessons[0]}


def _tick(now: datetime):
    summary = run_assignment_tick(db.session, calendar=CAL, now=now)
    db.session.commit()
    return summary


def _assignments() -> list[Assignment]:
    return list(db.session.scalars(select(Assignment).order_by(Assignment.cycle)))


def _sign_now(client, lesson, clock: Clock) -> None:
    _html, csrf, reading = open_page(client, lesson.id)
    clock.advance(61)
    assert sign(client, lesson.id, csrf=csrf, reading=reading).status_code == 302


def test_recurring_rule_starts_a_fresh_round_and_keeps_the_first(client, setup, clock):
    lesson = setup["lesson"]
    _tick(START)
    [first] = _assignments()
    assert (first.cycle, first.source, first.status) == (1, "rule", "open")
    client.login("lilei")
    _sign_now(client, lesson, clock)
    _tick(clock.now)
    [first] = _assignments()
    assert first.status == "completed"
    completed_at = first.completed_at

    # Half a year later nothing is due; a day before the anniversary neither.
    assert _tick(START + timedelta(days=182)).runs[0].recurring == 0
    assert _tick(completed_at + timedelta(days=364)).runs[0].recurring == 0
    assert len(_assignments()) == 1

    # On the anniversary (local date) the second round is assigned, due in 5 working days.
    anniversary = completed_at.replace(year=completed_at.year + 1)  # 2026-11-10
    run = _tick(anniversary).runs[0]
    assert run.recurring == 1 and run.enrolled == 1
    first, second = _assignments()
    assert (second.cycle, second.source, second.status) == (2, "recurrence", "open")
    assert second.trigger_date == date(2026, 11, 10)
    assert second.due_date == CAL.add_workdays(date(2026, 11, 10), 5)
    rounds = list(db.session.scalars(select(Enrollment).order_by(Enrollment.cycle)))
    assert [e.cycle for e in rounds] == [1, 2]
    assert rounds[0].completed_at is not None and rounds[0].superseded_at is not None
    assert rounds[1].completed_at is None and rounds[1].superseded_at is None
    assert (first.enrollment_id, second.enrollment_id) == (rounds[0].id, rounds[1].id)
    entry = db.session.scalar(select(LedgerEntry).where(
        LedgerEntry.kind == "assignment.rule_applied").order_by(LedgerEntry.seq.desc()))
    assert json.loads(entry.payload)["recurring"] == 1

    # The learner sees the course open again at 0 % and must read and sign again.
    my = client.get("/learning").get_data(as_text=True)
    assert "绩效管理" in my and "0%" in my and 'data-cycle="2"' in my
    clock.now = anniversary + timedelta(hours=1)
    _html, _csrf, reading = open_page(client, lesson.id)
    assert reading, "the signing form is offered again in the new round"
    _sign_now(client, lesson, clock)
    signatures = list(db.session.scalars(select(Signature).order_by(Signature.id)))
    assert [s.enrollment_id for s in signatures] == [rounds[0].id, rounds[1].id]
    assert signatures[0].signed_at < signatures[1].signed_at
    progress = db.session.scalars(select(LessonProgress).order_by(LessonProgress.id)).all()
    assert [p.enrollment_id for p in progress] == [rounds[0].id, rounds[1].id]
    assert all(p.completed_at is not None for p in progress)

    _tick(clock.now)
    assert [a.status for a in _assignments()] == ["completed", "completed"]
    assert _tick(clock.now).runs[0].recurring == 0  # idempotent
    assert db.session.scalar(select(func.count()).select_from(Assignment)) == 2
    course_done = db.session.scalars(select(LedgerEntry).where(
        LedgerEntry.kind == "course.completed").order_by(LedgerEntry.seq)).all()
    assert [json.loads(e.payload)["cycle"] for e in course_done] == [1, 2]
    assert verify(db.session).ok


def test_a_new_round_does_not_reuse_the_earlier_rounds_signature(client, setup, clock):
    """Signing twice in one round is refused; the next round signs afresh."""
    lesson = setup["lesson"]
    _tick(START)
    client.login("lilei")
    _sign_now(client, lesson, clock)
    _html, _csrf, reading = open_page(client, lesson.id)
    assert not reading  # signed in this round: the page shows the signature, no form
    assert db.session.scalar(select(func.count()).select_from(Signature)) == 1


def test_database_allows_one_current_round_per_person_and_version(setup):
    learner, version = setup["learner"], setup["version"]
    db.session.add(Enrollment(user_id=learner.id, version_id=version.id, source="manual"))
    db.session.commit()
    db.session.add(Enrollment(user_id=learner.id, version_id=version.id, source="manual",
                              cycle=2))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


@pytest.mark.parametrize(("day", "months", "expected"), [
    (date(2026, 3, 31), 1, date(2026, 2, 28)),
    (date(2024, 3, 31), 1, date(2024, 2, 29)),
    (date(2026, 11, 10), 12, date(2025, 11, 10)),
    (date(2026, 1, 15), 13, date(2024, 12, 15)),
])
def test_months_before_clamps_to_the_end_of_the_month(day, months, expected):
    assert months_before(day, months) == expected
