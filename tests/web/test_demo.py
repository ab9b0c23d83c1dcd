"""The demo company (`flask --app wsgi lms demo`): believable, loaded once, usable logins."""

from __future__ import annotations

import functools
import re
from datetime import date

import pytest
from sqlalchemy import func, select

from lms.auth.passwords import hash_password, password_problem
from lms.auth.permissions import report_ids_query
from lms.extensions import db
from lms.ledger import LedgerEntry, verify
from lms.people import idnumber
from lms.people.models import EMPLOYEE_STATUSES, Department, Employee, Position, User


@pytest.fixture(autouse=True)
def _hash_each_demo_password_once(monkeypatch):
    """Real Argon2 hashes, but computed once per password for the whole test run."""
    monkeypatch.setattr("lms.demo.hash_password", _cached_hash)


@functools.cache
def _cached_hash(password: str) -> str:
    return hash_password(password)


def _load(app) -> bool:
    from lms.demo import load_demo

    created = load_demo(db.session, app.extensions["id_vault"])
    db.session.commit()
    return created


def _counts() -> dict[str, int]:
    return {model.__name__: db.session.scalar(select(func.count()).select_from(model))
            for model in (Department, Position, Employee, User, LedgerEntry)}


def _age_on(born: date, day: date) -> int:
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def test_demo_company_is_a_believable_hierarchy(app):
    assert _load(app) is True
    employees = db.session.scalars(select(Employee)).all()
    assert 180 <= len(employees) <= 230
    assert {e.status for e in employees} == set(EMPLOYEE_STATUSES)
    assert sum(e.status == "active" for e in employees) > 0.8 * len(employees)

    # Exactly one top (the CEO); everyone else's chain of managers ends there.
    by_id = {e.id: e for e in employees}
    tops = [e for e in employees if e.manager_id is None]
    assert [t.position.name for t in tops] == ["首席执行官"]
    for emp in employees:
        seen, cur = set(), emp
        while cur.manager_id is not None:
            assert cur.id not in seen, f"reporting cycle at {cur.employee_no}"
            seen.add(cur.id)
            cur = by_id[cur.manager_id]
        assert cur is tops[0]

    # Store staff report to their store manager, who reports up to the CEO via the region
    # manager and the division's general manager.
    clerk = next(e for e in employees if e.position.name == "店员"
                 and e.department.name == "杭州西湖店")
    chain = []
    cur = clerk
    while cur.manager is not None:
        cur = cur.manager
        chain.append(cur.position.name)
    assert chain == ["店长", "区域经理", "事业部总经理", "首席执行官"]

    names = set(db.session.scalars(select(Department.name)))
    assert {"总部", "人力资源部", "财务部", "法务合规部", "信息技术部", "零售事业部", "华东区",
            "华南区", "上海南京西路店", "杭州西湖店", "深圳福田店", "广州天河店", "制造事业部",
            "苏州工厂", "冲压车间", "装配车间"} <= names
    assert {"店长", "店员", "保洁", "区域HR", "车间主管", "普工", "质检员", "开发主管",
            "开发工程师", "培训专员"} <= set(db.session.scalars(select(Position.name)))
    assert all(re.fullmatch(r"E\d{4}", e.employee_no) for e in employees)
    assert all(date(2010, 1, 1) <= e.hire_date <= date(2026, 12, 31) for e in employees)


def test_demo_id_numbers_are_valid_unique_encrypted_and_adult_at_hire(app):
    _load(app)
    vault = app.extensions["id_vault"]
    numbers = []
    for emp in db.session.scalars(select(Employee)):
        number = vault.decrypt(emp.id_number_cipher)
        assert idnumber.validate(number) is None, (emp.employee_no, number)
        assert len(number) == 18
        assert emp.id_number_masked == idnumber.mask(number)
        assert emp.id_number_index == vault.blind_index(number)
        assert number.encode() not in emp.id_number_cipher
        assert _age_on(idnumber.birth_date(number), emp.hire_date) >= 18, emp.employee_no
        numbers.append(number)
    assert len(set(numbers)) == len(numbers)


