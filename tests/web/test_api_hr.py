"""/api/v1/hr as the HR system meets it: batch upsert by employee_no (validated in full,
applied all or nothing, idempotent), the HMAC-signed webhook (good, bad, stale, replayed),
the assignment engine reacting to the changes (position change, 自离, new hires), and
each employee's training record for the HR capability file."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from exam_support import enrol, exam_lesson, make_bank, make_exam_course
from sqlalchemy import func, select
from support import PASSWORD

import integrations.hr.api as hr_api
from assessments import exam_taking, signing
from assessments.policies import PolicyVersion, Signature
from courses.authoring import publish_version
from courses.models import Course, CourseVersion, Enrollment, Lesson
from integrations.housekeeping import prune_integration_logs
from integrations.hr.models import HrWebhookReceipt
from integrations.signing import sign
from integrations.tokens import issue_token, revoke_token
from lms.auth.throttle import ThrottlePolicy
from lms.compliance.engine import evaluate_rule, run_assignment_tick
from lms.compliance.models import Assignment, AssignmentRule, RuleDepartment, RulePosition
from lms.extensions import db
from lms.ledger import LedgerEntry, verify
from lms.people.models import Employee
from lms.workdays import default_calendar

CAL = default_calendar()
# Monday 2026-09-28, 10:00 Beijing time (7 working days later is 2026-10-13).
NOW = datetime(2026, 9, 28, 2, 0, tzinfo=UTC)
SECRET = "hr-system-shared-secret-0123456789"
BATCH = "/api/v1/hr/employees/batch"
WEBHOOK = "/api/v1/hr/webhook"


def record_url(no: str) -> str:
    return f"/api/v1/hr/employees/{no}/training-record"


def id_number(first17: str) -> str:
    """A valid 18-digit ID number (ISO 7064 MOD 11-2 check character)."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(d) * w for d, w in zip(first17, weights, strict=True))
    return first17 + "10X98765432"[total % 11]


ID_E10 = id_number("11010519900307123")


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    monkeypatch.setattr(hr_api, "clock", lambda: NOW)


@pytest.fixture
def org(people):
    hq = people.department("总部", code="HQ")
    retail = people.department("零售事业部", parent=hq, code="RT")
    factory = people.department("工厂", parent=hq, code="MF")
    clerk = people.position("店员", code="CLERK")
    cashier = people.position("收银员", code="CASHIER")
    boss = people.employee("王店长", department=retail, employee_no="E1")
    clerk_emp = people.employee("李店员", department=retail, position=clerk, manager=boss,
                                employee_no="E2")
    users = {"E1": people.user("ue1", "trainee", "manager", employee=boss),
             "E2": people.user("ue2", "trainee", employee=clerk_emp)}
    return {"hq": hq, "retail": retail, "factory": factory, "clerk": clerk,
            "cashier": cashier, "users": users}


def token(*scopes: str, name: str = "hr-system") -> str:
    issued = issue_token(db.session, name=name, scopes=list(scopes), actor_id=None)
    db.session.commit()
    return issued.secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def row(no: str, **kw) -> dict:
    base = {"employee_no": no, "name": f"员工{no}", "department": "RT", "status": "active",
            "hire_date": "2024-03-01"}
    return {**base, **kw}


def ledger_count(kind: str | None = None) -> int:
    stmt = select(func.count()).select_from(LedgerEntry)
    if kind is not None:
        stmt = stmt.where(LedgerEntry.kind == kind)
    return db.session.scalar(stmt)


def employee(no: str) -> Employee | None:
    return db.session.scalar(select(Employee).where(Employee.employee_no == no))


def error_of(resp) -> dict:
    assert resp.mimetype == "application/json", resp.get_data(as_text=True)[:300]
    return resp.get_json()["error"]


def post_batch(app, secret: str, rows: list[dict]):
    return app.test_client().post(BATCH, json={"employees": rows}, headers=bearer(secret))


