"""The assignment engine against a real database: audience by department subtree,
working-day due dates across National Day 2026, idempotent fan-out, re-training on a
new version, 自离 suspending and resumption, completion from the enrolment."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, select

from courses.models import Course, CourseVersion, Enrollment, Lesson
from lms.compliance.engine import evaluate_rule, run_assignment_tick, sync_statuses
from lms.compliance.models import Assignment, AssignmentRule, RuleDepartment
from lms.extensions import db
from lms.ledger import LedgerEntry, verify
from lms.workdays import default_calendar

CAL = default_calendar()
# 2026-09-28 (Mon) 10:00 Beijing time: 7 working days later is 2026-10-13 (National Day
# 10-01..10-07 off; Sunday 09-27 and Saturday 10-10 are 调休 working days).
MONDAY = datetime(2026, 9, 28, 2, 0, tzinfo=UTC)


def _course(code: str = "RISK-ID-01") -> Course:
    course = Course(code=code, title_zh="入职身份核验", risk_topic="identity_verification")
    db.session.add(course)
    _version(course, 1)
    return course


def _version(course: Course, number: int, *, retrain: bool = False) -> CourseVersion:
    version = CourseVersion(course=course, number=number, status="draft",
                            requires_retraining=retrain)
    db.session.add(version)
    db.session.flush()
    db.session.add(Lesson(version=version, position=1, kind="document", title="阅读",
                          body="劳动合同应当以书面形式订立。"))
    db.session.flush()
    version.status = "published"
    version.content_hash = f"{number:02d}" * 32
    db.session.commit()
    return version


@pytest.fixture
def org(people):
    hq = people.department("总部", code="HQ")
    retail = people.department("零售事业部", parent=hq, code="RT")
    store = people.department("南京门店", parent=retail, code="RT-NJ")
    factory = people.department("工厂", parent=hq, code="MF")
    staff = {}
    for name, dept, no in (("王店长", retail, "E1"), ("李店员", store, "E2"),
                           ("赵工人", factory, "E3")):
        emp = people.employee(name, department=dept, employee_no=no)
        staff[no] = people.user(f"u{no.lower()}", "trainee", employee=emp)
    return {"hq": hq, "retail": retail, "store": store, "factory": factory, "staff": staff}


def _rule(course: Course, department, *, days: int = 7, **kw) -> AssignmentRule:
    rule = AssignmentRule(name=f"规则-{course.code}-{department.code}", course_id=course.id,
                          due_working_days=days, effective_from=date(2026, 9, 1), **kw)
    db.session.add(rule)
    db.session.flush()
    db.session.add(RuleDepartment(rule_id=rule.id, department_id=department.id))
    db.session.commit()
    return rule


def _assignments() -> list[Assignment]:
    return list(db.session.scalars(select(Assignment).order_by(Assignment.user_id,
                                                                  Assignment.cycle)))


def test_sub_departments_national_day_due_date_and_idempotence(org):
    course = _course()
    rule = _rule(course, org["retail"])
    run = evaluate_rule(db.session, rule, calendar=CAL, now=MONDAY)
    db.session.commit()
    rows = _assignments()
    assert {a.user_id for a in rows} == {org["staff"]["E1"].id, org["staff"]["E2"].id}
    assert {a.due_date for a in rows} == {date(2026, 10, 13)}
    assert run.assigned == 2 and run.enrolled == 2
    assert {e.source for e in db.session.scalars(select(Enrollment))} == {"assigned"}
    entry = db.session.scalar(select(LedgerEntry).where(
        LedgerEntry.kind == "assignment.rule_applied"))
    assert json.loads(entry.payload)["employee_nos"] == ["E1", "E2"]

    again = evaluate_rule(db.session, rule, calendar=CAL, now=MONDAY)
    db.session.commit()
    assert (again.assigned, again.enrolled) == (0, 0)
    assert db.session.scalar(select(func.count()).select_from(Assignment)) == 2
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry).where(
        LedgerEntry.kind == "assignment.rule_applied")) == 1
    assert verify(db.session).ok


def test_without_sub_departments_only_the_department_itself(org):
    rule = _rule(_course(), org["retail"], include_subdepartments=False)
    evaluate_rule(db.session, rule, calendar=CAL, now=MONDAY)
    assert {a.user_id for a in _assignments()} == {org["staff"]["E1"].id}


def test_absconded_suspends_and_return_resumes_with_the_due_date_moved(org):
    rule = _rule(_course(), org["store"])
    evaluate_rule(db.session, rule, calendar=CAL, now=MONDAY)
    db.session.commit()
    employee = org["staff"]["E2"].employee
    employee.status = "absconded"
    db.session.commit()
    assert sync_statuses(db.session, calendar=CAL, now=MONDAY).suspended == 1
    [a] = _assignments()
    assert a.status == "suspended"
    employee.status = "active"
    db.session.commit()
    later = datetime(2026, 10, 9, 2, 0, tzinfo=UTC)  # Friday after National Day
    assert sync_statuses(db.session, calendar=CAL, now=later).resumed == 1
    db.session.commit()
    [a] = _assignments()
    paused = CAL.workdays_between(date(2026, 9, 28), date(2026, 10, 9))
    assert a.status == "open" and a.due_date == CAL.add_workdays(date(2026, 10, 13), paused)


def test_completion_then_retraining_on_a_new_version_keeps_history(org):
    course = _course()
    rule = _rule(course, org["store"])
    run_assignment_tick(db.session, calendar=CAL, now=MONDAY)
    db.session.commit()
    enrolment = db.session.scalar(select(Enrollment))
    enrolment.completed_at = MONDAY
    db.session.commit()
    assert run_assignment_tick(db.session, calendar=CAL, now=MONDAY).completed == 1
    db.session.commit()
    _version(course, 2, retrain=True)
    summary = run_assignment_tick(db.session, calendar=CAL, now=MONDAY)
    db.session.commit()
    rows = _assignments()
    assert [(a.cycle, a.status, a.source, a.version.number) for a in rows] == [
        (1, "completed", "rule", 1), (2, "open", "retraining", 2)]
    assert sum(r.retrained for r in summary.runs) == 1
    assert run_assignment_tick(db.session, calendar=CAL, now=MONDAY).runs[0].retrained == 0
    assert rule.id == rows[1].rule_id


def test_a_position_change_assigns_what_the_new_position_needs(org, people):
    from lms.compliance.models import RulePosition

    cashier = people.position("收银员", code="CASHIER")
    course = _course("RISK-CASH-01")
    rule = AssignmentRule(name="收银岗必修", course_id=course.id, due_working_days=7,
                          effective_from=date(2026, 9, 1))
    db.session.add(rule)
    db.session.flush()
    db.session.add(RulePosition(rule_id=rule.id, position_id=cashier.id))
    db.session.commit()
    assert evaluate_rule(db.session, rule, calendar=CAL, now=MONDAY).assigned == 0
    org["staff"]["E3"].employee.position_id = cashier.id  # moved from the factory floor
    db.session.commit()
    later = datetime(2026, 10, 9, 2, 0, tzinfo=UTC)
    run = evaluate_rule(db.session, rule, calendar=CAL, now=later)
    db.session.commit()
    [a] = _assignments()
    assert run.assigned == 1 and a.user_id == org["staff"]["E3"].id
    assert (a.trigger_date, a.due_date) == (date(2026, 10, 9), CAL.add_workdays(
        date(2026, 10, 9), 7))


def test_new_hire_rules_count_from_the_hire_date(org, people):
    course = _course("RISK-NEW-01")
    rule = _rule(course, org["hq"], applies_to="new_hires")
    newcomer = people.employee("钱新人", department=org["store"], employee_no="E9")
    newcomer.hire_date = date(2026, 9, 30)
    db.session.commit()
    people.user("ue9", "trainee", employee=newcomer)
    run = evaluate_rule(db.session, rule, calendar=CAL, now=MONDAY)
    db.session.commit()
    rows = [a for a in _assignments() if a.employee_id == newcomer.id]
    # hired 09-30: 7 working days later, skipping National Day and counting 调休 10-10
    assert [(a.trigger_date, a.due_date) for a in rows] == [(date(2026, 9, 30),
                                                             date(2026, 10, 15))]
    assert run.assigned == 1  # staff hired in 2024, before the rule took effect, are not new hires