def test_demo_ledger_records_its_courses_and_one_load_entry_with_counts(app):
    _load(app)
    entries = db.session.scalars(select(LedgerEntry).order_by(LedgerEntry.seq)).all()
    kinds = [e.kind for e in entries]
    assert kinds.count("course.created") == 3
    assert kinds.count("course.version_published") == 3
    assert kinds.count("policy.version_published") == 1
    assert kinds[-1] == "demo.loaded" and kinds.count("demo.loaded") == 1
    assert f'"employees":{_counts()["Employee"]}' in entries[-1].payload
    assert verify(db.session).ok


def test_second_run_changes_nothing_and_keeps_what_users_changed(app):
    assert _load(app) is True
    renamed = db.session.scalar(select(Employee).where(Employee.employee_no == "E0042"))
    renamed.name = "改过的名字"
    db.session.commit()
    before = _counts()

    assert _load(app) is False

    assert _counts() == before
    db.session.expire_all()
    assert db.session.get(Employee, renamed.id).name == "改过的名字"


def test_same_company_on_every_machine(app):
    from lms.demo import load_demo

    def snapshot():
        return db.session.execute(
            select(Employee.employee_no, Employee.name, Employee.hire_date, Employee.status,
                   Employee.id_number_masked).order_by(Employee.employee_no)
        ).all()

    load_demo(db.session, app.extensions["id_vault"])
    first = snapshot()
    db.session.rollback()  # load_demo never commits: nothing is left behind
    assert _counts()["Employee"] == 0
    load_demo(db.session, app.extensions["id_vault"])
    assert snapshot() == first


def test_demo_users_are_linked_to_believable_employees(app):
    from lms.demo import DEMO_PASSWORDS

    _load(app)
    users = {u.username: u for u in db.session.scalars(select(User))}
    assert set(users) == {"trainee", "trainer", "hr", "manager", "admin", "auditor"}
    for username, (password, roles) in DEMO_PASSWORDS.items():
        assert users[username].has_role(username)
        assert users[username].roles == frozenset(roles)
        assert len(password) >= 10 and password_problem(password, username=username) is None

    assert users["trainee"].employee.position.name in {"普工", "店员"}
    assert users["trainer"].employee.position.name == "培训专员"
    assert users["trainer"].employee.department.name == "人力资源部"
    assert users["hr"].employee.position.name in {"区域HR", "人事专员"}
    manager = users["manager"].employee
    assert manager.position.name in {"店长", "车间主管"}
    for user in users.values():
        assert user.employee is None or user.employee.status == "active"
        assert user.employee is None or user.display_name == user.employee.name

    team = set(db.session.scalars(report_ids_query(manager.id)))
    direct = set(db.session.scalars(select(Employee.id).where(Employee.manager_id == manager.id)))
    assert direct and team - direct  # direct and indirect reports
    assert users["trainee"].employee_id in team


def test_cli_prints_logins_that_reach_the_home_page(app, client):
    result = app.test_cli_runner().invoke(args=["lms", "demo"])
    assert result.exit_code == 0, result.output
    printed = dict(re.findall(r"^\s+(\w+)\s+(\S+)\s+\S", result.output, re.MULTILINE))
    assert set(printed) == {"trainee", "trainer", "hr", "manager", "admin", "auditor"}

    for username, password in printed.items():
        resp = client.login(username, password)
        assert resp.status_code == 302, username
        home = client.get("/")
        assert home.status_code == 200, username
        user = db.session.scalar(select(User).where(User.username == username))
        assert user.display_name in home.get_data(as_text=True)
        client.logout()

    again = app.test_cli_runner().invoke(args=["lms", "demo"])
    assert again.exit_code == 0
    assert "already present" in again.output
    assert all(p in again.output for p in printed.values())


def test_cli_refuses_to_mix_demo_people_into_real_data(app, people):
    people.employee("真实员工")
    result = app.test_cli_runner().invoke(args=["lms", "demo"])
    assert result.exit_code != 0
    assert "already holds employees" in result.output
    assert _counts()["Employee"] == 1
    assert _counts()["User"] == 0