def course_with_rule(code: str, *, position=None, department=None, days: int = 7,
                     **kw) -> AssignmentRule:
    """A published one-lesson course and a rule assigning it (by position or department)."""
    course = Course(code=code, title_zh=f"课程{code}", risk_topic="identity_verification")
    version = CourseVersion(course=course, number=1, status="draft")
    db.session.add_all([course, version])
    db.session.flush()
    db.session.add(Lesson(version=version, position=1, kind="document", title="阅读",
                          body="劳动合同应当以书面形式订立。"))
    db.session.flush()
    version.status, version.content_hash = "published", "ab" * 32
    rule = AssignmentRule(name=f"规则-{code}", course_id=course.id, due_working_days=days,
                          effective_from=date(2026, 9, 1), **kw)
    db.session.add(rule)
    db.session.flush()
    if position is not None:
        db.session.add(RulePosition(rule_id=rule.id, position_id=position.id))
    if department is not None:
        db.session.add(RuleDepartment(rule_id=rule.id, department_id=department.id))
    db.session.commit()
    return rule


def assignments_of(no: str) -> list[Assignment]:
    return list(db.session.scalars(select(Assignment).join(Employee).where(
        Employee.employee_no == no).order_by(Assignment.id)))


# --- batch upsert ------------------------------------------------------------------------

def test_batch_creates_and_updates_and_the_same_batch_again_changes_nothing(app, org):
    secret = token("hr:write")
    rows = [row("E10", name="赵新人", position="CLERK", manager="E1", status="在职",
                hire_date="2026-09-21", email="zhao@example.com", id_number=ID_E10,
                tags=["试用期", "外派"]),
            row("E2", name="李店员", position="店员", manager="E1", status="active",
                email="li@example.com")]
    before = ledger_count()
    resp = post_batch(app, secret, rows)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert (body["created"], body["updated"], body["unchanged"]) == (1, 1, 0)
    assert body["rows"] == [{"employee_no": "E10", "result": "created"},
                            {"employee_no": "E2", "result": "updated"}]
    text = resp.get_data(as_text=True)
    assert ID_E10 not in text and ID_E10[-4:] not in text  # never echoed, not even masked

    new = employee("E10")
    assert (new.name, new.department.code, new.position.code, new.manager.employee_no,
            new.status, new.hire_date, new.tags) == (
        "赵新人", "RT", "CLERK", "E1", "active", date(2026, 9, 21), ["外派", "试用期"])
    assert new.id_number_masked == "1101**********" + ID_E10[-4:]
    assert ID_E10.encode() not in bytes(new.id_number_cipher)  # encrypted at rest
    assert employee("E2").email == "li@example.com"

    [entry] = db.session.scalars(select(LedgerEntry).where(
        LedgerEntry.kind == "hr.sync_applied"))
    payload = json.loads(entry.payload)
    assert entry.seq == body["ledger_seq"]
    assert (payload["via"], payload["token_name"], payload["created"], payload["updated"],
            payload["unchanged"]) == ("batch", "hr-system", 1, 1, 0)
    assert payload["created_employee_nos"] == ["E10"] and len(payload["sha256"]) == 64
    assert ID_E10 not in entry.payload
    assert ledger_count() == before + 1  # one entry for the whole batch

    again = post_batch(app, secret, rows)
    assert again.status_code == 200
    body2 = again.get_json()
    assert (body2["created"], body2["updated"], body2["unchanged"]) == (0, 0, 2)
    assert {r["result"] for r in body2["rows"]} == {"unchanged"}
    assert body2["ledger_seq"] is None
    assert ledger_count("hr.sync_applied") == 1
    assert verify(db.session).ok


def test_omitted_fields_keep_and_explicit_nulls_clear(app, org):
    secret = token("hr:write")
    resp = post_batch(app, secret, [row("E2", name="李店员", email="li@example.com",
                                        tags=["外派"])])
    assert resp.get_json()["updated"] == 1
    # position and manager omitted: kept
    resp = post_batch(app, secret, [row("E2", name="李店员")])
    assert resp.get_json()["unchanged"] == 1
    e2 = employee("E2")
    assert (e2.position.code, e2.manager.employee_no, e2.email, e2.tags) == (
        "CLERK", "E1", "li@example.com", ["外派"])
    resp = post_batch(app, secret, [row("E2", name="李店员", position=None, manager=None,
                                        email=None, tags=None)])
    assert resp.get_json()["rows"] == [{"employee_no": "E2", "result": "updated"}]
    db.session.expire_all()
    e2 = employee("E2")
    assert (e2.position_id, e2.manager_id, e2.email, e2.tags) == (None, None, None, [])


