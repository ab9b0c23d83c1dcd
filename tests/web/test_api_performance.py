"""/api/v1/performance/kpi as the performance system meets it: the same figures as the
KPI module (and so as Reports → KPI and its download) per employee and per manager's
team, for a month or a quarter, paged with totals; bad input named."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest
from risk_support import assign, at, bearer, course, make_token

import integrations.performance_api as perf_api
from lms.extensions import db
from lms.reports import kpi as kpi_mod
from lms.reports import views as report_views
from lms.reports.periods import parse_period
from lms.workday_overrides import load_calendar

TODAY = date(2026, 10, 16)
URL = "/api/v1/performance/kpi"


@pytest.fixture
def org(app, people, monkeypatch):
    """Store S1 ⊃ counter S1A; factory F1. M1 ⊃ L1 ⊃ W1 (S1A), W2 (S1); X1 alone in F1.

    September 2026: W1 A due 09-10 done 09-09, B due 09-20 done 09-24 (late); W2 A due
    09-15 never done (overdue); L1 B due 09-28 done 10-09 (after the month); X1 A due
    09-10 done on time. October: W2 B due 10-13, open."""
    monkeypatch.setattr(perf_api, "clock", lambda: at(TODAY))
    monkeypatch.setattr(report_views, "today", lambda: TODAY)
    s1 = people.department("一号店", code="S1")
    s1a = people.department("收银组", parent=s1, code="S1A")
    f1 = people.department("工厂", code="F1")
    boss = people.employee("店长", department=s1, employee_no="M1")
    lead = people.employee("组长", department=s1, employee_no="L1", manager=boss)
    w1 = people.employee("店员甲", department=s1a, employee_no="W1", manager=lead)
    w2 = people.employee("店员乙", department=s1, employee_no="W2", manager=lead)
    x1 = people.employee("工人丙", department=f1, employee_no="X1")
    users = {e.employee_no: people.user(e.employee_no.lower(), "trainee", employee=e)
             for e in (lead, w1, w2, x1)}
    a, b = course("A-01", "attendance"), course("B-01", "performance")
    assign(users["W1"], a, date(2026, 9, 10), status="completed", completed=at(date(2026, 9, 9)))
    assign(users["W1"], b, date(2026, 9, 20), status="completed",
           completed=at(date(2026, 9, 24)))
    assign(users["W2"], a, date(2026, 9, 15))
    assign(users["L1"], b, date(2026, 9, 28), status="completed",
           completed=at(date(2026, 10, 9)))
    assign(users["X1"], a, date(2026, 9, 10), status="completed",
           completed=at(date(2026, 9, 10)))
    assign(users["W2"], b, date(2026, 10, 13))
    people.user("hr", "hr")
    return {"token": make_token("performance:read", name="performance-system"), "s1": s1}


def get(app, token: str, query: str = ""):
    return app.test_client().get(f"{URL}{query}", headers=bearer(token))


def module_rows(period: str, department_id: int | None = None) -> list[kpi_mod.KpiRow]:
    return kpi_mod.employee_kpis(db.session, parse_period(period), today=TODAY,
                                 calendar=load_calendar(db.session),
                                 scope=kpi_mod.KpiScope(department_id=department_id))


def number(value) -> float | None:
    return None if value is None else float(value)


def figures(f: kpi_mod.KpiFigures) -> dict:
    return {"due": f.due, "completed": f.completed, "on_time": f.on_time, "overdue": f.overdue,
            "overdue_working_days": f.overdue_days,
            "completion_rate": number(f.completion_rate),
            "on_time_rate": number(f.on_time_rate),
            "average_exam_score": number(f.average_score), "exams_taken": f.exams,
            "signatures_outstanding": f.signatures_outstanding}


def api_figures(row: dict) -> dict:
    return {k: row[k] for k in ("due", "completed", "on_time", "overdue",
                                "overdue_working_days", "completion_rate", "on_time_rate",
                                "average_exam_score", "exams_taken",
                                "signatures_outstanding")}


@pytest.mark.parametrize("period", ["2026-09", "2026-Q3", "2026-10", "2026-Q4"])
def test_employee_figures_are_the_kpi_modules(app, org, period):
    resp = get(app, org["token"], f"?period={period}")
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    expected = module_rows(period)
    assert body["total"] == len(expected) == 5  # every 在职 employee, M1 with nothing due
    assert [r["employee_no"] for r in body["rows"]] == [r.employee_no for r in expected]
    for got, want in zip(body["rows"], expected, strict=True):
        assert api_figures(got) == figures(want.figures), want.employee_no
        assert got["department"]["name"] == want.department
        assert got["manager"] == ({"employee_no": want.manager_no, "name": want.manager_name}
                                  if want.manager_no else None)
    assert api_figures(body["totals"]) == figures(kpi_mod.total(expected))
    assert body["period"]["key"] == parse_period(period).key


def test_september_figures_as_a_person_reads_them(app, org):
    body = get(app, org["token"], "?period=2026-09").get_json()
    rows = {r["employee_no"]: r for r in body["rows"]}
    assert (rows["W1"]["due"], rows["W1"]["completed"], rows["W1"]["on_time"]) == (2, 2, 1)
    assert rows["W1"]["completion_rate"] == 100.0 and rows["W1"]["on_time_rate"] == 50.0
    assert rows["W1"]["department"] == {"code": "S1A", "name": "收银组"}
    assert (rows["W2"]["overdue"], rows["W2"]["overdue_working_days"]) == (1, 11)
    assert (rows["L1"]["completed"], rows["L1"]["overdue"]) == (0, 1)  # done only in October
    assert body["period"] == {"key": "2026-09", "kind": "month", "start": "2026-09-01",
                              "end": "2026-09-30", "as_of": "2026-09-30", "closed": True}
    running = get(app, org["token"], "?period=2026-10").get_json()["period"]
    assert (running["as_of"], running["closed"]) == ("2026-10-16", False)
    default = get(app, org["token"]).get_json()["period"]
    assert default["key"] == "2026-10"  # no period: the current month


def test_figures_match_the_kpi_download_hr_takes(app, org, client):
    assert client.login("hr").status_code == 302
    resp = client.get("/reports/kpi.csv?period=2026-09")
    assert resp.status_code == 200
    lines = list(csv.reader(io.StringIO(resp.get_data(as_text=True).lstrip("\ufeff"))))[1:]
    csv_rows = {line[1]: (int(line[8]), int(line[9]), int(line[10]), int(line[13]))
                for line in lines}
    body = get(app, org["token"], "?period=2026-09").get_json()
    assert {r["employee_no"]: (r["due"], r["completed"], r["on_time"], r["overdue"])
            for r in body["rows"]} == csv_rows


def test_team_view_is_the_kpi_modules_team_figures(app, org):
    body = get(app, org["token"], "?period=2026-09&view=team").get_json()
    teams = kpi_mod.team_kpis(db.session, module_rows("2026-09"))
    assert body["view"] == "team" and body["total"] == len(teams) == 2  # M1 and L1
    for got, want in zip(body["rows"], teams, strict=True):
        assert got["manager"] == {"employee_no": want.employee_no, "name": want.name}
        assert got["people"] == want.people
        assert api_figures(got) == figures(want.figures)
    m1 = next(r for r in body["rows"] if r["manager"]["employee_no"] == "M1")
    assert (m1["people"], m1["due"], m1["overdue"]) == (3, 4, 2)  # L1, W1, W2
    assert m1["department"] == {"code": "S1", "name": "一号店"}


def test_department_scope_and_paging(app, org):
    token = org["token"]
    body = get(app, token, "?period=2026-09&department=S1").get_json()
    expected = module_rows("2026-09", org["s1"].id)
    assert [r["employee_no"] for r in body["rows"]] == [r.employee_no for r in expected]
    assert "X1" not in {r["employee_no"] for r in body["rows"]}  # F1 is outside
    assert body["department"] == {"code": "S1", "name": "一号店"}
    assert api_figures(body["totals"]) == figures(kpi_mod.total(expected))

    everyone = module_rows("2026-09")
    page = get(app, token, "?period=2026-09&limit=2&offset=1").get_json()
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 1)
    assert [r["employee_no"] for r in page["rows"]] == [r.employee_no for r in everyone[1:3]]
    # the totals are over everyone in scope, not the page
    assert api_figures(page["totals"]) == figures(kpi_mod.total(everyone))
    past = get(app, token, "?period=2026-09&offset=10").get_json()
    assert past["rows"] == [] and past["total"] == 5


@pytest.mark.parametrize(("query", "status", "field"), [
    ("?period=2026-13", 400, "period"),
    ("?period=september", 400, "period"),
    ("?period=2026-Q5", 400, "period"),
    ("?view=boss", 400, "view"),
    ("?limit=0", 400, "limit"),
    ("?limit=5000", 400, "limit"),
    ("?department=NOPE", 422, "department"),
    ("?period=2026-09&colour=red", 400, "colour"),
])
def test_bad_input_is_named(app, org, query, status, field):
    resp = get(app, org["token"], query)
    assert resp.status_code == status, resp.get_json()
    error = resp.get_json()["error"]
    assert error["field"] == field
    if field == "period":
        assert "YYYY-MM" in error["message"] or "out of range" in error["message"]


def test_other_scopes_and_no_token_are_refused(app, org):
    assert app.test_client().get(URL).status_code == 401
    resp = get(app, make_token("risk:read", "risk:write", name="risk"), "?period=2026-09")
    assert resp.status_code == 403
    assert resp.get_json()["error"]["code"] == "insufficient_scope"
