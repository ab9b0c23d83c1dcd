"""The manager's team training page: direct and indirect reports with their assignments,
the filters, headline counts from SQL, and nothing from outside the manager's tree."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest

from courses.models import Course, CourseVersion, Enrollment, Lesson
from lms.compliance import team_views
from lms.compliance.models import Assignment
from lms.compliance.team import TeamFilters, team_page
from lms.extensions import db

TODAY = date(2026, 10, 16)  # Friday after National Day 2026
DUE = date(2026, 10, 13)


def _course(code: str, title: str) -> CourseVersion:
    course = Course(code=code, title_zh=title, risk_topic="identity_verification")
    version = CourseVersion(course=course, number=1, status="draft")
    db.session.add_all([course, version])
    db.session.flush()
    db.session.add(Lesson(version=version, position=1, kind="document", title="阅读",
                          body="劳动合同应当以书面形式订立。"))
    db.session.flush()
    version.status = "published"
    version.content_hash = "cd" * 32
    db.session.commit()
    return version


def _assign(user, version: CourseVersion, due: date, *, status: str = "open",
            completed_at: datetime | None = None) -> None:
    db.session.add(Assignment(
        user_id=user.id, employee_id=user.employee_id, course_id=version.course_id,
        version_id=version.id, source="manual", cycle=1, trigger_date=date(2026, 9, 28),
        due_date=due, status=status, completed_at=completed_at))
    db.session.add(Enrollment(user_id=user.id, version_id=version.id, source="assigned",
                              completed_at=completed_at))
    db.session.commit()


@pytest.fixture
def org(people, monkeypatch):
    """Store manager M1 ⊃ lead L1 ⊃ clerks W1, W2 (absconded); M1 also has W3 (factory)
    and L2 (nothing assigned) directly. Peer manager M2 has X1 in a store of their own."""
    monkeypatch.setattr(team_views, "today", lambda: TODAY)
    store = people.department("一号店", code="STORE1")
    factory = people.department("工厂", code="FACTORY")
    other_store = people.department("隔壁店", code="STORE2")
    boss = people.employee("店长", department=store, employee_no="M1")
    lead = people.employee("组长", department=store, employee_no="L1", manager=boss)
    idle = people.employee("新组长", department=store, employee_no="L2", manager=boss)
    w1 = people.employee("店员甲", department=store, employee_no="W1", manager=lead)
    w2 = people.employee("店员乙", department=store, employee_no="W2", manager=lead,
                         status="absconded")
    w3 = people.employee("工人丙", department=factory, employee_no="W3", manager=boss)
    peer = people.employee("隔壁店长", department=other_store, employee_no="M2")
    x1 = people.employee("隔壁店员", department=other_store, employee_no="X1", manager=peer)
    users = {e.employee_no: people.user(e.employee_no.lower(), "trainee", employee=e)
             for e in (lead, idle, w1, w2, w3, x1)}
    people.user("m1", "manager", "trainee", employee=boss)
    people.user("m2", "manager", employee=peer)
    a = _course("RISK-A", "入职身份核验")
    b = _course("RISK-B", "考勤制度")
    c = _course("RISK-C", "隔壁专属课程")
    # Due 10-13: 23:30 Beijing time that day is on time; W3's 00:30 the next day is late.
    _assign(users["L1"], a, DUE, status="completed",
            completed_at=datetime(2026, 10, 13, 15, 30, tzinfo=UTC))
    _assign(users["W1"], a, DUE)  # overdue by 3 working days (14, 15, 16)
    _assign(users["W1"], b, date(2026, 10, 20))
    _assign(users["W2"], a, DUE, status="suspended")
    _assign(users["W3"], a, date(2026, 9, 30), status="completed",
            completed_at=datetime(2026, 9, 30, 16, 30, tzinfo=UTC))
    _assign(users["X1"], a, date(2026, 9, 30))
    _assign(users["X1"], c, date(2026, 9, 30))
    return {"boss": boss, "peer": peer, "w1": w1, "x1": x1, "factory": factory,
            "other_store": other_store, "a": a, "b": b, "c": c}


def rows(html: str) -> list[dict[str, str]]:
    """Each table row's employee no., state, course code and overdue working days."""
    out = []
    for attrs, body in re.findall(r'<tr (data-employee-no=[^>]*)>(.*?)</tr>', html, re.S):
        row = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', attrs))
        days = re.search(r'<td class="overdue-days">([^<]*)</td>', body)
        row["overdue"] = days.group(1) if days else ""
        out.append(row)
    return out