def test_one_bad_row_writes_nothing_and_every_problem_is_named(app, org, people):
    other = people.employee("周某", department=org["factory"], employee_no="E7")
    other.id_number_index = app.extensions["id_vault"].blind_index(ID_E10)
    db.session.commit()
    secret = token("hr:write")
    before = ledger_count()
    resp = post_batch(app, secret, [
        row("E20", name="新员工"),
        row("E21", department="NOPE"),
        row("E20", manager="E999", position="NOPE-POS"),
        row("E22", id_number=ID_E10),
        row("E2", manager="E2"),
    ])
    assert resp.status_code == 422
    error = error_of(resp)
    assert error["code"] == "unprocessable" and error["field"] == "employees[1].department"
    fields = {d["field"] for d in error["details"]}
    assert fields == {"employees[1].department", "employees[2].employee_no",
                      "employees[2].position", "employees[2].manager",
                      "employees[3].id_number", "employees[4].manager"}
    messages = " ".join(d["message"] for d in error["details"])
    assert "employees[0]" in messages and "E7" in messages  # which row, whose ID number
    assert ID_E10 not in resp.get_data(as_text=True)  # masked in the message
    assert employee("E20") is None and employee("E22") is None
    assert employee("E2").manager.employee_no == "E1"
    assert ledger_count() == before


@pytest.mark.parametrize(("rows", "field"), [
    ([row("E30"), row("E31"), row("E32", hire_date="2026/09/01")], "employees[2].hire_date"),
    ([row("E30", hire_date="2026-02-30")], "employees[0].hire_date"),
    ([row("E30", hire_date=20260901)], "employees[0].hire_date"),
    ([row("E30", status="在岗")], "employees[0].status"),
    ([row("E30", departmnet="RT")], "employees[0].departmnet"),
    ([row("E 30")], "employees[0].employee_no"),
    ([{k: v for k, v in row("E30").items() if k != "name"}], "employees[0].name"),
    ([], "employees"),
    ([row(f"E{i}") for i in range(1001)], "employees"),
])
def test_malformed_rows_are_400_naming_the_field_path(app, org, rows, field):
    resp = post_batch(app, token("hr:write"), rows)
    assert resp.status_code == 400
    error = error_of(resp)
    assert (error["code"], error["field"]) == ("validation_failed", field)
    assert ledger_count("hr.sync_applied") == 0


def test_status_labels_are_read_like_the_csv_import(app, org):
    secret = token("hr:write")
    resp = post_batch(app, secret, [row("E2", name="李店员", status="待离职")])
    assert resp.status_code == 200
    assert employee("E2").status == "leaving"


def test_a_body_that_is_not_json_is_refused(app, org):
    c = app.test_client()
    resp = c.post(BATCH, data="employees=1", headers=bearer(token("hr:write")))
    assert resp.status_code == 415


# --- tokens and scopes -------------------------------------------------------------------

def test_tokens_and_scopes(app, org):
    c = app.test_client()
    body = {"employees": [row("E40")]}
    assert error_of(c.post(BATCH, json=body))["status"] == 401
    reader = token("hr:read", name="reader")
    resp = c.post(BATCH, json=body, headers=bearer(reader))
    assert (resp.status_code, error_of(resp)["code"]) == (403, "insufficient_scope")
    writer = token("hr:write", name="writer")
    resp = c.get(record_url("E2"), headers=bearer(writer))
    assert resp.status_code == 403
    resp = c.get(record_url("E2"), headers=bearer(token("risk:read", name="risk-reader")))
    assert resp.status_code == 403  # hr:read only
    assert c.get(record_url("E2"), headers=bearer(reader)).status_code == 200
    old = issue_token(db.session, name="old", scopes=["hr:write", "hr:read"], actor_id=None)
    revoke_token(db.session, old.token.id, actor_id=None)
    db.session.commit()
    revoked = old.secret
    assert c.post(BATCH, json=body, headers=bearer(revoked)).status_code == 401
    assert c.get(record_url("E2"), headers=bearer(revoked)).status_code == 401
    assert employee("E40") is None


