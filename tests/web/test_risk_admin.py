"""The risk pages as people meet them: an admin keeps the risk types and the courses each
one calls for (forms with CSRF tokens, every bad field named); HR may look, not change;
HR and trainers follow the signals received and what their training did; the
assignment pages name a risk signal as the source; the demo seeds the four types."""

from __future__ import annotations

import json
import re
from datetime import date

import pytest
from risk_support import at, bearer, course, make_token
from sqlalchemy import func, select

import integrations.risk.api as risk_api
import integrations.risk.views as risk_views
from integrations.risk.models import RiskSignal, RiskType, RiskTypeCourse
from lms.compliance.models import Assignment
from lms.extensions import db
from lms.ledger import LedgerEntry


def field_error(html: str, name: str) -> str:
    """The error shown under the form field ``name`` ("" when none)."""
    match = re.search(rf'<div class="field has-error">\s*<label for="{name}"[^>]*>.*?</label>'
                      rf'.*?<p class="error">([^<]*)</p>', html, re.S)
    return match.group(1) if match else ""


def login(people, client, username: str, *roles: str, employee=None):
    user = people.user(username, *roles, employee=employee)
    user.locale = "en"  # messages asserted in English whatever the translations say
    db.session.commit()
    assert client.login(username).status_code == 302
    return user


@pytest.fixture
def admin(people, client):
    return login(people, client, "root", "admin")


@pytest.fixture
def courses(app):
    return course("ID-01", "identity_verification"), course("SI-01", "social_insurance"), \
        course("DRAFT-01", "attendance", published=False)


def ledger_kinds() -> list[str]:
    return list(db.session.scalars(select(LedgerEntry.kind).order_by(LedgerEntry.seq)))


def create_type(client, **fields):
    data = {"code": "identity_fraud", "name_zh": "冒名入职", "name_en": "Identity fraud",
            "description": ""} | fields
    return client.post("/admin/risk/new", data, token_from="/admin/risk/new")


def test_only_admins_change_risk_types_and_hr_may_look(app, people, make_client, courses):
    risk = RiskType(code="identity_fraud", name_zh="冒名入职", name_en="Identity fraud")
    db.session.add(risk)
    db.session.commit()
    urls = ["/admin/risk", "/admin/risk/new", f"/admin/risk/{risk.id}", "/risk/signals"]

    trainee = make_client()
    login(people, trainee, "t1", "trainee")
    for url in urls:
        assert trainee.get(url).status_code == 403, url
    token = trainee.csrf("/")
    for url in ("/admin/risk/new", f"/admin/risk/{risk.id}", f"/admin/risk/{risk.id}/courses",
                f"/admin/risk/{risk.id}/courses/{courses[0].id}/remove"):
        resp = trainee.c.post(url, data={"csrf_token": token, "code": "x", "course_id": "1"})
        assert resp.status_code == 403, url

    hr = make_client()
    login(people, hr, "hr1", "hr")
    page = hr.get("/admin/risk")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="risk-type-identity_fraud"' in html and 'id="read-only"' in html
    assert 'id="add-risk-type"' not in html
    detail = hr.get(f"/admin/risk/{risk.id}").get_data(as_text=True)
    assert 'id="mapping-form"' not in detail and 'id="risk-type-form"' not in detail
    assert hr.get("/admin/risk/new").status_code == 403
    token = hr.csrf("/admin/risk")
    assert hr.c.post(f"/admin/risk/{risk.id}", data={
        "csrf_token": token, "name_zh": "改", "name_en": "x"}).status_code == 403
    assert hr.c.post(f"/admin/risk/{risk.id}/courses", data={
        "csrf_token": token, "course_id": courses[0].id,
        "due_working_days": "3"}).status_code == 403
    db.session.expire_all()
    assert db.session.get(RiskType, risk.id).name_zh == "冒名入职"
    assert db.session.scalar(select(func.count()).select_from(RiskTypeCourse)) == 0


def test_forms_need_the_csrf_token(client, admin, courses):
    resp = client.c.post("/admin/risk/new", data={"code": "identity_fraud", "name_zh": "冒名",
                                                   "name_en": "Identity fraud"})
    assert resp.status_code == 400
    assert db.session.scalar(select(func.count()).select_from(RiskType)) == 0