def counts(html: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r'id="count-([a-z_]+)" data-count="(\d+)"', html)}


def page(client, query: str = "") -> str:
    resp = client.get(f"/team/training{query}")
    assert resp.status_code == 200
    return resp.get_data(as_text=True)


def test_indirect_reports_states_and_counts(client, org):
    client.login("m1")
    html = page(client)
    got = {(r["employee-no"], r.get("course-code", ""), r["state"], r["overdue"])
           for r in rows(html)}
    assert got == {
        ("L1", "RISK-A", "completed-on-time", ""),
        ("L2", "", "none", ""),
        ("W1", "RISK-A", "overdue", "3"),
        ("W1", "RISK-B", "due", ""),
        ("W2", "RISK-A", "suspended", ""),
        ("W3", "RISK-A", "completed-late", ""),
    }
    assert counts(html) == {"assigned": 5, "completed": 2, "on_time": 1, "overdue": 1,
                            "suspended": 1}
    visible = re.sub(r'name="csrf_token" value="[^"]*"', "", html)  # random tokens
    assert "隔壁" not in visible and "X1" not in visible and "RISK-C" not in visible


def test_direct_only_department_course_and_status_filters(client, org):
    client.login("m1")
    html = page(client, "?direct=y")
    assert {r["employee-no"] for r in rows(html)} == {"L1", "L2", "W3"}
    assert counts(html) == {"assigned": 2, "completed": 2, "on_time": 1, "overdue": 0,
                            "suspended": 0}
    html = page(client, f"?department={org['factory'].id}")
    assert {r["employee-no"] for r in rows(html)} == {"W3"}
    html = page(client, f"?course={org['b'].course_id}")
    assert [(r["employee-no"], r["course-code"]) for r in rows(html)] == [("W1", "RISK-B")]
    assert counts(html)["assigned"] == 1
    html = page(client, "?status=overdue")
    assert [(r["employee-no"], r["state"]) for r in rows(html)] == [("W1", "overdue")]
    assert counts(html)["assigned"] == 5  # the headline ignores the status filter
    html = page(client, f"?employee={org['w1'].id}")  # as the name links do
    assert {r["employee-no"] for r in rows(html)} == {"W1"}


def test_another_managers_people_never_leak_through_filters(client, org):
    client.login("m1")
    assert client.get(f"/team/training?employee={org['x1'].id}").status_code == 404
    assert client.get(f"/team/training?employee={org['peer'].id}").status_code == 404
    for query in (f"?department={org['other_store'].id}", f"?course={org['c'].course_id}",
                  f"?department={org['other_store'].id}&course={org['c'].course_id}"
                  "&status=overdue"):
        html = page(client, query)
        assert rows(html) == [], query
        assert set(counts(html).values()) == {0}, query
        visible = re.sub(r'name="csrf_token" value="[^"]*"', "", html)  # random tokens
        assert "隔壁" not in visible and "X1" not in visible, query
    # The peer sees their own report and none of ours.
    client.logout()
    client.login("m2")
    html = page(client)
    assert {r["employee-no"] for r in rows(html)} == {"X1"}
    assert counts(html) == {"assigned": 2, "completed": 0, "on_time": 0, "overdue": 2,
                            "suspended": 0}


def test_pagination_keeps_the_order(app, org):
    first = team_page(db.session, org["boss"].id, TeamFilters(), TODAY, page=1, per_page=2)
    second = team_page(db.session, org["boss"].id, TeamFilters(), TODAY, page=2, per_page=2)
    assert (first.total, first.pages, second.has_next) == (6, 3, True)
    assert [(r.employee_no, r.course_code) for r in first.items + second.items] == [
        ("L1", "RISK-A"), ("L2", None), ("W1", "RISK-A"), ("W1", "RISK-B")]


def test_roles(client, make_client, people, org):
    people.user("hr1", "hr", employee=people.employee("人事"))
    client.login("l1")  # a trainee (with reports of nobody)
    assert client.get("/team/training").status_code == 403
    hr = make_client()
    hr.login("hr1")
    assert hr.get("/team/training").status_code == 403
    people.user("m9", "manager")  # no employee record: an explanation, no team
    unlinked = make_client()
    unlinked.login("m9")
    html = page(unlinked)
    assert rows(html) == [] and 'id="team-summary"' not in html
    manager = make_client()
    manager.login("m1")
    assert 'href="/team/training"' in manager.get("/team").get_data(as_text=True)