# --- the assignment engine ---------------------------------------------------------------

def test_a_position_change_assigns_the_new_positions_course_at_once(app, org, people):
    rule = course_with_rule("RISK-CASH-01", position=org["cashier"])
    waiting = people.employee("孙收银", department=org["retail"], position=org["cashier"],
                              employee_no="E5")
    people.user("ue5", "trainee", employee=waiting)  # a cashier the tick will assign
    resp = post_batch(app, token("hr:write"), [row("E2", name="李店员", position="CASHIER")])
    assert resp.status_code == 200
    assert resp.get_json()["assignments"] == {"assigned": 1, "suspended": 0, "resumed": 0,
                                              "deferred": None}
    [a] = assignments_of("E2")
    assert (a.rule_id, a.status, a.trigger_date, a.due_date) == (
        rule.id, "open", date(2026, 9, 28), date(2026, 10, 13))
    assert a.enrollment_id is not None  # learning can begin
    assert assignments_of("E5") == []  # only the people the sync changed are evaluated
    entry = db.session.scalar(select(LedgerEntry).where(
        LedgerEntry.kind == "assignment.rule_applied"))
    assert json.loads(entry.payload)["employee_nos"] == ["E2"]


def test_absconded_suspends_open_assignments_and_return_resumes_them(app, org):
    rule = course_with_rule("RISK-ID-01", department=org["retail"])
    evaluate_rule(db.session, rule, calendar=CAL, now=NOW)
    db.session.commit()
    assert {a.status for a in assignments_of("E2")} == {"open"}
    secret = token("hr:write")
    resp = post_batch(app, secret, [row("E2", name="李店员", status="自离")])
    assert resp.get_json()["assignments"]["suspended"] == 1
    [a] = assignments_of("E2")
    assert a.status == "suspended" and employee("E2").status == "absconded"
    assert [a.status for a in assignments_of("E1")] == ["open"]  # untouched

    resp = post_batch(app, secret, [row("E2", name="李店员", status="在职")])
    assert resp.get_json()["assignments"]["resumed"] == 1
    assert [a.status for a in assignments_of("E2")] == ["open"]


def test_new_hires_get_the_new_hire_rules(app, org, people):
    rule = course_with_rule("RISK-NEW-01", department=org["hq"], applies_to="new_hires")
    secret = token("hr:write")
    # A new employee has no login yet: the record is there, training waits for the login.
    resp = post_batch(app, secret, [row("E50", name="钱新人", hire_date="2026-09-21")])
    assert resp.get_json()["created"] == 1
    assert resp.get_json()["assignments"]["assigned"] == 0
    people.user("ue50", "trainee", employee=employee("E50"))  # the admin links a login
    run_assignment_tick(db.session, calendar=CAL, now=NOW)
    db.session.commit()
    [a] = assignments_of("E50")
    assert (a.rule_id, a.trigger_date, a.due_date) == (
        rule.id, date(2026, 9, 21), CAL.add_workdays(date(2026, 9, 21), 7))

    # A rehire (login kept, hired again after the rule took effect) is assigned at once.
    gone = people.employee("吴回归", department=org["factory"], employee_no="E51",
                           status="left")
    people.user("ue51", "trainee", employee=gone)
    resp = post_batch(app, secret, [row("E51", name="吴回归", department="MF",
                                        hire_date="2026-09-25")])
    assert resp.get_json()["assignments"]["assigned"] == 1
    [a] = assignments_of("E51")
    assert (a.trigger_date, a.due_date) == (date(2026, 9, 25),
                                            CAL.add_workdays(date(2026, 9, 25), 7))


def test_without_the_years_holiday_calendar_the_change_is_kept_and_training_waits(app, org):
    course_with_rule("RISK-CASH-01", position=org["cashier"], days=250)  # due in 2027
    resp = post_batch(app, token("hr:write"), [row("E2", name="李店员", position="CASHIER")])
    assert resp.status_code == 200
    assert "2027" in resp.get_json()["assignments"]["deferred"]
    assert employee("E2").position.code == "CASHIER" and assignments_of("E2") == []


# --- the webhook -------------------------------------------------------------------------