def test_admin_creates_a_type_every_bad_field_named(client, admin, courses):
    resp = create_type(client, code="Identity Fraud", name_zh="", name_en="x" * 101)
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert "lower-case letters" in field_error(html, "code")
    assert field_error(html, "name_zh") == "Enter a name."
    assert "100 characters" in field_error(html, "name_en")
    assert db.session.scalar(select(func.count()).select_from(RiskType)) == 0
    nul = create_type(client, name_zh="冒名\x00入职", description="a\x00b")
    assert nul.status_code == 422  # never a NUL into PostgreSQL (a 500 there)
    assert "one line" in field_error(nul.get_data(as_text=True), "name_zh")
    assert "NUL" in field_error(nul.get_data(as_text=True), "description")

    ok = create_type(client)
    assert ok.status_code == 302
    risk = db.session.scalar(select(RiskType))
    assert ok.headers["Location"].endswith(f"/admin/risk/{risk.id}")
    assert (risk.code, risk.name_zh, risk.name_en) == ("identity_fraud", "冒名入职",
                                                       "Identity fraud")
    taken = create_type(client, name_zh="重复")
    assert taken.status_code == 422
    assert "identity_fraud is taken" in field_error(taken.get_data(as_text=True), "code")
    assert ledger_kinds() == ["risk.type_created"]


def test_admin_edits_names_but_not_the_code(client, admin, courses):
    create_type(client)
    risk = db.session.scalar(select(RiskType))
    url = f"/admin/risk/{risk.id}"
    bad = client.post(url, {"name_zh": " ", "name_en": "Identity fraud"}, token_from=url)
    assert bad.status_code == 422
    assert field_error(bad.get_data(as_text=True), "name_zh") == "Enter a name."
    ok = client.post(url, {"code": "hacked", "name_zh": "冒名顶替入职", "name_en": "Impostors",
                           "description": "借用他人身份证入职"}, token_from=url)
    assert ok.status_code == 302
    db.session.expire_all()
    risk = db.session.get(RiskType, risk.id)
    assert (risk.code, risk.name_zh, risk.name_en) == ("identity_fraud", "冒名顶替入职",
                                                       "Impostors")
    assert ledger_kinds() == ["risk.type_created", "risk.type_updated"]
    entry = db.session.scalar(select(LedgerEntry).where(LedgerEntry.kind == "risk.type_updated"))
    assert json.loads(entry.payload)["changes"]["name_zh"] == {"old": "冒名入职",
                                                                "new": "冒名顶替入职"}


def test_admin_maps_courses_with_due_days(client, admin, courses):
    ident, _social, draft = courses
    create_type(client)
    risk = db.session.scalar(select(RiskType))
    url = f"/admin/risk/{risk.id}"
    add = f"{url}/courses"

    for data, field, message in [
        ({"course_id": "", "due_working_days": "5"}, "course_id", "Choose a course."),
        ({"course_id": ident.id, "due_working_days": "0"}, "due_working_days", "between 1"),
        ({"course_id": ident.id, "due_working_days": "251"}, "due_working_days", "between 1"),
        ({"course_id": ident.id, "due_working_days": "abc"}, "due_working_days", "integer"),
    ]:
        resp = client.post(add, data, token_from=url)
        assert resp.status_code == 422, data
        assert message in field_error(resp.get_data(as_text=True), field), data
    assert db.session.scalar(select(func.count()).select_from(RiskTypeCourse)) == 0

    for cid, days in ((ident.id, 5), (draft.id, 3), (ident.id, 7)):  # again: new days
        assert client.post(add, {"course_id": cid, "due_working_days": str(days)},
                           token_from=url).status_code == 302
    db.session.expire_all()
    mapped = {m.course.code: m.due_working_days
              for m in db.session.scalars(select(RiskTypeCourse))}
    assert mapped == {"ID-01": 7, "DRAFT-01": 3}
    html = client.get(url).get_data(as_text=True)
    assert 'data-course="ID-01" data-days="7"' in html
    assert "No published version: skipped by signals" in html

    gone = client.post(f"{url}/courses/{draft.id}/remove", {}, token_from=url)
    assert gone.status_code == 302
    again = client.post(f"{url}/courses/{draft.id}/remove", {}, token_from=url)
    assert again.status_code == 404
    db.session.expire_all()
    assert [m.course.code for m in db.session.scalars(select(RiskTypeCourse))] == ["ID-01"]
    assert ledger_kinds() == ["risk.type_created", "risk.mapping_set", "risk.mapping_set",
                              "risk.mapping_set", "risk.mapping_removed"]
    listing = client.get("/admin/risk").get_data(as_text=True)
    assert 'id="risk-type-identity_fraud" data-courses="1"' in listing


