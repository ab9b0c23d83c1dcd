"""The risk-control training KPI for performance appraisal: per employee and per
manager's team for a month or quarter, with known data so every figure is asserted
exactly; a manager sees their own team only; the download for the performance system
and the department × period performance report (XLSX and PDF) read back."""

from __future__ import annotations

import csv
import hashlib
import io
import re
from datetime import UTC, date, datetime, timedelta

import pytest
from exam_support import exam_lesson, make_bank, make_exam_course
from openpyxl import load_workbook
from pypdf import PdfReader

from assessments import signing
from assessments.exams import ExamAttempt
from assessments.policies import Signature
from courses.models import Course, CourseVersion, Enrollment, Lesson
from lms.compliance.models import Assignment
from lms.extensions import db
from lms.reports import views as report_views
from lms.reports.kpi import KpiScope, employee_kpis, team_kpis
from lms.reports.periods import parse_period
from lms.workday_overrides import load_calendar

TODAY = date(2026, 10, 16)
ASSIGNED = datetime(2026, 9, 1, 1, 0, tzinfo=UTC)


def at(day: date, hour: int = 10) -> datetime:
    """``hour`` o'clock Beijing time on ``day``, in UTC."""
    return datetime(day.year, day.month, day.day, hour - 8, 0, tzinfo=UTC)


def _document_course(code: str, title: str) -> CourseVersion:
    course = Course(code=code, title_zh=title, risk_topic="attendance")
    version = CourseVersion(course=course, number=1, status="draft")
    db.session.add_all([course, version])
    db.session.flush()
    db.session.add(Lesson(version=version, position=1, kind="document", title="阅读",
                          body="考勤制度全文。"))
    db.session.flush()
    version.status, version.content_hash = "published", "ab" * 32
    db.session.commit()
    return version


def _policy_course(code: str, title: str):
    document = signing.create_document(db.session, name="考勤管理制度", statement_template=None,
                                       min_reading_seconds=10, actor_id=None)
    policy = signing.add_text_version(db.session, document, body="第一条 按时打卡。",
                                      actor_id=None)
    signing.publish_version(db.session, policy, actor_id=None)
    course = Course(code=code, title_zh=title, risk_topic="attendance")
    version = CourseVersion(course=course, number=1, status="draft")
    db.session.add_all([course, version])
    db.session.flush()
    db.session.add(Lesson(version=version, position=1, kind="policy", title="签署《考勤管理制度》",
                          policy_version_id=policy.id))
    db.session.flush()
    version.status, version.content_hash = "published", "cd" * 32
    db.session.commit()
    return version, policy


def _assign(user, version: CourseVersion, due: date, *, status: str = "open",
            completed: datetime | None = None, waived: datetime | None = None,
            suspended: datetime | None = None) -> Enrollment:
    db.session.add(Assignment(
        user_id=user.id, employee_id=user.employee_id, course_id=version.course_id,
        version_id=version.id, source="manual", cycle=1, trigger_date=date(2026, 9, 1),
        due_date=due, status=status, completed_at=completed, waived_at=waived,
        suspended_at=suspended, assigned_at=ASSIGNED))
    enrolment = Enrollment(user_id=user.id, version_id=version.id, source="assigned",
                           completed_at=completed)
    db.session.add(enrolment)
    db.session.commit()
    return enrolment