def signed(body: bytes, *, at: datetime = NOW, secret: str = SECRET) -> dict[str, str]:
    ts = int(at.timestamp())
    return {"X-Timestamp": str(ts), "X-Signature": sign(secret.encode(), ts, body),
            "Content-Type": "application/json"}


def change(**kw) -> bytes:
    return json.dumps({"event": "employee.changed",
                       "employee": row("E2", **{"name": "李店员", **kw})},
                      ensure_ascii=False).encode()


@pytest.fixture
def hook(app):
    app.config["HR_WEBHOOK_SECRET"] = SECRET
    return app.test_client()


def test_a_signed_change_is_applied_once_and_its_replay_refused(hook, org):
    body = change(status="自离")
    headers = signed(body)
    resp = hook.post(WEBHOOK, data=body, headers=headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["rows"] == [{"employee_no": "E2", "result": "updated"}]
    assert employee("E2").status == "absconded"
    [entry] = db.session.scalars(select(LedgerEntry).where(
        LedgerEntry.kind == "hr.sync_applied"))
    assert json.loads(entry.payload)["via"] == "webhook"

    employee("E2").status = "active"  # HR corrects it by hand meanwhile
    db.session.commit()
    replay = hook.post(WEBHOOK, data=body, headers=headers)
    assert (replay.status_code, error_of(replay)["code"]) == (409, "replayed")
    assert employee("E2").status == "active"
    assert ledger_count("hr.sync_applied") == 1
    assert db.session.scalar(select(func.count()).select_from(HrWebhookReceipt)) == 1


def test_bad_and_stale_signatures_are_refused_before_the_body_is_read(hook, org):
    body = change(status="left")
    wrong = signed(body, secret="another-secret-of-enough-length")
    resp = hook.post(WEBHOOK, data=body, headers=wrong)
    assert (resp.status_code, error_of(resp)["code"]) == (401, "bad_signature")
    stale = signed(body, at=NOW - timedelta(seconds=301))
    resp = hook.post(WEBHOOK, data=body, headers=stale)
    assert (resp.status_code, error_of(resp)["code"]) == (401, "stale_timestamp")
    resp = hook.post(WEBHOOK, data=body, headers={"Content-Type": "application/json"})
    assert (resp.status_code, error_of(resp)["code"]) == (401, "missing_signature")
    garbage = b"{not json"
    resp = hook.post(WEBHOOK, data=garbage, headers=signed(b"{}"))
    assert (resp.status_code, error_of(resp)["code"]) == (401, "bad_signature")
    assert employee("E2").status == "active"
    # a well-signed garbage body is a 400, and its receipt is not kept (nothing applied)
    resp = hook.post(WEBHOOK, data=garbage, headers=signed(garbage))
    assert (resp.status_code, error_of(resp)["code"]) == (400, "invalid_json")
    assert db.session.scalar(select(func.count()).select_from(HrWebhookReceipt)) == 0


def test_a_refused_webhook_row_names_the_employee_field(hook, org):
    body = change(department="NOPE")
    resp = hook.post(WEBHOOK, data=body, headers=signed(body))
    assert resp.status_code == 422
    assert error_of(resp)["field"] == "employee.department"
    body = json.dumps({"event": "employee.deleted", "employee": row("E2")}).encode()
    resp = hook.post(WEBHOOK, data=body, headers=signed(body))
    assert (resp.status_code, error_of(resp)["field"]) == (400, "event")


def test_without_a_secret_the_webhook_says_it_is_not_configured(app, org):
    app.config["HR_WEBHOOK_SECRET"] = ""
    body = change()
    resp = app.test_client().post(WEBHOOK, data=body, headers=signed(body))
    assert (resp.status_code, error_of(resp)["code"]) == (503, "webhook_not_configured")
    assert "HR_WEBHOOK_SECRET" in error_of(resp)["message"]


def test_housekeeping_prunes_receipts_after_a_day(hook, org):
    body = change(name="李店员")
    assert hook.post(WEBHOOK, data=body, headers=signed(body)).status_code == 200
    assert prune_integration_logs(db.session, NOW + timedelta(hours=23)).webhook_receipts_pruned == 0
    assert prune_integration_logs(db.session, NOW + timedelta(hours=25)).webhook_receipts_pruned == 1
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(HrWebhookReceipt)) == 0


