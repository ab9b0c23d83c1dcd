"""Risk signals in, training gaps out (/api/v1/risk), as the risk system meets them: a
signal becomes assignments (source "risk", pointing at the signal) for the 在职 people
with a login in its scope, due in Chinese working days, never twice; the gaps per
department and topic match a hand-built situation."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from risk_support import assign, at, bearer, course, make_token, risk_type
from sqlalchemy import func, select

import integrations.risk.api as risk_api
from courses.models import Enrollment
from integrations.risk.models import RiskSignal
from lms.compliance.models import Assignment
from lms.extensions import db
from lms.ledger import LedgerEntry, verify
from lms.workday_overrides import load_calendar

# Received on Wednesday 30 September 2026, the eve of the National Day week (1-7 Oct
# off; Saturday 10 Oct is a make-up working day): 3 working days -> 10 Oct, 5 -> 13 Oct.
RECEIVED = date(2026, 9, 30)
DUE_3 = date(2026, 10, 10)
DUE_5 = date(2026, 10, 13)
URL = "/api/v1/risk/signals"


@pytest.fixture
def clock(monkeypatch):
    holder = {"now": at(RECEIVED)}
    monkeypatch.setattr(risk_api, "clock", lambda: holder["now"])
    return holder


@pytest.fixture
def org(app, people, clock):
    """HQ ⊃ store S1 ⊃ counter S1A; factory F1 elsewhere. Positions SA (店员), CLN.

    Reached by S1: e1 (S1), e2 (S1A). Not reached: e3 left, e4 without a login, e6 with
    a disabled login (all in S1); e5 is a 店员 in F1 (reached by the position only)."""
    hq = people.department("总部", code="HQ")
    s1 = people.department("一号店", parent=hq, code="S1")
    s1a = people.department("一号店收银组", parent=s1, code="S1A")
    f1 = people.department("工厂", code="F1")
    sa = people.position("店员", code="SA")
    cln = people.position("保洁", code="CLN")
    emps = {
        "e1": people.employee("店员甲", department=s1, position=sa, employee_no="E1"),
        "e2": people.employee("收银乙", department=s1a, position=cln, employee_no="E2"),
        "e3": people.employee("离职丙", department=s1, position=sa, employee_no="E3",
                              status="left"),
        "e4": people.employee("无账号丁", department=s1, position=sa, employee_no="E4"),
        "e5": people.employee("工厂店员戊", department=f1, position=sa, employee_no="E5"),
        "e6": people.employee("停用己", department=s1, position=sa, employee_no="E6"),
    }
    users = {key: people.user(key, "trainee", employee=emp, enabled=key != "e6")
             for key, emp in emps.items() if key != "e4"}
    ident = course("ID-01", "identity_verification")
    social = course("SI-01", "social_insurance")
    draft = course("DRAFT-01", "attendance", published=False)
    risk_type("identity_fraud", (ident, 3), (social, 5))
    risk_type("attendance_anomaly")
    risk_type("draft_only", (draft, 3))
    risk_type("social_insurance_gap", (social, 5))
    return {"users": users, "emps": emps, "ident": ident, "social": social, "draft": draft,
            "token": make_token("risk:write")}


def post(app, token: str, body: dict):
    return app.test_client().post(URL, json=body, headers=bearer(token))


def signal_body(kind: str = "department", code: str = "S1", **extra) -> dict:
    scope = {"kind": kind, **({"employee_no": code} if kind == "employee" else {"code": code})}
    return {"scope": scope, "risk_type": "identity_fraud", "severity": "high",
            "note": "门店发现冒名入职", **extra}


def risk_rows() -> list[Assignment]:
    db.session.expire_all()
    return list(db.session.scalars(select(Assignment).where(Assignment.source == "risk")
                                   .order_by(Assignment.user_id, Assignment.course_id)))


def reached(rows: list[Assignment]) -> set[tuple[str, str]]:
    return {(a.employee.employee_no, a.course.code) for a in rows}


def error_of(resp) -> dict:
    assert resp.mimetype == "application/json", resp.get_data(as_text=True)[:300]
    return resp.get_json()["error"]


# --- signals in --------------------------------------------------------------------------


def test_department_signal_reaches_subdepartments_due_in_working_days(app, org):
    resp = post(app, org["token"], signal_body())
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert (body["audience"], body["assigned"], body["already_assigned"]) == (2, 4, 0)
    assert body["unmapped"] is False and body["replayed"] is False
    assert body["scope"] == {"kind": "department", "code": "S1", "name": "一号店"}
    assert body["risk_type"]["code"] == "identity_fraud"
    assert [(c["course_code"], c["due_date"], c["due_working_days"], c["assigned"])
            for c in body["courses"]] == [("ID-01", DUE_3.isoformat(), 3, 2),
                                          ("SI-01", DUE_5.isoformat(), 5, 2)]
    assert body["progress"] == {"assigned": 4, "completed": 0, "open": 4, "overdue": 0,
                                "suspended": 0, "waived": 0}

    rows = risk_rows()
    # the sub-department's e2 is reached; the leaver, the person without a login, the
    # disabled login and the factory's 店员 are not
    assert reached(rows) == {("E1", "ID-01"), ("E1", "SI-01"), ("E2", "ID-01"),
                             ("E2", "SI-01")}
    signal = db.session.get(RiskSignal, body["id"])
    assert all(a.risk_signal_id == signal.id and a.status == "open" for a in rows)
    assert {(a.course.code, a.due_date) for a in rows} == {("ID-01", DUE_3), ("SI-01", DUE_5)}
    assert {a.trigger_date for a in rows} == {RECEIVED}
    assert all(a.enrollment_id is not None for a in rows)  # enrolled: "My learning" shows it
    assert all(a.rule_id is None and "identity_fraud" in a.reason for a in rows)

    [entry] = db.session.scalars(select(LedgerEntry).where(
        LedgerEntry.kind == "risk.signal_received")).all()
    assert entry.subject == f"risk_signal:{signal.id}" and signal.ledger_seq == entry.seq
    payload = json.loads(entry.payload)
    assert (payload["audience"], payload["assigned"], payload["already_assigned"]) == (2, 4, 0)
    assert payload["employee_nos"] == ["E1", "E2"]
    assert verify(db.session).ok


def test_position_signal_reaches_that_position_in_every_department(app, org):
    resp = post(app, org["token"], signal_body("position", "SA",
                                               risk_type="social_insurance_gap"))
    assert resp.status_code == 201
    assert resp.get_json()["scope"]["name"] == "店员"
    # E1 (S1) and E5 (F1) are 店员; E3 left, E4 has no login, E6's login is disabled
    assert reached(risk_rows()) == {("E1", "SI-01"), ("E5", "SI-01")}


def test_employee_signal_reaches_that_one_person(app, org):
    resp = post(app, org["token"], signal_body("employee", "E2"))
    assert resp.status_code == 201
    assert resp.get_json()["scope"] == {"kind": "employee", "code": "E2", "name": "收银乙"}
    assert reached(risk_rows()) == {("E2", "ID-01"), ("E2", "SI-01")}

    left = post(app, org["token"], signal_body("employee", "E3"))  # a leaver: recorded only
    assert left.status_code == 201
    assert (left.get_json()["audience"], left.get_json()["assigned"]) == (0, 0)
    assert "nothing was assigned" in left.get_json()["message"]


def test_live_assignments_are_never_duplicated(app, org):
    users = org["users"]
    assign(users["e1"], org["ident"], date(2026, 10, 20))  # HR assigned it by hand already
    first = post(app, org["token"], signal_body()).get_json()
    assert (first["assigned"], first["already_assigned"]) == (3, 1)
    assert [(c["course_code"], c["assigned"], c["already_assigned"])
            for c in first["courses"]] == [("ID-01", 1, 1), ("SI-01", 2, 0)]

    again = post(app, org["token"], signal_body(severity="critical"))  # no external_id
    assert again.status_code == 201  # a new signal, recorded; it assigns nothing new
    assert (again.get_json()["assigned"], again.get_json()["already_assigned"]) == (0, 4)
    db.session.expire_all()
    live = db.session.execute(
        select(Assignment.user_id, Assignment.course_id, func.count())
        .where(Assignment.status.in_(("open", "suspended")))
        .group_by(Assignment.user_id, Assignment.course_id)).all()
    assert len(live) == 4 and all(n == 1 for _u, _c, n in live)
    assert db.session.scalar(select(func.count()).select_from(RiskSignal)) == 2


def test_external_id_makes_a_repeat_return_the_first_signal(app, org):
    first = post(app, org["token"], signal_body(external_id="risk-42"))
    assert first.status_code == 201
    again = post(app, org["token"], signal_body("employee", "E5", external_id="risk-42",
                                                severity="low"))
    assert again.status_code == 200
    body = again.get_json()
    assert body["id"] == first.get_json()["id"] and body["replayed"] is True
    assert body["severity"] == "high" and body["scope"]["code"] == "S1"  # the first one
    assert body["assigned"] == 4
    assert len(risk_rows()) == 4
    assert db.session.scalar(select(func.count()).select_from(RiskSignal)) == 1
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry).where(
        LedgerEntry.kind == "risk.signal_received")) == 1


def test_a_completed_course_is_learnt_again_in_a_fresh_round(app, org):
    """The signal says the training did not hold: someone who completed it re-learns it
    (next round, new enrolment); the completed round stays on record."""
    done = assign(org["users"]["e1"], org["ident"], date(2026, 9, 10), status="completed",
                  completed=at(date(2026, 9, 8)))
    post(app, org["token"], signal_body("employee", "E1"))
    db.session.expire_all()
    rounds = db.session.scalars(select(Assignment).where(
        Assignment.user_id == org["users"]["e1"].id,
        Assignment.course_id == org["ident"].id).order_by(Assignment.cycle)).all()
    assert [(a.cycle, a.status, a.source) for a in rounds] == [
        (1, "completed", "manual"), (2, "open", "risk")]
    old = db.session.get(Enrollment, done.enrollment_id)
    new = db.session.get(Enrollment, rounds[1].enrollment_id)
    assert old.superseded_at is not None and old.completed_at is not None
    assert new.id != old.id and new.cycle == 2 and new.completed_at is None


def test_unknown_names_are_refused_naming_the_field(app, org):
    cases = [
        (signal_body(risk_type="ghost_risk"), "risk_type"),
        (signal_body("department", "NOPE"), "scope.code"),
        (signal_body("position", "NOPE"), "scope.code"),
        (signal_body("employee", "E999"), "scope.employee_no"),
    ]
    for body, field in cases:
        resp = post(app, org["token"], body)
        assert resp.status_code == 422, (field, resp.get_json())
        error = error_of(resp)
        assert error["field"] == field
        assert "NOPE" in error["message"] or "E999" in error["message"] \
            or "ghost_risk" in error["message"]
    assert db.session.scalar(select(func.count()).select_from(RiskSignal)) == 0
    assert risk_rows() == []


@pytest.mark.parametrize(("change", "field"), [
    ({"severity": None}, "severity"),
    ({"severity": "urgent"}, "severity"),
    ({"scope": {"kind": "employee", "code": "E1"}}, "scope.code"),  # and no employee_no
    ({"scope": {"kind": "employee", "code": "E1"}}, "scope.employee_no"),
    ({"scope": {"kind": "department"}}, "scope.code"),
    ({"scope": {"kind": "team", "code": "S1"}}, "scope.kind"),
    ({"priority": "high"}, "priority"),
    ({"occurred_at": "2026-09-29T10:00:00"}, "occurred_at"),  # no time zone
    ({"note": "长" * 2001}, "note"),
    ({"note": "a\x00b"}, "note"),  # PostgreSQL refuses NUL in text: never a 500
    ({"risk_type": "identity\nfraud"}, "risk_type"),
    ({"external_id": ""}, "external_id"),
])
def test_malformed_bodies_are_400_naming_the_field(app, org, change, field):
    body = signal_body()
    for key, value in change.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    resp = post(app, org["token"], body)
    assert resp.status_code == 400, resp.get_json()
    error = error_of(resp)
    assert field in {d["field"] for d in error["details"]}, error
    assert error["field"] == error["details"][0]["field"]
    assert risk_rows() == []


def test_not_json_and_wrong_tokens(app, org):
    c = app.test_client()
    resp = c.post(URL, data="scope=S1", headers=bearer(org["token"]))
    assert resp.status_code == 415
    assert c.post(URL, json=signal_body()).status_code == 401
    reader = make_token("risk:read", name="dashboard")
    resp = c.post(URL, json=signal_body(), headers=bearer(reader))
    assert resp.status_code == 403 and error_of(resp)["code"] == "insufficient_scope"
    resp = c.get(f"{URL}/1", headers=bearer(reader))
    assert resp.status_code == 403
    assert risk_rows() == []


def test_an_unmapped_risk_type_is_recorded_and_assigns_nothing(app, org):
    resp = post(app, org["token"], signal_body(risk_type="attendance_anomaly"))
    assert resp.status_code == 201
    body = resp.get_json()
    assert body["unmapped"] is True and body["assigned"] == 0 and body["courses"] == []
    assert "nothing was assigned" in body["message"]
    draft = post(app, org["token"], signal_body(risk_type="draft_only")).get_json()
    assert draft["unmapped"] is True
    assert [(c["course_code"], c["skipped"], c["due_date"]) for c in draft["courses"]] == [
        ("DRAFT-01", "no_published_version", None)]
    assert risk_rows() == []
    assert db.session.scalar(select(func.count()).select_from(RiskSignal)) == 2


def test_a_signal_reads_back_with_its_progress(app, org, clock):
    token = org["token"]
    signal_id = post(app, token, signal_body(occurred_at="2026-09-29T09:30:00+08:00")
                     ).get_json()["id"]
    rows = risk_rows()
    done = next(a for a in rows if a.employee.employee_no == "E1" and a.course.code == "ID-01")
    done.status, done.completed_at = "completed", at(date(2026, 10, 9))
    db.session.commit()
    clock["now"] = at(DUE_3 + timedelta(days=2))  # Monday 12 Oct: ID-01 is overdue
    resp = app.test_client().get(f"{URL}/{signal_id}", headers=bearer(token))
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["occurred_at"].startswith("2026-09-29T01:30:00")
    assert body["progress"] == {"assigned": 4, "completed": 1, "open": 3, "overdue": 1,
                                "suspended": 0, "waived": 0}
    assert [(c["course_code"], c["progress"]["completed"], c["progress"]["overdue"])
            for c in body["courses"]] == [("ID-01", 1, 1), ("SI-01", 0, 0)]
    missing = app.test_client().get(f"{URL}/{signal_id + 100}", headers=bearer(token))
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"


def test_a_calendar_year_nobody_entered_is_refused_not_guessed(app, org, clock):
    clock["now"] = at(date(2099, 12, 30))
    resp = post(app, org["token"], signal_body())
    assert resp.status_code == 422
    assert "2099" in error_of(resp)["message"] or "2100" in error_of(resp)["message"]
    assert db.session.scalar(select(func.count()).select_from(RiskSignal)) == 0


# --- training gaps out -------------------------------------------------------------------

GAPS = "/api/v1/risk/training-gaps"
TODAY = date(2026, 10, 16)


@pytest.fixture
def gaps(app, org, people, clock):
    """Hand-built, as of Friday 16 Oct 2026:

    - S1: E1 ID-01 completed, SI-01 open and overdue (due 9 Oct: 6 working days late,
      make-up Saturday 10 Oct included);
      E7 ID-01 open, due 20 Oct; E3 (left) ID-01 open: not counted.
    - S1A: E2 ID-01 round 1 completed, round 2 open, overdue (due 12 Oct: 4 days late).
    - F1: E5 SI-01 completed; E5 ID-01 waived: not counted."""
    clock["now"] = at(TODAY)
    u = org["users"]
    e7 = people.employee("新店员庚", department=org["emps"]["e1"].department,
                         employee_no="E7")
    u["e7"] = people.user("e7", "trainee", employee=e7)
    ident, social = org["ident"], org["social"]
    assign(u["e1"], ident, date(2026, 9, 25), status="completed", completed=at(date(2026, 9, 24)))
    assign(u["e1"], social, date(2026, 10, 9))
    assign(u["e7"], ident, date(2026, 10, 20))
    assign(u["e3"], ident, date(2026, 10, 1))
    assign(u["e2"], ident, date(2026, 9, 1), status="completed", completed=at(date(2026, 8, 30)),
           superseded=at(date(2026, 10, 1)))
    assign(u["e2"], ident, date(2026, 10, 12), cycle=2)
    assign(u["e5"], social, date(2026, 10, 9), status="completed", completed=at(date(2026, 10, 9)))
    assign(u["e5"], ident, date(2026, 10, 9), status="waived")
    return make_token("risk:read", name="risk-dashboard")


def test_gaps_per_department_and_topic_match_the_situation(app, gaps):
    resp = app.test_client().get(GAPS, headers=bearer(gaps))
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["as_of"] == TODAY.isoformat() and body["people"] is None
    got = {(r["department"]["code"], r["topic"]): (
        r["people"], r["people_open"], r["people_overdue"], r["assigned"], r["completed"],
        r["open"], r["overdue"]) for r in body["rows"]}
    assert got == {
        ("S1", "identity_verification"): (2, 1, 0, 2, 1, 1, 0),
        ("S1", "social_insurance"): (1, 1, 1, 1, 0, 1, 1),
        ("S1A", "identity_verification"): (1, 1, 1, 1, 0, 1, 1),
        ("F1", "social_insurance"): (1, 0, 0, 1, 1, 0, 0),
    }
    rows = {(r["department"]["code"], r["topic"]): r for r in body["rows"]}
    assert rows[("S1", "identity_verification")]["completion_rate"] == 50.0
    assert rows[("S1", "identity_verification")]["risk_types"] == ["identity_fraud"]
    assert rows[("S1", "social_insurance")]["risk_types"] == ["identity_fraud",
                                                              "social_insurance_gap"]
    assert [(t["topic"], t["people"], t["assigned"], t["completed"], t["open"], t["overdue"])
            for t in body["topics"]] == [("identity_verification", 3, 3, 1, 2, 1),
                                         ("social_insurance", 2, 2, 1, 1, 1)]


def test_gaps_narrow_to_a_department_subtree_topic_or_risk_type(app, gaps):
    c = app.test_client()
    s1 = c.get(f"{GAPS}?department=S1", headers=bearer(gaps)).get_json()
    assert {(r["department"]["code"], r["topic"]) for r in s1["rows"]} == {
        ("S1", "identity_verification"), ("S1", "social_insurance"),
        ("S1A", "identity_verification")}
    assert s1["department"] == {"code": "S1", "name": "一号店"}
    topic = c.get(f"{GAPS}?topic=social_insurance", headers=bearer(gaps)).get_json()
    assert {r["department"]["code"] for r in topic["rows"]} == {"S1", "F1"}
    by_type = c.get(f"{GAPS}?risk_type=social_insurance_gap", headers=bearer(gaps)).get_json()
    assert {(r["department"]["code"], r["topic"]) for r in by_type["rows"]} == {
        ("S1", "social_insurance"), ("F1", "social_insurance")}


def test_gaps_list_the_untrained_with_working_days_overdue(app, gaps):
    c = app.test_client()
    body = c.get(f"{GAPS}?include_people=true", headers=bearer(gaps)).get_json()
    assert body["people_total"] == 3
    assert [(p["employee_no"], p["course_code"], p["due_date"], p["overdue"],
             p["days_overdue"]) for p in body["people"]] == [
        ("E1", "SI-01", "2026-10-09", True, 6),  # Sat 10 (调休), 12-16 Oct
        ("E2", "ID-01", "2026-10-12", True, 4),
        ("E7", "ID-01", "2026-10-20", False, 0)]
    assert load_calendar(db.session).workdays_between(date(2026, 10, 9), TODAY) == 6
    late = c.get(f"{GAPS}?include_people=true&overdue_only=true&people_limit=1&people_offset=1",
                 headers=bearer(gaps)).get_json()
    assert late["people_total"] == 2
    assert [p["employee_no"] for p in late["people"]] == ["E2"]


def test_gaps_refuse_unknown_names_bad_values_and_writers(app, gaps):
    c = app.test_client()
    resp = c.get(f"{GAPS}?department=NOPE", headers=bearer(gaps))
    assert resp.status_code == 422 and error_of(resp)["field"] == "department"
    resp = c.get(f"{GAPS}?risk_type=ghost", headers=bearer(gaps))
    assert resp.status_code == 422 and error_of(resp)["field"] == "risk_type"
    resp = c.get(f"{GAPS}?topic=weather", headers=bearer(gaps))
    assert resp.status_code == 400 and error_of(resp)["field"] == "topic"
    resp = c.get(f"{GAPS}?people_limit=0", headers=bearer(gaps))
    assert resp.status_code == 400 and error_of(resp)["field"] == "people_limit"
    writer = make_token("risk:write", name="sender")
    assert c.get(GAPS, headers=bearer(writer)).status_code == 403
