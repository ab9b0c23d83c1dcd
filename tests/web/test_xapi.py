"""xAPI statements to a real LRS stand-in on 127.0.0.1: learners' completions, exam
results and signatures become one statement each (valid by Ralph's xAPI models), sent
by the tick with the xAPI version header and basic auth, never by the learner's
request; an LRS that is down or refuses is retried with back-off, and the admin page
shows the queue and retries failed statements."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from exam_support import correct_indices, make_bank, make_exam_course, served
from exam_support import enrol as enrol_version
from outbound_support import Receiver, closed_port_url, enrol, make_policy_course, sign_policy
from ralph.models.xapi.base.statements import BaseXapiStatement
from sqlalchemy import func, select
from support import Clock

from assessments import exam_taking, signing
from courses.models import Enrollment
from integrations.events import event_uuid
from integrations.outbox import BACKOFF
from integrations.xapi.models import XapiStatement
from integrations.xapi.statements import registration_uuid
from integrations.xapi.tick import run_xapi_tick
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.ledger import LedgerEntry

BASE = "/admin/integrations/xapi"


@pytest.fixture
def lrs(app):
    """The LRS: accepts statement batches at /xapi/statements, validating each one."""
    server = Receiver().start()
    app.config.update(XAPI_LRS_URL=server.url("/xapi"), XAPI_LRS_USERNAME="lms",
                      XAPI_LRS_PASSWORD="秘密-pass")
    yield server
    server.stop()


def statements_received(lrs: Receiver) -> list[dict]:
    out = []
    for request in lrs.received:
        assert request.path == "/xapi/statements"
        out.extend(request.json())
    return out


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(signing, "clock", c)
    return c


@pytest.fixture
def learner(people):
    emp = people.employee("李雷", employee_no="E10001")
    user = people.user("lilei", "trainee", employee=emp)
    user.email = "lilei@example.com"
    db.session.commit()
    return user


@pytest.fixture
def admin(people, client):
    user = people.user("root", "admin")
    user.locale = "en"  # messages asserted in English whatever the translations say
    db.session.commit()
    client.login("root")
    return client


def tick(app, now=None):
    return run_xapi_tick(db.session, app, now=now or utcnow(), commit=db.session.commit)


def rows() -> list[XapiStatement]:
    db.session.expire_all()
    return list(db.session.scalars(select(XapiStatement).order_by(XapiStatement.ledger_seq)))


def signed_course(learner, make_client, clock):
    lesson = make_policy_course()
    enrol(learner, lesson)
    student = make_client()
    student.login("lilei")
    resp = sign_policy(student, lesson.id, clock, name="李雷")
    assert resp.status_code == 302
    return lesson


def test_a_learners_signature_and_completion_reach_the_lrs_once_as_valid_statements(
        app, lrs, learner, make_client, clock):
    lesson = signed_course(learner, make_client, clock)
    assert lrs.received == [] and rows() == []  # the learner's request sent nothing

    report = tick(app)
    assert (report.queued, report.sent, report.failed) == (2, 2, 0)
    [request] = lrs.received  # one batch
    assert request.headers["x-experience-api-version"] == "1.0.3"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(
        "lms:秘密-pass".encode()).decode()
    signed, completed = statements_received(lrs)
    for statement in (signed, completed):
        BaseXapiStatement.model_validate(statement)
        assert statement["actor"] == {"objectType": "Agent", "mbox": "mailto:lilei@example.com"}
    entries = db.session.scalars(select(LedgerEntry).where(
        LedgerEntry.kind.in_(("policy.signed", "course.completed"))).order_by(LedgerEntry.seq)
    ).all()
    base = app.config["PUBLIC_BASE_URL"]
    assert [s["id"] for s in (signed, completed)] == [str(event_uuid(base, e.seq))
                                                      for e in entries]
    assert signed["verb"]["id"] == "http://activitystrea.ms/schema/1.0/accept"
    assert completed["verb"]["id"] == "http://adlnet.gov/expapi/verbs/completed"
    assert completed["object"]["id"] == f"{base}/xapi/activities/course/RISK-PERF-01"
    assert completed["object"]["definition"]["name"] == {"zh-CN": "绩效管理制度培训",
                                                         "en-US": "Performance rules"}
    enrollment_id = db.session.scalar(select(Enrollment.id).where(
        Enrollment.version_id == lesson.version_id))
    registration = str(registration_uuid(base, enrollment_id))
    assert signed["context"]["registration"] == completed["context"]["registration"] == registration
    assert signed["context"]["contextActivities"]["parent"][0]["id"] == completed["object"]["id"]
    assert [r.status for r in rows()] == ["sent", "sent"]
    assert [r.verb for r in rows()] == ["accepted", "completed"]

    assert (tick(app).queued, len(lrs.received)) == (0, 1)  # nothing twice
    assert db.session.scalar(select(func.count()).select_from(XapiStatement)) == 2


def test_exam_attempts_become_failed_then_passed_statements_with_scores(app, lrs, learner):
    version = make_exam_course(bank=make_bank(), pass_score=80)
    enrol_version(learner, version)
    lesson = version.lessons[0]
    for passing in (False, True):
        attempt = exam_taking.start_attempt(db.session, user=learner, lesson=lesson,
                                            ip="10.0.0.1", user_agent="pytest")
        db.session.commit()
        for question in served(attempt):
            right = correct_indices(question)
            wrong = [i for i in range(len(question["options"])) if i not in right][:1]
            exam_taking.save_answer(db.session, attempt=attempt, position=question["position"],
                                    indices=right if passing else wrong)
        exam_taking.submit(db.session, attempt=attempt)
        db.session.commit()
    tick(app)
    failed, passed, completed = statements_received(lrs)
    for statement in (failed, passed, completed):
        BaseXapiStatement.model_validate(statement)
    assert failed["verb"]["id"] == "http://adlnet.gov/expapi/verbs/failed"
    assert failed["result"] == {"score": {"scaled": 0.0, "raw": 0, "min": 0, "max": 100},
                                "success": False, "completion": True}
    assert passed["verb"]["id"] == "http://adlnet.gov/expapi/verbs/passed"
    assert passed["result"]["score"] == {"scaled": 1.0, "raw": 100, "min": 0, "max": 100}
    assert passed["result"]["success"] is True
    assert passed["object"]["definition"]["type"] == "http://adlnet.gov/expapi/activities/assessment"
    assert completed["verb"]["id"] == "http://adlnet.gov/expapi/verbs/completed"
    # every statement of the enrolment shares its registration
    assert len({s["context"]["registration"] for s in (failed, passed, completed)}) == 1
    assert "10.0.0.1" not in json.dumps([failed, passed, completed])


def test_lrs_down_leaves_the_learner_alone_and_statements_back_off_then_fail(
        app, learner, make_client, clock, admin):
    app.config["XAPI_LRS_URL"] = closed_port_url("/xapi")
    signed_course(learner, make_client, clock)  # asserts the learner's 302 success
    now = utcnow()
    report = tick(app, now)
    assert (report.queued, report.sent, report.retrying) == (2, 0, 2)
    assert "ConnectError" in report.line()
    for r in rows():
        assert (r.status, r.attempts, r.next_attempt_at) == ("pending", 1, now + BACKOFF[0])
        assert "ConnectError" in r.last_error
    for wait in BACKOFF:
        now += wait
        tick(app, now)
    assert {(r.status, r.attempts) for r in rows()} == {("failed", len(BACKOFF) + 1)}

    page = admin.get(BASE).get_data(as_text=True)
    assert 'id="count-failed">2<' in page and "ConnectError" in page
    assert 'data-enabled="yes"' in page
    resp = admin.post(f"{BASE}/retry-failed", token_from=BASE)
    assert resp.status_code == 302
    assert {r.status for r in rows()} == {"pending"}
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry).where(
        LedgerEntry.kind == "xapi.retry_requested")) == 1
    lrs = Receiver().start()
    try:
        app.config["XAPI_LRS_URL"] = lrs.url("/xapi")
        assert tick(app).sent == 2
    finally:
        lrs.stop()
    assert {r.status for r in rows()} == {"sent"}
    assert 'id="count-sent">2<' in admin.get(BASE).get_data(as_text=True)


def test_a_statement_the_lrs_refuses_is_isolated_and_the_rest_are_sent(
        app, lrs, learner, make_client, clock):
    signed_course(learner, make_client, clock)
    tick(app, utcnow() - timedelta(days=1))  # queue (and send) once ...
    db.session.execute(XapiStatement.__table__.update().values(status="pending",
                                                               next_attempt_at=utcnow()))
    db.session.commit()
    lrs.received.clear()
    bad = rows()[0].statement_id

    def answer(request):
        ids = [s["id"] for s in request.json()]
        return (400, b'{"error": "bad statement"}') if bad in ids else (200, b"[]")

    lrs.answer = answer
    report = tick(app)
    assert (report.sent, report.failed) == (1, 1)
    first, second = rows()
    assert (first.status, first.last_status_code) == ("failed", 400)
    assert "bad statement" in first.last_error
    assert second.status == "sent"
    assert [len(r.json()) for r in lrs.received] == [2, 1, 1]  # the batch, then one by one


def test_unauthorised_is_retried_not_failed(app, lrs, learner, make_client, clock):
    lrs.codes = [401]
    signed_course(learner, make_client, clock)
    now = utcnow()
    tick(app, now)
    assert {(r.status, r.last_status_code) for r in rows()} == {("pending", 401)}
    tick(app, now + BACKOFF[0])
    assert {r.status for r in rows()} == {"sent"}


def test_disabled_queues_nothing_and_enabling_sends_the_history(
        app, learner, make_client, clock):
    signed_course(learner, make_client, clock)
    report = tick(app)
    assert report.line() == "xapi: disabled (XAPI_LRS_URL is empty); 0 statements waiting"
    assert rows() == []
    lrs = Receiver().start()
    try:
        app.config["XAPI_LRS_URL"] = lrs.url("/xapi")
        assert tick(app).sent == 2
        assert len(statements_received(lrs)) == 2
    finally:
        lrs.stop()


def test_the_admin_page_is_for_admins_and_retrying_needs_the_csrf_token(
        app, admin, people, make_client):
    page = admin.get(BASE).get_data(as_text=True)
    assert 'data-enabled="no"' in page and "XAPI_LRS_URL" in page
    people.user("hr1", "hr", "auditor")
    other = make_client()
    other.login("hr1")
    assert other.get(BASE).status_code == 403
    assert other.post(f"{BASE}/retry-failed", token_from="/").status_code == 403
    assert admin.c.post(f"{BASE}/retry-failed").status_code == 400
    assert admin.post(f"{BASE}/12345/retry", token_from=BASE).status_code == 404
    assert make_client().get(BASE).status_code == 302