# --- the training record -----------------------------------------------------------------

def _policy_course(user) -> tuple[Signature, CourseVersion]:
    """A one-lesson policy course assigned by rule, read and signed by ``user``."""
    document = signing.create_document(db.session, name="员工手册", statement_template=None,
                                       min_reading_seconds=0, actor_id=None)
    policy = signing.add_text_version(db.session, document, body="第一条 遵守劳动纪律。",
                                      actor_id=None)
    signing.publish_version(db.session, policy, actor_id=None)
    course = Course(code="POL-01", title_zh="员工手册学习", title_en="Employee handbook",
                    risk_topic="identity_verification")
    version = CourseVersion(course=course, number=1, status="draft")
    db.session.add_all([course, version])
    db.session.flush()
    db.session.add(Lesson(version=version, position=1, kind="policy", title="签署员工手册",
                          policy_version_id=policy.id))
    db.session.flush()
    publish_version(db.session, version, actor_id=None)
    rule = AssignmentRule(name="手册必修", course_id=course.id, due_working_days=7,
                          effective_from=date(2026, 9, 1))
    db.session.add(rule)
    db.session.commit()
    evaluate_rule(db.session, rule, calendar=CAL, now=NOW)
    db.session.commit()
    enrolment = db.session.scalar(select(Enrollment).where(Enrollment.user_id == user.id,
                                                           Enrollment.version_id == version.id))
    lesson = version.lessons[0]
    reading = signing.start_reading(db.session, user_id=user.id, enrollment_id=enrolment.id,
                                    lesson=lesson, ip="10.0.0.2", user_agent="pytest")
    db.session.commit()
    signature = signing.sign(db.session, user=user, lesson=lesson, enrollment_id=enrolment.id,
                             reading_token=reading.token, typed_name=user.employee.name,
                             password=PASSWORD, ip="10.0.0.2", user_agent="pytest",
                             throttle=ThrottlePolicy())
    db.session.commit()
    run_assignment_tick(db.session, calendar=CAL, now=NOW)  # the assignment completes
    db.session.commit()
    return signature, version


def _exam_course(user) -> CourseVersion:
    """An exam course: failed once (no answers), passed the second time."""
    version = make_exam_course(bank=make_bank(), code="EXAM-01")
    enrol(user, version)
    lesson = exam_lesson(version)
    first = exam_taking.start_attempt(db.session, user=user, lesson=lesson, ip=None,
                                      user_agent=None)
    exam_taking.submit(db.session, attempt=first)
    db.session.commit()
    second = exam_taking.start_attempt(db.session, user=user, lesson=lesson, ip=None,
                                       user_agent=None)
    for q in json.loads(second.served):
        exam_taking.save_answer(db.session, attempt=second, position=q["position"],
                                indices=[i for i, o in enumerate(q["options"]) if o["correct"]])
    exam_taking.submit(db.session, attempt=second)
    db.session.commit()
    return version