def _attempt(user, enrolment: Enrollment, version: CourseVersion, number: int, score: int,
             when: datetime) -> None:
    lesson = exam_lesson(version)
    exam_id = db.session.execute(db.text("SELECT id, max_attempts FROM exams WHERE lesson_id = "
                                         ":l"), {"l": lesson.id}).one()
    db.session.add(ExamAttempt(
        exam_id=exam_id[0], max_attempts=exam_id[1], user_id=user.id,
        enrollment_id=enrolment.id, lesson_id=lesson.id, number=number, seed="s" * 16,
        started_at=when - timedelta(minutes=10), deadline_at=when + timedelta(minutes=10),
        served="[]", served_sha256="0" * 64, question_count=5, submitted_at=when,
        end_reason="submitted", answers="{}", answers_sha256="0" * 64,
        correct_count=score // 20, score=score, passed=score >= 80))
    db.session.commit()


def _sign(user, employee, enrolment: Enrollment, version: CourseVersion, policy,
          when: datetime) -> None:
    code = hashlib.sha256(f"{user.id}{when}".encode()).hexdigest()[:16]
    db.session.add(Signature(
        verification_code=code, user_id=user.id, employee_id=employee.id,
        employee_no=employee.employee_no, signer_name=employee.name,
        policy_document_id=policy.document_id, policy_version_id=policy.id,
        version_number=policy.number, document_sha256=policy.sha256,
        lesson_id=version.lessons[0].id, enrollment_id=enrolment.id, statement="我已阅读并理解",
        statement_sha256="1" * 64, reading_seconds=30.0, auth_method="password",
        auth_at=when, signed_at=when, ledger_seq=1, ledger_hash="2" * 64))
    db.session.commit()


@pytest.fixture
def org(people, monkeypatch):
    """Store manager M1 ⊃ lead L1 ⊃ clerks W1, W2; M1 ⊃ W3 (factory). Peer M2 ⊃ X1.

    September 2026 (National Day and Mid-Autumn on the calendar):
    - W1: A due 09-10 done 09-09; B (exam) due 09-20 done 09-24, 4 working days late,
      exam 60 then 90; P (policy) due 09-25 done and signed 09-24.
    - W2: A due 09-15 never done: 11 working days overdue at 09-30.
    - W3: A due 09-30 waived 09-20 (not counted); P due 09-30, suspended only on 10-05,
      unsigned (a signature from August, before the assignment, does not count).
    - L1: B due 09-28 done 10-09 (after the period: overdue 2 working days at 09-30),
      exam 70 in September and 95 in October; P due 09-29 open, unsigned (1 day).
    - X1 (another team): A due 09-10 done on time.
    - W1 in October: A again? No: C due 10-13, open (3 working days overdue on 10-16)."""
    monkeypatch.setattr(report_views, "today", lambda: TODAY)
    store = people.department("一号店", code="STORE1")
    factory = people.department("工厂", code="FACTORY")
    other = people.department("隔壁店", code="STORE2")
    boss = people.employee("店长", department=store, employee_no="M1")
    lead = people.employee("组长", department=store, employee_no="L1", manager=boss)
    w1 = people.employee("店员甲", department=store, employee_no="W1", manager=lead)
    w2 = people.employee("店员乙", department=store, employee_no="W2", manager=lead)
    w3 = people.employee("工人丙", department=factory, employee_no="W3", manager=boss)
    peer = people.employee("隔壁店长", department=other, employee_no="M2")
    x1 = people.employee("隔壁店员", department=other, employee_no="X1", manager=peer)
    users = {e.employee_no: people.user(e.employee_no.lower(), "trainee", employee=e)
             for e in (lead, w1, w2, w3, x1)}
    people.user("m1", "manager", "trainee", employee=boss)
    people.user("m2", "manager", employee=peer)
    people.user("hr", "hr")
    a = _document_course("RISK-A", "入职身份核验")
    b = make_exam_course(bank=make_bank(), code="RISK-B")
    c = _document_course("RISK-C", "劳动合同")
    p, policy = _policy_course("RISK-P", "考勤制度签署")
    d = date
    _assign(users["W1"], a, d(2026, 9, 10), status="completed", completed=at(d(2026, 9, 9)))
    e = _assign(users["W1"], b, d(2026, 9, 20), status="completed",
                completed=at(d(2026, 9, 24)))
    _attempt(users["W1"], e, b, 1, 60, at(d(2026, 9, 22)))
    _attempt(users["W1"], e, b, 2, 90, at(d(2026, 9, 23)))
    e = _assign(users["W1"], p, d(2026, 9, 25), status="completed",
                completed=at(d(2026, 9, 24), 11))
    _sign(users["W1"], w1, e, p, policy, at(d(2026, 9, 24), 11))
    _assign(users["W1"], c, d(2026, 10, 13))
    _assign(users["W2"], a, d(2026, 9, 15))
    _assign(users["W3"], a, d(2026, 9, 30), status="waived", waived=at(d(2026, 9, 20)))
    e = _assign(users["W3"], p, d(2026, 9, 30), status="suspended",
                suspended=at(d(2026, 10, 5)))
    _sign(users["W3"], w3, e, p, policy, at(d(2026, 8, 1)))
    e = _assign(users["L1"], b, d(2026, 9, 28), status="completed",
                completed=at(d(2026, 10, 9)))
    _attempt(users["L1"], e, b, 1, 70, at(d(2026, 9, 29)))
    _attempt(users["L1"], e, b, 2, 95, at(d(2026, 10, 8)))
    _assign(users["L1"], p, d(2026, 9, 29))
    _assign(users["X1"], a, d(2026, 9, 10), status="completed", completed=at(d(2026, 9, 9)))
    return {"store": store, "factory": factory, "other": other, "boss": boss, "lead": lead,
            "x1": x1, "w1": w1, "peer": peer}


FIELDS = ("due", "completed", "on_time", "completion_rate", "on_time_rate", "overdue",
          "overdue_days", "average_score", "signatures_outstanding")


def figures(row) -> tuple:
    f = row.figures
    return (f.due, f.completed, f.on_time,
            None if f.completion_rate is None else str(f.completion_rate),
            None if f.on_time_rate is None else str(f.on_time_rate), f.overdue,
            f.overdue_days, None if f.average_score is None else str(f.average_score),
            f.signatures_outstanding)


SEPTEMBER = {
    "W1": (3, 3, 2, "100.0", "66.7", 0, 4, "90.0", 0),
    "W2": (1, 0, 0, "0.0", "0.0", 1, 11, None, 0),
    "W3": (1, 0, 0, "0.0", "0.0", 0, 0, None, 1),
    "L1": (2, 0, 0, "0.0", "0.0", 2, 3, "70.0", 1),
    "M1": (0, 0, 0, None, None, 0, 0, None, 0),
}
TEAMS = {
    "M1": (7, 3, 2, "42.9", "28.6", 3, 18, "80.0", 2),  # L1, W1, W2, W3
    "L1": (4, 3, 2, "75.0", "50.0", 1, 15, "90.0", 0),  # W1, W2
}


def test_employee_and_team_kpi_for_a_closed_month(app, org):
    period = parse_period("2026-09")
    rows = employee_kpis(db.session, period, today=TODAY,
                         calendar=load_calendar(db.session))
    got = {r.employee_no: figures(r) for r in rows}
    assert {k: got[k] for k in SEPTEMBER} == SEPTEMBER
    assert got["X1"] == (1, 1, 1, "100.0", "100.0", 0, 0, None, 0)
    teams = {t.employee_no: (t.people, figures(t)) for t in team_kpis(db.session, rows)}
    assert teams["M1"] == (4, TEAMS["M1"]) and teams["L1"] == (2, TEAMS["L1"])
    assert teams["M2"] == (1, (1, 1, 1, "100.0", "100.0", 0, 0, None, 0))
    # the quarter holds the same September obligations
    quarter = employee_kpis(db.session, parse_period("2026-Q3"), today=TODAY,
                            calendar=load_calendar(db.session))
    assert {r.employee_no: figures(r) for r in quarter} == got


def test_the_running_month_is_counted_as_of_today(app, org):
    rows = employee_kpis(db.session, parse_period("2026-10"), today=TODAY,
                         calendar=load_calendar(db.session),
                         scope=KpiScope(manager_id=org["boss"].id))
    got = {r.employee_no: figures(r) for r in rows}
    assert got["W1"] == (1, 0, 0, "0.0", "0.0", 1, 3, None, 0)  # C due 10-13, 14-16 late
    assert got["L1"] == (0, 0, 0, None, None, 0, 0, "95.0", 0)  # exam sat on 10-08
    assert "X1" not in got and "M1" not in got


def kpi_rows(html: str, section: str, key: str) -> dict[str, tuple]:
    part = html.split(f'id="{section}"', 1)[1].split("</section>", 1)[0]
    out = {}
    for attrs, body in re.findall(rf'<tr ({key}="[^"]*")>(.*?)</tr>', part, re.S):
        values = dict(re.findall(r'data-kpi="([a-z_]+)">([^<]*)</td>', body))
        out[attrs.split('"')[1]] = values
    return out


def as_page(expected: tuple) -> dict[str, str]:
    shown = []
    for name, value in zip(FIELDS, expected, strict=True):
        if value is None:
            shown.append("—")
        elif name.endswith("_rate"):
            shown.append(f"{value} %")
        else:
            shown.append(str(value))
    return dict(zip(FIELDS, shown, strict=True))


def test_manager_sees_own_team_kpi_only(client, org):
    client.login("m1")
    resp = client.get("/reports/kpi?period=2026-09")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    people = kpi_rows(html, "kpi-employees", "data-employee-no")
    assert set(people) == {"L1", "W1", "W2", "W3"}
    for no in people:
        assert people[no] == as_page(SEPTEMBER[no]), no
    teams = kpi_rows(html, "kpi-teams", "data-manager-no")
    assert set(teams) == {"M1", "L1"}
    assert {k: {f: v for f, v in teams[k].items() if f != "people"} for k in teams} == {
        k: as_page(TEAMS[k]) for k in TEAMS}
    visible = re.sub(r'name="csrf_token" value="[^"]*"', "", html)  # random tokens
    assert "隔壁" not in visible and "X1" not in visible
    # a department of the team narrows; another team's department or person is 404
    html = client.get(f"/reports/kpi?period=2026-09&department={org['factory'].id}"
                      ).get_data(as_text=True)
    assert set(kpi_rows(html, "kpi-employees", "data-employee-no")) == {"W3"}
    assert client.get(f"/reports/kpi?period=2026-09&department={org['other'].id}"
                      ).status_code == 404
    assert client.get(f"/reports/kpi?period=2026-09&employee={org['x1'].id}"
                      ).status_code == 404
    assert client.get(f"/reports/kpi.csv?period=2026-09&department={org['other'].id}"
                      ).status_code == 404
    html = client.get(f"/reports/kpi?period=2026-09&employee={org['w1'].id}"
                      ).get_data(as_text=True)
    assert set(kpi_rows(html, "kpi-employees", "data-employee-no")) == {"W1"}


def test_a_peer_manager_sees_only_theirs_and_trainees_none(client, org, make_client):
    client.login("m2")
    html = client.get("/reports/kpi?period=2026-09").get_data(as_text=True)
    assert set(kpi_rows(html, "kpi-employees", "data-employee-no")) == {"X1"}
    assert client.get(f"/reports/kpi?period=2026-09&employee={org['w1'].id}"
                      ).status_code == 404
    trainee = make_client()
    trainee.login("w1")
    for url in ("/reports/kpi", "/reports/kpi.csv", "/reports/kpi.xlsx",
                "/reports/performance.xlsx"):
        assert trainee.get(url).status_code == 403, url


def test_hr_sees_everyone_and_the_default_period_is_this_month(client, org):
    client.login("hr")
    html = client.get("/reports/kpi").get_data(as_text=True)
    assert 'data-period="2026-10" data-as-of="2026-10-16"' in html
    html = client.get("/reports/kpi?period=2026-Q3").get_data(as_text=True)
    people = kpi_rows(html, "kpi-employees", "data-employee-no")
    assert set(people) == {"M1", "L1", "W1", "W2", "W3", "M2", "X1"}
    teams = kpi_rows(html, "kpi-teams", "data-manager-no")
    assert set(teams) == {"M1", "L1", "M2"}
    total = kpi_rows(html.replace('<tr class="total" id="kpi-total">',
                                  '<tr data-employee-no="TOTAL">'),
                     "kpi-employees", "data-employee-no")["TOTAL"]
    assert total["due"] == "8" and total["completed"] == "4"
    assert total["completion_rate"] == "50.0 %"
    assert total["average_score"] == "80.0"


@pytest.mark.parametrize("period", ["2026-13", "abc", "2026-Q5", "1999-01", "26-09"])
def test_a_bad_period_is_refused_with_a_message(client, org, period):
    client.login("hr")
    client.post("/lang/en", {"next": "/"}, token_from="/")
    for url in ("/reports/kpi", "/reports/kpi.csv", "/reports/kpi.xlsx"):
        resp = client.get(f"{url}?period={period}")
        assert resp.status_code == 400, url
        html = resp.get_data(as_text=True)
        assert "Enter a period: a month as YYYY-MM or a quarter as YYYY-Qn" in html
        assert 'data-employee-no="W1"' not in html


def test_kpi_download_for_the_performance_system(client, org):
    client.login("m1")
    resp = client.get("/reports/kpi.csv?period=2026-09")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    raw = resp.get_data()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    header, body = rows[0], rows[1:]
    assert header[1:3] == ["工号", "姓名"] and header.count("工号") == 1
    assert sorted(r[1] for r in body) == ["L1", "W1", "W2", "W3"]
    w1 = next(r for r in body if r[1] == "W1")
    assert w1[0] == "2026-09" and w1[2] == "店员甲" and w1[3] == "一号店"
    assert w1[6:8] == ["L1", "组长"]
    assert w1[8:] == ["3", "3", "2", "100.0", "66.7", "0", "4", "90.0", "1", "0"]
    resp = client.get("/reports/kpi.csv?period=2026-09&table=teams")
    teams = list(csv.reader(io.StringIO(resp.get_data().decode("utf-8-sig"))))[1:]
    assert sorted((r[1], r[4], r[8]) for r in teams) == [("L1", "2", "75.0"),
                                                           ("M1", "4", "42.9")]
    resp = client.get("/reports/kpi.xlsx?period=2026-09")
    book = load_workbook(io.BytesIO(resp.get_data()))
    assert len(book.worksheets) == 2
    people = list(book.worksheets[0].iter_rows(values_only=True))[1:]
    w1 = next(r for r in people if r[1] == "W1")
    assert w1[8:13] == (3, 3, 2, 100, 66.7)
    managers = list(book.worksheets[1].iter_rows(values_only=True))[1:]
    assert sorted(r[1] for r in managers) == ["L1", "M1"]


def test_performance_report_xlsx_and_pdf(client, org):
    client.login("hr")
    html = client.get("/reports/performance").get_data(as_text=True)
    assert 'id="performance-form"' in html and "download-performance-xlsx" not in html
    html = client.get(f"/reports/performance?department={org['store'].id}&period=2026-09"
                      ).get_data(as_text=True)
    assert "download-performance-xlsx" in html
    resp = client.get(f"/reports/performance.xlsx?department={org['store'].id}"
                      "&period=2026-09")
    assert resp.status_code == 200
    assert "risk-training-performance-STORE1-2026-09.xlsx" in resp.headers[
        "Content-Disposition"]
    book = load_workbook(io.BytesIO(resp.get_data()))
    summary = list(book.worksheets[0].iter_rows(values_only=True))
    assert summary[1][1:8] == ("STORE1", 4, 6, 3, 2, 50, 33.3)  # M1, L1, W1, W2
    employees = list(book.worksheets[1].iter_rows(values_only=True))[1:]
    assert sorted(r[1] for r in employees) == ["L1", "M1", "W1", "W2"]
    teams = list(book.worksheets[2].iter_rows(values_only=True))[1:]
    assert {r[1]: r[4] for r in teams} == {"M1": 3, "L1": 2}  # within the store only
    resp = client.get(f"/reports/performance.pdf?department={org['store'].id}"
                      "&period=2026-09")
    assert resp.status_code == 200 and resp.mimetype == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(resp.get_data())).pages)
    assert "一号店" in text and "店员甲" in text and "2026-09" in text
    # no department chosen, or an unknown one: a message, no file
    assert client.get("/reports/performance.xlsx?period=2026-09").status_code == 400
    assert client.get("/reports/performance.xlsx?department=99999&period=2026-09"
                      ).status_code == 400
    assert client.get(f"/reports/performance.pdf?department={org['store'].id}&period=x"
                      ).status_code == 400


def test_hr_with_an_unknown_department_gets_a_message(client, org):
    client.login("hr")
    client.post("/lang/en", {"next": "/"}, token_from="/")
    resp = client.get("/reports/kpi?period=2026-09&department=99999")
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert "Choose a department from the list." in html
    assert 'data-employee-no="W1"' not in html


def test_without_a_cjk_font_the_pdf_is_refused_and_the_xlsx_offered(app, client, org,
                                                                     tmp_path):
    app.config["EVIDENCE_FONT_PATH"] = str(tmp_path / "missing.ttf")
    client.login("hr")
    client.post("/lang/en", {"next": "/"}, token_from="/")
    resp = client.get(f"/reports/performance.pdf?department={org['store'].id}"
                      "&period=2026-09")
    assert resp.status_code == 503
    html = resp.get_data(as_text=True)
    assert "the Excel file has the same figures" in html and "missing.ttf" in html
    assert "download-performance-xlsx" in html