def test_signals_page_shows_results_and_assignments_name_their_source(
        app, people, make_client, courses, monkeypatch):
    monkeypatch.setattr(risk_api, "clock", lambda: at(date(2026, 9, 30)))
    monkeypatch.setattr(risk_views, "today", lambda: date(2026, 10, 12))
    ident = courses[0]
    store = people.department("一号店", code="S1")
    for no in ("E1", "E2"):
        emp = people.employee(f"店员{no}", department=store, employee_no=no)
        people.user(no.lower(), "trainee", employee=emp)
    risk = RiskType(code="identity_fraud", name_zh="冒名入职", name_en="Identity fraud")
    risk.courses = [RiskTypeCourse(course_id=ident.id, due_working_days=3)]
    db.session.add(risk)
    db.session.commit()
    resp = app.test_client().post("/api/v1/risk/signals", headers=bearer(
        make_token("risk:write")), json={"scope": {"kind": "department", "code": "S1"},
                                         "risk_type": "identity_fraud", "severity": "high"})
    assert resp.status_code == 201
    signal = db.session.get(RiskSignal, resp.get_json()["id"])
    first = db.session.scalar(select(Assignment).order_by(Assignment.id))
    first.status, first.completed_at = "completed", at(date(2026, 10, 9))
    db.session.commit()

    for role in ("hr", "trainer"):
        c = make_client()
        login(people, c, f"{role}1", role)
        page = c.get("/risk/signals")
        assert page.status_code == 200, role
        html = page.get_data(as_text=True)
        # due 10 Oct; on 12 Oct one is done, the other open and overdue
        assert (f'id="signal-{signal.id}" data-assigned="2" data-already="0" '
                'data-completed="1" data-open="1" data-overdue="1"') in html
        detail = c.get(f"/risk/signals/{signal.id}").get_data(as_text=True)
        assert 'data-course="ID-01" data-completed="1" data-open="1" data-overdue="1"' in detail
        assert 'data-employee-no="E2" data-status="open" data-overdue="true"' in detail

    hr = make_client()
    login(people, hr, "hr2", "hr")
    html = hr.get(f"/compliance/assignments/{first.id}").get_data(as_text=True)
    assert 'data-source="risk"' in html and f"/risk/signals/{signal.id}" in html
    listing = hr.get("/compliance/assignments").get_data(as_text=True)
    assert listing.count('data-source="risk"') == 2
    assert hr.get("/risk/signals/999").status_code == 404


def test_demo_seeds_the_four_risk_types_and_a_signal(app):
    from integrations.risk.demo import load_risk_demo
    from lms.demo import load_demo

    assert load_demo(db.session, app.extensions["id_vault"])
    report = load_risk_demo(db.session, now=at(date(2026, 9, 30)))
    db.session.commit()
    types = {t.code: sorted(m.course.code for m in t.courses)
             for t in db.session.scalars(select(RiskType))}
    assert types == {"identity_fraud": ["RISK-ID-01"], "social_insurance_gap": ["RISK-SI-01"],
                     "attendance_anomaly": [], "performance_dispute": ["RISK-PERF-01"]}
    assert report.types == 4 and report.assigned >= 2
    assigned = {a.user.username for a in db.session.scalars(
        select(Assignment).where(Assignment.source == "risk"))}
    assert {"trainee", "manager"} <= assigned  # they work in the assembly workshop
    again = load_risk_demo(db.session, now=at(date(2026, 9, 30)))
    assert again.skipped and db.session.scalar(select(func.count()).select_from(RiskSignal)) == 1
