"""HR's training dashboard in a real browser, phone-sized: Chinese labels, bars drawn,
and a click on a department's bar lands on exactly that department's people."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from support import PASSWORD

from courses.models import Course, CourseVersion, Enrollment, Lesson
from lms.compliance.models import Assignment
from lms.extensions import db
from lms.reports import views as report_views

pytestmark = pytest.mark.browser


@pytest.fixture
def org(people, monkeypatch):
    monkeypatch.setattr(report_views, "today", lambda: date(2026, 10, 16))
    hq = people.department("总部", code="HQ")
    store = people.department("一号店", parent=hq, code="STORE1")
    factory = people.department("工厂", parent=hq, code="FACTORY")
    course = Course(code="RISK-A", title_zh="入职身份核验", risk_topic="identity_verification")
    version = CourseVersion(course=course, number=1, status="draft")
    db.session.add_all([course, version])
    db.session.flush()
    db.session.add(Lesson(version=version, position=1, kind="document", title="阅读",
                          body="劳动合同应当以书面形式订立。"))
    db.session.flush()
    version.status, version.content_hash = "published", "ab" * 32
    db.session.commit()
    for no, name, dept, done in (("S1", "店员甲", store, True), ("S2", "店员乙", store, False),
                                 ("F1", "工人丙", factory, False)):
        emp = people.employee(name, department=dept, employee_no=no)
        user = people.user(no.lower(), "trainee", employee=emp)
        completed = datetime(2026, 10, 9, 2, 0, tzinfo=UTC) if done else None
        db.session.add(Assignment(
            user_id=user.id, employee_id=emp.id, course_id=course.id, version_id=version.id,
            source="manual", cycle=1, trigger_date=date(2026, 9, 28),
            due_date=date(2026, 10, 13), status="completed" if done else "open",
            completed_at=completed))
        db.session.add(Enrollment(user_id=user.id, version_id=version.id, source="assigned",
                                  completed_at=completed))
    db.session.commit()
    people.user("hr", "hr")
    return {"hq": hq, "store": store}


def test_dashboard_in_chinese_and_a_bar_click_lists_that_departments_people(
        browser, live_server, org):
    context = browser.new_context(locale="zh-CN", base_url=live_server,
                                  viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto("/login")
    page.get_by_label("用户名").fill("hr")
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url("**/")
    page.locator("#nav-reports").click()
    page.wait_for_url("**/reports/")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator("#count-completed").inner_text().split() == ["已完成", "1"]
    assert page.locator("#count-overdue").inner_text().split() == ["逾期", "2"]
    page.locator("a.drill", has_text="总部").click()  # into the company tree
    store_row = page.locator(f'li.bar-row[data-department-id="{org["store"].id}"]')
    assert "一号店" in store_row.inner_text() and "50.0 %" in store_row.inner_text()
    bar = store_row.locator("svg.bar")
    assert bar.bounding_box()["width"] > 200  # a full-width bar on a phone
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, "the dashboard scrolls sideways on a phone"
    store_row.locator("a.bar-link").click()
    page.wait_for_url(f"**/reports/completion?department={org['store'].id}")
    numbers = page.locator("#completion-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.employeeNo)")
    assert sorted(numbers) == ["S1", "S2"]
    assert page.get_by_text("店员乙").is_visible()
    assert page.locator('tr[data-employee-no="S2"] .due-state').inner_text() == "逾期"
    context.close()