def test_demo_courses_are_published_with_the_demo_video_and_learners_enrolled(app, client):
    import hashlib
    import json
    from pathlib import Path

    from assessments.exams import Exam
    from assessments.policies import PolicyVersion
    from courses.authoring import lessons_of, recompute_content_hash
    from courses.models import Course, Enrollment
    from lms.demo import DEMO_PASSWORDS, DEMO_VIDEO

    assert _load(app) is True
    courses = {c.code: c for c in db.session.scalars(select(Course))}
    assert set(courses) == {"RISK-ID-01", "RISK-SI-01", "RISK-PERF-01"}
    assert courses["RISK-ID-01"].title_zh == "入职身份核验：防止冒用他人身份入职"
    assert courses["RISK-ID-01"].risk_topic == "identity_verification"
    assert courses["RISK-SI-01"].risk_topic == "social_insurance"
    assert [c.is_optional for c in courses.values()].count(True) == 1

    video_sha = hashlib.sha256(DEMO_VIDEO.read_bytes()).hexdigest()
    users = {u.username: u for u in db.session.scalars(select(User))}
    [entry] = db.session.scalars(select(LedgerEntry).where(LedgerEntry.kind == "demo.loaded"))
    recorded = {c["code"]: c["content_hash"] for c in json.loads(entry.payload)["courses"]}
    for course in courses.values():
        [version] = course.versions
        assert version.status == "published" and version.published_at is not None
        lessons = lessons_of(db.session, version)
        perf = course.code == "RISK-PERF-01"
        second = "policy" if perf else "document"
        assert [lesson.kind for lesson in lessons] == (
            ["video", "exam", "policy"] if perf else ["video", "document"])
        if perf:  # the exam between them is frozen: 5 of the bank's 9 questions, 80 to pass
            exam = db.session.scalar(select(Exam).where(Exam.lesson_id == lessons[1].id))
            assert exam.frozen_at is not None and len(json.loads(exam.pool)) == 9
            assert (exam.pass_score, json.loads(exam.per_topic)) == (80, {"performance": 5})
        lessons = [lesson for lesson in lessons if lesson.kind != "exam"]
        assert lessons[0].media.sha256 == video_sha
        assert lessons[0].media.duration_seconds == pytest.approx(8.0, abs=0.05)
        if second == "document":
            assert len(lessons[1].body) > 200
        else:  # the policy to sign: 《绩效管理制度》 version 1, published, with its hash
            policy = db.session.get(PolicyVersion, lessons[1].policy_version_id)
            assert policy.status == "published" and policy.document.name == "绩效管理制度"
            assert policy.sha256 == hashlib.sha256(policy.body.encode()).hexdigest()
        assert version.content_hash == recompute_content_hash(db.session, version)
        assert recorded[course.code] == version.content_hash
        enrolled = db.session.scalars(select(Enrollment).where(
            Enrollment.version_id == version.id)).all()
        manual = {e.user.username for e in enrolled if e.source == "manual"}
        assert manual == {"trainee", "manager"}
        assert {e.enrolled_by_id for e in enrolled if e.source == "manual"} == {users["hr"].id}
        if perf:  # the standing rule assigned it to every demo login with an employee record
            from lms.compliance.models import Assignment
            from lms.workdays import default_calendar

            assigned = db.session.scalars(select(Assignment)).all()
            assert {a.user.username for a in assigned} == {
                u for u, user in users.items() if user.employee is not None}
            assert {e.user.username for e in enrolled} == {a.user.username for a in assigned}
            today = assigned[0].trigger_date
            assert {a.due_date for a in assigned} == {
                default_calendar().add_workdays(today, 10)}
        else:
            assert {e.user.username for e in enrolled} == {"trainee", "manager"}
    assert "14 年" in lessons_of(db.session, courses["RISK-ID-01"].versions[0])[1].body
    stored = [p for p in Path(app.config["MEDIA_ROOT"]).rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in stored] == [DEMO_VIDEO.read_bytes()]
    assert verify(db.session).ok

    # The demo trainee can stream (and seek in) the video of a course they are enrolled in.
    media_id = lessons_of(db.session, courses["RISK-SI-01"].versions[0])[0].media_id
    assert client.login("trainee", DEMO_PASSWORDS["trainee"][0]).status_code == 302
    resp = client.get(f"/media/{media_id}", headers={"Range": "bytes=0-15"})
    assert resp.status_code == 206 and resp.data == DEMO_VIDEO.read_bytes()[:16]

    assert _load(app) is False
    assert db.session.scalar(select(func.count()).select_from(Course)) == 3
