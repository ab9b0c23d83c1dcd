"""HR's training dashboard and completion report: figures from known data (a department
tree rolled up), drill-down links to the people, filters with clear messages for bad
values, CSV (BOM, Chinese, one header, only the filtered rows) and XLSX downloads read
back, and who may see what."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime

import pytest
from openpyxl import load_workbook

from courses.models import Course, CourseVersion, Enrollment, Lesson
from lms.compliance.models import Assignment
from lms.extensions import db
from lms.reports import views as report_views

TODAY = date(2026, 10, 16)  # Friday after National Day 2026


def _course(code: str, title: str) -> CourseVersion:
    course = Course(code=code, title_zh=title, risk_topic="labour_contracts")
    version = CourseVersion(course=course, number=1, status="draft")
    db.session.add_all([course, version])
    db.session.flush()
    db.session.add(Lesson(version=version, position=1, kind="document", title="阅读",
                          body="劳动合同应当以书面形式订立。"))
    db.session.flush()
    version.status, version.content_hash = "published", "ab" * 32
    db.session.commit()
    return version


def _assign(user, version: CourseVersion, due: date, *, status: str = "open",
            completed_at: datetime | None = None) -> Assignment:
    a = Assignment(user_id=user.id, employee_id=user.employee_id, course_id=version.course_id,
                   version_id=version.id, source="manual", cycle=1,
                   trigger_date=date(2026, 9, 1), due_date=due, status=status,
                   completed_at=completed_at,
                   suspended_at=datetime(2026, 10, 1, tzinfo=UTC) if status == "suspended"
                   else None,
                   waived_at=datetime(2026, 10, 1, tzinfo=UTC) if status == "waived" else None)
    db.session.add(a)
    db.session.add(Enrollment(user_id=user.id, version_id=version.id, source="assigned",
                              completed_at=completed_at))
    db.session.commit()
    return a


@pytest.fixture
def org(people, monkeypatch):
    """总部 HQ ⊃ 一号店 STORE1 ⊃ 收银组 STORE1-A, HQ ⊃ 工厂 FACTORY; an empty second root.

    STORE1: L1 (A done on time). STORE1-A: W1 (A overdue 3 working days; B done on
    time; position 收银员), W2 (A suspended). FACTORY: W3 (A done late), X1 (A overdue 8
    working days, B waived)."""
    monkeypatch.setattr(report_views, "today", lambda: TODAY)
    hq = people.department("总部", code="HQ")
    store = people.department("一号店", parent=hq, code="STORE1")
    till = people.department("收银组", parent=store, code="STORE1-A")
    factory = people.department("工厂", parent=hq, code="FACTORY")
    people.department("子公司", code="SUB")
    cashier = people.position("收银员", code="CASHIER")
    boss = people.employee("店长", department=store, employee_no="M1")
    lead = people.employee("组长", department=store, employee_no="L1", manager=boss)
    w1 = people.employee("店员甲", department=till, employee_no="W1", manager=lead,
                         position=cashier)
    w2 = people.employee("店员乙", department=till, employee_no="W2", manager=lead,
                         status="absconded")
    w3 = people.employee("工人丙", department=factory, employee_no="W3", manager=boss)
    x1 = people.employee("工人丁", department=factory, employee_no="X1")
    users = {e.employee_no: people.user(e.employee_no.lower(), "trainee", employee=e)
             for e in (lead, w1, w2, w3, x1)}
    people.user("m1", "manager", "trainee", employee=boss)
    people.user("hr", "hr")
    people.user("auditor", "auditor")
    a = _course("RISK-A", "入职身份核验")
    b = _course("RISK-B", "考勤制度")
    due = date(2026, 10, 13)
    _assign(users["L1"], a, due, status="completed",
            completed_at=datetime(2026, 10, 13, 15, 30, tzinfo=UTC))  # 23:30 Beijing
    _assign(users["W1"], a, due)
    _assign(users["W1"], b, date(2026, 10, 20), status="completed",
            completed_at=datetime(2026, 10, 15, 2, 0, tzinfo=UTC))
    _assign(users["W2"], a, due, status="suspended")
    _assign(users["W3"], a, date(2026, 9, 30), status="completed",
            completed_at=datetime(2026, 10, 9, 2, 0, tzinfo=UTC))
    _assign(users["X1"], a, date(2026, 9, 30))
    _assign(users["X1"], b, date(2026, 9, 30), status="waived")
    return {"hq": hq, "store": store, "till": till, "factory": factory, "a": a, "b": b,
            "cashier": cashier, "w1": w1, "x1": x1}


def get(client, url: str, status: int = 200) -> str:
    resp = client.get(url)
    assert resp.status_code == status, (url, resp.status_code)
    return resp.get_data(as_text=True)


def counts(html: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r'id="count-([a-z_]+)" data-count="(\d+)"', html)}


def bars(html: str, section: str, key: str) -> dict[str, dict[str, str]]:
    """{department/course id: its data-* figures} of one chart."""
    part = html.split(f'id="{section}"', 1)[1].split("</section>", 1)[0]
    out = {}
    for attrs in re.findall(r'<li class="bar-row" ([^>]*)>', part):
        data = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', attrs))
        out[data.pop(key)] = data
    return out


def table_rows(html: str) -> list[tuple[str, str, str, str]]:
    """(employee no., course code, state, overdue working days) of the report table."""
    out = []
    for attrs, body in re.findall(r'<tr (data-employee-no=[^>]*)>(.*?)</tr>', html, re.S):
        data = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', attrs))
        days = re.search(r'<td class="num overdue-days">([^<]*)</td>', body)
        out.append((data["employee-no"], data["course-code"], data["state"],
                    days.group(1).strip() if days else ""))
    return sorted(out)


# --- dashboard ---------------------------------------------------------------------------


def test_dashboard_figures_roll_up_the_department_tree(client, org):
    client.login("hr")
    html = get(client, "/reports/")
    assert counts(html) == {"required": 5, "completed": 3, "overdue": 2, "suspended": 1,
                            "waived": 1}
    assert 'id="rate-completion" data-rate="60.0"' in html
    assert 'id="rate-on-time" data-rate="40.0"' in html  # L1 and W1's B; W3 was late
    roots = bars(html, "by-department", "department-id")
    assert roots == {
        str(org["hq"].id): {"rate": "60.0", "required": "5", "completed": "3", "overdue": "2"},
        str(org["hq"].id + 4): {"rate": "", "required": "0", "completed": "0",
                                "overdue": "0"},  # 子公司: nothing assigned, no rate
    }
    html = get(client, f"/reports/?department={org['hq'].id}")
    children = bars(html, "by-department", "department-id")
    assert children == {
        str(org["store"].id): {"rate": "66.7", "required": "3", "completed": "2",
                               "overdue": "1"},
        str(org["factory"].id): {"rate": "50.0", "required": "2", "completed": "1",
                                 "overdue": "1"},
    }
    assert "一号店" in html and "工厂" in html and "子公司" not in html.split('id="by-department"')[1]
    courses = bars(html, "by-course", "course-id")
    assert courses == {
        str(org["a"].course_id): {"rate": "50.0", "required": "4", "completed": "2",
                                  "overdue": "2"},
        str(org["b"].course_id): {"rate": "100.0", "required": "1", "completed": "1",
                                  "overdue": "0"},  # X1's waived B is not required
    }


def test_drilling_into_a_store_shows_its_own_staff_and_sub_department(client, org):
    client.login("hr")
    html = get(client, f"/reports/?department={org['store'].id}")
    assert 'id="trail"' in html and "总部" in html
    rows = bars(html, "by-department", "department-id")
    assert rows == {
        str(org["store"].id): {"rate": "100.0", "required": "1", "completed": "1",
                               "overdue": "0"},  # L1, the store's own staff
        str(org["till"].id): {"rate": "50.0", "required": "2", "completed": "1",
                              "overdue": "1"},
    }
    assert counts(html)["required"] == 3 and counts(html)["suspended"] == 1
    # the bars lead to the people: the own-staff bar without sub-departments
    assert f'href="/reports/completion?department={org["store"].id}&amp;exact=y"' in html
    assert f'href="/reports/completion?department={org["till"].id}"' in html


def test_overdue_list_longest_first_with_working_days_and_the_trend(client, org):
    client.login("hr")
    html = get(client, "/reports/")
    part = html.split('id="overdue-list"')[1].split("</section>")[0]
    names = re.findall(r"<td class=\"mono\">(\w+)</td>", part)
    assert names == ["X1", "W1"]
    assert re.findall(r'overdue-days">(\d+)<', part) == ["8", "3"]
    trend = dict((m, (r, c, o)) for m, r, c, o in re.findall(
        r'data-month="([0-9-]+)" data-required="(\d+)" data-completed="(\d+)" '
        r'data-on-time="(\d+)"', html))
    assert len(trend) == 12 and min(trend) == "2025-11" and max(trend) == "2026-10"
    assert trend["2026-09"] == ("2", "1", "0")  # W3 late, X1 open
    assert trend["2026-10"] == ("3", "2", "2")
    assert trend["2026-08"] == ("0", "0", "0")
    assert 'href="/regulation"' in html  # the regulation clock's slot


def test_dashboard_of_an_unknown_department_is_404(client, org):
    client.login("hr")
    get(client, "/reports/?department=99999", 404)
    get(client, "/reports/?department=abc", 404)


# --- completion report -------------------------------------------------------------------


def test_completion_report_filters(client, org):
    client.login("hr")
    html = get(client, f"/reports/completion?department={org['store'].id}")
    assert table_rows(html) == [("L1", "RISK-A", "completed-on-time", ""),
                                ("W1", "RISK-A", "overdue", "3"),
                                ("W1", "RISK-B", "completed-on-time", ""),
                                ("W2", "RISK-A", "suspended", "")]
    html = get(client, f"/reports/completion?department={org['store'].id}&exact=y")
    assert [r[0] for r in table_rows(html)] == ["L1"]
    html = get(client, "/reports/completion?status=overdue")
    assert table_rows(html) == [("W1", "RISK-A", "overdue", "3"),
                                ("X1", "RISK-A", "overdue", "8")]
    html = get(client, f"/reports/completion?course={org['b'].course_id}")
    assert table_rows(html) == [("W1", "RISK-B", "completed-on-time", ""),
                                ("X1", "RISK-B", "waived", "")]
    html = get(client, f"/reports/completion?position={org['cashier'].id}")
    assert {r[0] for r in table_rows(html)} == {"W1"}
    html = get(client, "/reports/completion?due_from=2026-09-01&due_to=2026-09-30")
    assert table_rows(html) == [("W3", "RISK-A", "completed-late", "2"),  # 10-08, 10-09
                                ("X1", "RISK-A", "overdue", "8"),
                                ("X1", "RISK-B", "waived", "")]
    html = get(client, f"/reports/completion?employee={org['w1'].id}")
    assert {r[0] for r in table_rows(html)} == {"W1"} and "店员甲" in html
    html = get(client, "/reports/completion?status=completed&department="
               f"{org['factory'].id}")
    assert table_rows(html) == [("W3", "RISK-A", "completed-late", "2")]


@pytest.mark.parametrize("query, message", [
    ("department=99999", "Choose a department from the list."),
    ("department=abc", "Choose a department from the list."),
    ("course=99999", "Choose a course from the list."),
    ("position=-1", "Choose a position from the list."),
    ("status=late", "Choose a status from the list."),
    ("due_from=2026-13-01", "Enter a date as YYYY-MM-DD, e.g. 2026-10-08."),
    ("due_from=20261001", "Enter a date as YYYY-MM-DD, e.g. 2026-10-08."),
    ("due_from=2026-10-10&due_to=2026-10-01",
     "The end of the due-date range is before its start."),
])
def test_bad_filter_values_get_a_message_and_no_rows(client, org, query, message):
    client.login("hr")
    client.post("/lang/en", {"next": "/"}, token_from="/")
    for url in ("/reports/completion", "/reports/completion.csv", "/reports/completion.xlsx"):
        html = get(client, f"{url}?{query}", 400)
        assert message in html, url
        assert table_rows(html) == []


def test_unknown_employee_in_the_report_is_404(client, org):
    client.login("hr")
    get(client, "/reports/completion?employee=99999", 404)


def _csv(resp) -> tuple[bytes, list[list[str]]]:
    raw = resp.get_data()
    return raw, list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))


def test_csv_download_has_bom_chinese_one_header_and_only_filtered_rows(client, org):
    client.login("hr")
    resp = client.get(f"/reports/completion.csv?department={org['store'].id}"
                      "&status=overdue")
    assert resp.status_code == 200
    assert resp.mimetype == "text/csv"
    assert resp.is_streamed
    assert "attachment" in resp.headers["Content-Disposition"]
    raw, rows = _csv(resp)
    assert raw.startswith(b"\xef\xbb\xbf") and raw.count(b"\xef\xbb\xbf") == 1
    assert rows[0][:3] == ["工号", "姓名", "部门"]
    assert rows[1:] == [["W1", "店员甲", "收银组", "收银员", "在职", "RISK-A", "入职身份核验",
                         "1", "1", "逾期", "2026-10-13", "", "3"]]
    _raw, rows = _csv(client.get(f"/reports/completion.csv?course={org['a'].course_id}"))
    assert sum(1 for r in rows if r[0] == "工号") == 1
    assert sorted(r[0] for r in rows[1:]) == ["L1", "W1", "W2", "W3", "X1"]
    w3 = next(r for r in rows if r[0] == "W3")
    assert w3[9:] == ["逾期完成", "2026-09-30", "2026-10-09 10:00", "2"]  # Beijing time


def test_xlsx_download_reads_back(client, org):
    client.login("auditor")
    resp = client.get(f"/reports/completion.xlsx?department={org['factory'].id}")
    assert resp.status_code == 200
    assert resp.mimetype == ("application/vnd.openxmlformats-officedocument."
                             "spreadsheetml.sheet")
    book = load_workbook(io.BytesIO(resp.get_data()))
    sheet = book.worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:2] == ("工号", "姓名")
    body = sorted(rows[1:], key=lambda r: (r[0], r[5]))
    assert [(r[0], r[1], r[5], r[12]) for r in body] == [
        ("W3", "工人丙", "RISK-A", 2), ("X1", "工人丁", "RISK-A", 8),
        ("X1", "工人丁", "RISK-B", None)]
    assert body[0][10] == datetime(2026, 9, 30)  # a real date cell
    assert body[0][11] == datetime(2026, 10, 9, 10, 0)  # Beijing time


def test_who_may_see_reports(client, org, make_client):
    for url in ("/reports/", "/reports/completion", "/reports/completion.csv",
                "/reports/completion.xlsx", "/reports/performance"):
        trainee = make_client()
        trainee.login("w1")
        assert trainee.get(url).status_code == 403, url
        manager = make_client()
        manager.login("m1")
        assert manager.get(url).status_code == 403, url
        auditor = make_client()
        auditor.login("auditor")
        assert auditor.get(url).status_code == 200, url
    anonymous = make_client()
    assert anonymous.get("/reports/").status_code in (302, 401)


def test_nav_link_per_role(client, org, make_client):
    client.login("hr")
    assert 'href="/reports/" id="nav-reports"' in get(client, "/")
    manager = make_client()
    manager.login("m1")
    assert 'href="/reports/kpi" id="nav-reports"' in get(manager, "/")
    trainee = make_client()
    trainee.login("w1")
    assert 'id="nav-reports"' not in get(trainee, "/")