def test_the_training_record_files_rounds_exams_signatures_and_ledger_entries(app, org):
    user = org["users"]["E2"]
    vault = app.extensions["id_vault"]
    e2 = employee("E2")
    e2.id_number_cipher, e2.id_number_index = vault.encrypt(ID_E10), vault.blind_index(ID_E10)
    e2.id_number_masked = "1101**********" + ID_E10[-4:]
    db.session.commit()
    late = course_with_rule("RISK-LATE-01", department=org["retail"])
    evaluate_rule(db.session, late, calendar=CAL, now=NOW - timedelta(days=30))
    db.session.commit()
    signature, policy_version = _policy_course(user)
    exam_version = _exam_course(user)

    resp = app.test_client().get(record_url("E2"), headers=bearer(token("hr:read")))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    text = resp.get_data(as_text=True)
    assert ID_E10 not in text and ID_E10[-4:] not in text and "id_number" not in text
    record = resp.get_json()
    assert record["employee"] == {
        "employee_no": "E2", "name": "李店员", "department": {"code": "RT", "name": "零售事业部"},
        "position": {"code": "CLERK", "name": "店员"}, "status": "active",
        "status_label": "在职", "hire_date": "2024-03-01"}
    assert record["as_of"] == "2026-09-28"
    by_code = {r["course"]["code"]: r for r in record["rounds"]}
    assert list(by_code) == ["EXAM-01", "POL-01", "RISK-LATE-01"]

    policy = by_code["POL-01"]
    enrolment = db.session.get(Enrollment, signature.enrollment_id)
    completion = db.session.scalar(select(LedgerEntry).where(
        LedgerEntry.kind == "course.completed",
        LedgerEntry.subject == f"course_version:{policy_version.id}"))
    assert policy["course"] == {"code": "POL-01", "title": "员工手册学习",
                                "title_en": "Employee handbook"}
    assert policy["version"] == {"number": 1, "content_hash": policy_version.content_hash}
    assert policy["cycle"] == 1 and policy["completed_at"] is not None
    assert policy["completion_record"] == {"seq": completion.seq, "hash": completion.hash}
    assert enrolment.completed_at is not None
    [assigned] = policy["assignments"]
    assert (assigned["source"], assigned["status"], assigned["due_date"], assigned["overdue"]
            ) == ("rule", "completed", "2026-10-13", False)
    assert assigned["completed_date"] is not None
    [signed_row] = policy["signatures"]
    policy_row = db.session.get(PolicyVersion, signature.policy_version_id)
    assert signed_row["policy_title"] == "员工手册"
    assert signed_row["policy_version"] == 1
    assert signed_row["document_sha256"] == policy_row.sha256
    assert signed_row["verification_code"] == signature.verification_code
    assert signed_row["record"] == {"seq": signature.ledger_seq, "hash": signature.ledger_hash}
    assert policy["exams"] == []

    exam = by_code["EXAM-01"]
    assert exam["version"]["content_hash"] == exam_version.content_hash
    assert exam["exams"] == [{"lesson": "绩效制度测验", "pass_score": 80, "attempts": 2,
                              "best_score": 100, "passed": True}]
    assert exam["assignments"] == [] and exam["completion_record"] is not None

    late_round = by_code["RISK-LATE-01"]
    [owed] = late_round["assignments"]
    assert (owed["status"], owed["overdue"], owed["completed_date"]) == ("open", True, None)
    assert late_round["completion_record"] is None and late_round["completed_at"] is None


def test_an_unknown_employee_is_a_json_404(app, org):
    secret = token("hr:read")
    for no in ("E404", "E2%00", "李店员"):
        resp = app.test_client().get(record_url(no), headers=bearer(secret))
        assert (resp.status_code, error_of(resp)["code"]) == (404, "not_found"), no


def test_an_employee_without_a_login_has_an_empty_record(app, org, people):
    people.employee("郑无账号", department=org["factory"], employee_no="E60")
    resp = app.test_client().get(record_url("E60"), headers=bearer(token("hr:read")))
    assert resp.status_code == 200
    assert resp.get_json()["rounds"] == []


def test_a_webhook_change_that_closes_a_management_loop_is_refused(hook, org, people):
    """The webhook reads only the reporting lines the row touches, and still sees a loop
    through managers above it: E1 manages E2; E1 -> E3 (new boss of E1) -> E2 closes it."""
    e3 = people.employee("赵总监", department=org["hq"], employee_no="E3")
    e3.manager_id = employee("E2").id
    db.session.commit()
    body = json.dumps({"event": "employee.changed", "employee": row(
        "E1", name="王店长", manager="E3")}, ensure_ascii=False).encode()
    resp = hook.post(WEBHOOK, data=body, headers=signed(body))
    assert resp.status_code == 422, resp.get_data(as_text=True)
    err = error_of(resp)
    assert err["field"] == "employee.manager" and "E1" in err["message"]
    assert "E3" in err["message"] and "E2" in err["message"]
    assert employee("E1").manager_id is None
    body = json.dumps({"event": "employee.changed", "employee": row(
        "E1", name="王店长", manager="E9")}, ensure_ascii=False).encode()
    resp = hook.post(WEBHOOK, data=body, headers=signed(body))
    assert (resp.status_code, error_of(resp)["field"]) == (422, "employee.manager")
