"""Outbound webhooks against a real HTTP receiver on 127.0.0.1: an admin registers an
endpoint (secret shown once, stored encrypted), a learner's completion reaches it once,
signed, only through the tick; failures are retried with back-off and end as failed;
the delivery log shows what happened and its retry button sends again."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from outbound_support import (
    Receiver,
    closed_port_url,
    enrol,
    make_policy_course,
    sign_policy,
)
from sqlalchemy import func, select
from support import Clock

from assessments import signing
from integrations.outbox import BACKOFF, IntegrationCursor, claim
from integrations.signing import verify
from integrations.webhooks.models import WebhookDelivery, WebhookEndpoint
from integrations.webhooks.service import queue_from_ledger
from integrations.webhooks.tick import run_webhook_tick
from lms import ledger
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.ledger import LedgerEntry

SECRET_RE = re.compile(r'id="secret"[^>]*value="([^"]+)"')
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
BASE = "/admin/integrations/webhooks"


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(signing, "clock", c)
    return c


@pytest.fixture
def admin(people, client):
    user = people.user("root", "admin")
    user.locale = "en"  # messages asserted in English whatever the translations say
    db.session.commit()
    client.login("root")
    return client


@pytest.fixture
def learner(people):
    emp = people.employee("李雷", employee_no="E10001")
    emp.id_number_masked = "110************23X"
    db.session.commit()
    return people.user("lilei", "trainee", employee=emp)


def create_endpoint(admin, url: str, events=("course.completed", "policy.signed"),
                    name: str = "HR 系统") -> tuple[WebhookEndpoint, str]:
    resp = admin.post(f"{BASE}/new", {"name": name, "url": url, "events": list(events)},
                      token_from=f"{BASE}/new")
    assert resp.status_code == 201, resp.get_data(as_text=True)
    secret = SECRET_RE.search(resp.get_data(as_text=True)).group(1)
    endpoint = db.session.scalar(select(WebhookEndpoint).order_by(WebhookEndpoint.id.desc()))
    return endpoint, secret


def tick(app, now=None):
    return run_webhook_tick(db.session, app, now=now or utcnow(), commit=db.session.commit)


def deliveries() -> list[WebhookDelivery]:
    db.session.expire_all()
    return list(db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def completed_event(user, seq_hint: str = "RISK-PERF-01") -> LedgerEntry:
    """A course completion as courses.tracking records it (for the retry mechanics)."""
    entry = ledger.append(db.session, kind="course.completed", subject="course_version:1",
                          actor_id=user.id, payload={
                              "user": user.username, "employee_no": "E10001",
                              "course_code": seq_hint, "version_number": 1,
                              "completed_at": utcnow().isoformat(), "enrollment_id": 1,
                              "cycle": 1, "lessons": []})
    db.session.commit()
    return entry


def test_admin_creates_an_endpoint_whose_secret_is_shown_once_and_kept_encrypted(
        admin, app, receiver):
    endpoint, secret = create_endpoint(admin, receiver.url())
    assert secret.startswith("whsec_") and len(secret) > 40
    assert endpoint.name == "HR 系统" and endpoint.url == receiver.url()
    assert endpoint.event_list == ["course.completed", "policy.signed"]
    assert secret.encode() not in endpoint.secret_cipher
    assert app.extensions["id_vault"].decrypt(endpoint.secret_cipher) == secret
    listing = admin.get(BASE).get_data(as_text=True)
    assert "HR 系统" in listing and endpoint.secret_prefix in listing
    assert secret not in listing
    [entry] = db.session.scalars(select(LedgerEntry).where(
        LedgerEntry.kind == "webhook.endpoint_created"))
    assert endpoint.created_seq == entry.seq and secret not in entry.payload
    assert json.loads(entry.payload)["url"] == receiver.url()


def test_a_token_in_the_address_stays_out_of_the_ledger(admin, receiver):
    endpoint, _secret = create_endpoint(admin, receiver.url("/hook?token=s3cr3t"))
    assert endpoint.url.endswith("/hook?token=s3cr3t")  # sent to as given
    [entry] = db.session.scalars(select(LedgerEntry).where(
        LedgerEntry.kind == "webhook.endpoint_created"))
    assert "s3cr3t" not in entry.payload
    assert json.loads(entry.payload)["url"] == receiver.url("/hook") + "?…"


def test_an_odd_ledger_entry_does_not_stop_the_outbox(admin, app, receiver, learner):
    create_endpoint(admin, receiver.url(), events=["course.completed", "lesson.completed"])
    ledger.append(db.session, kind="lesson.completed", subject="lesson:?", actor_id=learner.id,
                  payload={"note": "no lesson id"})
    db.session.commit()
    completed_event(learner)
    report = tick(app)
    assert (report.entries, report.queued, report.delivered) == (2, 1, 1)
    assert [r.json()["type"] for r in receiver.received] == ["course.completed"]
    assert tick(app).entries == 0  # the cursor went past both


def test_bad_endpoint_input_is_refused_field_by_field(admin):
    resp = admin.post(f"{BASE}/new", {"name": "", "url": "ftp://hr.example.com/in"},
                      token_from=f"{BASE}/new")
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert "A name of 1 to 64 characters is required." in html
    assert "Only http:// and https:// addresses can receive webhooks." in html
    assert "Choose at least one event." in html
    resp = admin.post(f"{BASE}/new", {"name": "x", "url": "https://user:pw@hr.example.com/",
                                      "events": ["course.completed", "exam.graded"]},
                      token_from=f"{BASE}/new")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert "Put no user name or password in the address" in html
    assert "Unknown event(s): exam.graded." in html
    assert db.session.scalar(select(func.count()).select_from(WebhookEndpoint)) == 0


def test_a_learners_signature_reaches_the_endpoint_once_signed_and_only_via_the_tick(
        admin, app, receiver, learner, make_client, clock):
    _endpoint, secret = create_endpoint(admin, receiver.url())
    lesson = make_policy_course()
    enrol(learner, lesson)
    student = make_client()
    student.login("lilei")
    resp = sign_policy(student, lesson.id, clock, name="李雷")
    assert resp.status_code == 302
    assert receiver.received == []  # the learner's request talked to nobody
    assert deliveries() == []  # and queued nothing: the ledger is the outbox

    report = tick(app)
    assert (report.queued, report.delivered, report.failed) == (2, 2, 0)
    signed_entry, completed_entry = db.session.scalars(
        select(LedgerEntry).where(LedgerEntry.kind.in_(("policy.signed", "course.completed")))
        .order_by(LedgerEntry.seq)).all()
    assert [r.json()["type"] for r in receiver.received] == ["policy.signed", "course.completed"]
    for request, entry in zip(receiver.received, (signed_entry, completed_entry), strict=True):
        assert request.path == "/hook"
        assert request.headers["content-type"].startswith("application/json")
        assert verify(secret.encode(), request.headers["x-timestamp"], request.body,
                      request.headers["x-signature"])
        body = request.json()
        assert request.headers["x-webhook-id"] == body["id"]
        assert body["ledger"] == {"seq": entry.seq, "hash": entry.hash}
        assert body["data"]["employee_no"] == "E10001"
        assert body["data"]["course"]["code"] == "RISK-PERF-01"
        assert body["data"]["course"]["title"] == "绩效管理制度培训"
        text = request.body.decode()
        assert "110************23X" not in text and "李雷" not in text
    policy = receiver.received[0].json()["data"]["policy"]
    assert policy["name"] == "绩效管理制度" and len(policy["document_sha256"]) == 64
    assert [d.status for d in deliveries()] == ["delivered", "delivered"]
    assert [d.last_status_code for d in deliveries()] == [200, 200]

    # the tick again, and the same ledger read again from the start: nothing twice
    again = tick(app)
    assert (again.queued, again.delivered) == (0, 0)
    db.session.execute(IntegrationCursor.__table__.update().values(last_seq=0))
    db.session.commit()
    assert tick(app).queued == 0
    assert len(receiver.received) == 2 and len(deliveries()) == 2
    assert db.session.scalar(select(IntegrationCursor.last_seq).where(
        IntegrationCursor.name == "webhooks")) >= completed_entry.seq


def test_failures_back_off_then_fail_and_the_retry_button_sends_again(
        admin, app, receiver, learner):
    receiver.codes = [500] * (len(BACKOFF) + 1)
    _endpoint, _secret = create_endpoint(admin, receiver.url(), events=["course.completed"])
    completed_event(learner)
    now = utcnow()
    tick(app, now)
    [d] = deliveries()
    assert (d.status, d.attempts, d.last_status_code) == ("pending", 1, 500)
    assert d.next_attempt_at == now + timedelta(minutes=1)
    assert "HTTP 500" in d.last_error and "receiver says no" in d.last_error
    assert tick(app, now + timedelta(seconds=59)).delivered == 0  # not due yet
    assert len(receiver.received) == 1
    for attempt, wait in enumerate(BACKOFF, start=1):
        now += wait
        tick(app, now)
        [d] = deliveries()
        assert d.attempts == attempt + 1
        if attempt < len(BACKOFF):
            assert d.status == "pending" and d.next_attempt_at == now + BACKOFF[attempt]
    assert d.status == "failed" and d.next_attempt_at is None
    assert len(receiver.received) == len(BACKOFF) + 1  # 1 min, 5 min, 30 min, 2 h, 12 h
    assert tick(app, now + timedelta(days=2)).delivered == 0  # failed stays failed

    log = admin.get(f"{BASE}/deliveries?status=failed").get_data(as_text=True)
    assert f'id="delivery-{d.id}" data-status="failed" data-code="500"' in log
    assert "HTTP 500" in log and f'id="retry-{d.id}"' in log
    resp = admin.post(f"{BASE}/deliveries/{d.id}/retry", {"status": "failed"},
                      token_from=f"{BASE}/deliveries")
    assert resp.status_code == 302 and "status=failed" in resp.headers["Location"]
    [d] = deliveries()
    assert d.status == "pending"
    [entry] = db.session.scalars(select(LedgerEntry).where(
        LedgerEntry.kind == "webhook.retry_requested"))
    assert json.loads(entry.payload)["delivery_ids"] == [d.id]
    tick(app)  # the receiver answers 200 now
    [d] = deliveries()
    assert (d.status, d.last_status_code, d.attempts) == ("delivered", 200, len(BACKOFF) + 2)
    log = admin.get(f"{BASE}/deliveries").get_data(as_text=True)
    assert 'data-status="delivered" data-code="200"' in log and "HTTP 200" in log
    # retrying a delivered delivery does nothing
    admin.post(f"{BASE}/deliveries/{d.id}/retry", token_from=f"{BASE}/deliveries")
    assert deliveries()[0].status == "delivered"


def test_retry_all_failed_of_an_endpoint(admin, app, receiver, learner):
    endpoint, _secret = create_endpoint(admin, receiver.url(), events=["course.completed"])
    for code in ("A", "B", "C"):
        completed_event(learner, code)
    tick(app)
    db.session.execute(WebhookDelivery.__table__.update().values(status="failed"))
    db.session.commit()
    resp = admin.post(f"{BASE}/{endpoint.id}/retry-failed", token_from=BASE)
    assert resp.status_code == 302
    assert {d.status for d in deliveries()} == {"pending"}
    assert tick(app).delivered == 3
    assert len(receiver.received) == 6


def test_an_unreachable_endpoint_is_tried_once_per_batch(admin, app, learner):
    _endpoint, _secret = create_endpoint(admin, closed_port_url(), events=["course.completed"])
    for code in ("A", "B", "C"):
        completed_event(learner, code)
    now = utcnow()
    report = tick(app, now)
    assert (report.retrying, report.deferred) == (1, 2)
    rows = deliveries()
    assert [d.attempts for d in rows] == [1, 0, 0]
    assert rows[0].last_status_code is None and "ConnectError" in rows[0].last_error
    assert {d.next_attempt_at for d in rows} == {now + BACKOFF[0]}
    assert {d.claimed_until for d in rows} == {None}
    assert "1 to retry" in report.line() and "2 waiting" in report.line()


def test_endpoint_receives_only_later_events_of_its_types(admin, app, receiver, learner):
    completed_event(learner, "BEFORE")  # recorded before the endpoint existed
    _endpoint, _secret = create_endpoint(admin, receiver.url(), events=["exam.failed"])
    completed_event(learner, "AFTER")  # not subscribed
    for passed in (True, False):
        ledger.append(db.session, kind="exam.submitted", subject="exam_attempt:1",
                      actor_id=learner.id, payload={
                          "user": "lilei", "employee_no": "E10001", "course_code": "X",
                          "version_number": 1, "lesson_id": 1, "lesson_title": "测验",
                          "exam_id": 1, "attempt_id": 1 if passed else 2, "number": 1,
                          "pass_score": 80, "score": 90 if passed else 50, "passed": passed})
    db.session.commit()
    tick(app)
    [d] = deliveries()
    assert d.event_type == "exam.failed"
    [request] = receiver.received
    assert request.json()["data"]["exam"]["score"] == 50
    assert request.headers["x-webhook-event"] == "exam.failed"


def test_deactivated_endpoint_gets_nothing_more(admin, app, receiver, learner):
    endpoint, _secret = create_endpoint(admin, receiver.url(), events=["course.completed"])
    completed_event(learner)
    queue_from_ledger(db.session, base_url="http://x", now=utcnow())  # queued, not yet sent
    db.session.commit()
    resp = admin.post(f"{BASE}/{endpoint.id}/deactivate", token_from=BASE)
    assert resp.status_code == 302
    [d] = deliveries()
    assert (d.status, d.last_error) == ("failed", "endpoint deactivated")
    completed_event(learner, "LATER")
    tick(app, utcnow() + timedelta(hours=2))
    assert len(deliveries()) == 1 and receiver.received == []
    admin.post(f"{BASE}/deliveries/{d.id}/retry", token_from=f"{BASE}/deliveries")
    assert deliveries()[0].status == "failed"  # not for an inactive endpoint
    listing = admin.get(BASE).get_data(as_text=True)
    assert 'data-active="no"' in listing and f'id="deactivate-{endpoint.id}"' not in listing
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry).where(
        LedgerEntry.kind == "webhook.endpoint_deactivated")) == 1


def test_test_event_button_sends_a_signed_test_event(admin, app, receiver):
    endpoint, secret = create_endpoint(admin, receiver.url())
    resp = admin.post(f"{BASE}/{endpoint.id}/test", token_from=BASE)
    assert resp.status_code == 302
    assert receiver.received == []  # the admin's request only queued it
    tick(app)
    [request] = receiver.received
    assert request.json()["type"] == "webhook.test"
    assert verify(secret.encode(), request.headers["x-timestamp"], request.body,
                  request.headers["x-signature"])
    assert deliveries()[0].status == "delivered"


def test_delivery_log_filters_and_pages(admin, app, receiver, learner):
    first, _ = create_endpoint(admin, receiver.url(), events=["course.completed"], name="甲")
    second, _ = create_endpoint(admin, receiver.url("/other"), events=["course.completed"],
                                name="乙")
    for n in range(30):
        completed_event(learner, f"C{n}")
    receiver.answer = lambda r: (200, b"") if r.path == "/hook" else (503, b"busy")
    tick(app)
    log = admin.get(f"{BASE}/deliveries").get_data(as_text=True)
    assert "60 deliveries" in log and log.count('id="delivery-') == 50
    page2 = admin.get(f"{BASE}/deliveries?page=2").get_data(as_text=True)
    assert page2.count('id="delivery-') == 10
    only = admin.get(f"{BASE}/deliveries?endpoint_id={second.id}&status=pending").get_data(
        as_text=True)
    assert "30 deliveries" in only and 'data-status="delivered"' not in only
    assert 'data-code="503"' in only
    none = admin.get(f"{BASE}/deliveries?endpoint_id={first.id}&status=failed").get_data(
        as_text=True)
    assert 'id="no-deliveries"' in none


def test_only_admins_reach_the_pages_and_every_change_needs_the_csrf_token(
        admin, app, receiver, people, make_client, learner):
    endpoint, _secret = create_endpoint(admin, receiver.url())
    completed_event(learner)
    tick(app)
    [d] = deliveries()
    people.user("hr1", "hr", "auditor")
    other = make_client()
    other.login("hr1")
    for url in (BASE, f"{BASE}/new", f"{BASE}/deliveries"):
        assert other.get(url).status_code == 403
    for url in (f"{BASE}/new", f"{BASE}/{endpoint.id}/deactivate", f"{BASE}/{endpoint.id}/test",
                f"{BASE}/{endpoint.id}/retry-failed", f"{BASE}/deliveries/{d.id}/retry"):
        assert other.post(url, {"name": "x", "url": "https://e.example/"},
                          token_from="/").status_code == 403
    anonymous = make_client()
    assert anonymous.get(BASE).status_code == 302  # to the login page
    # an admin's POST without the token changes nothing
    assert admin.c.post(f"{BASE}/{endpoint.id}/deactivate").status_code == 400
    assert admin.c.post(f"{BASE}/new", data={"name": "x", "url": "https://e.example/",
                                             "events": ["course.completed"]}).status_code == 400
    db.session.expire_all()
    assert db.session.get(WebhookEndpoint, endpoint.id).is_active
    assert db.session.scalar(select(func.count()).select_from(WebhookEndpoint)) == 1
    assert admin.post(f"{BASE}/deliveries/999999/retry", token_from=BASE).status_code == 404
    assert admin.post(f"{BASE}/999999/deactivate", token_from=BASE).status_code == 404


def test_two_ticks_never_claim_the_same_delivery(admin, app, receiver, learner):
    create_endpoint(admin, receiver.url(), events=["course.completed"])
    for code in ("A", "B", "C"):
        completed_event(learner, code)
    now = utcnow()
    queue_from_ledger(db.session, base_url="http://x", now=now)
    db.session.commit()
    table = WebhookDelivery.__table__
    first = claim(db.session, table, now=now, limit=2)
    second = claim(db.session, table, now=now, limit=10)
    assert len(first) == 2 and len(second) == 1 and not set(first) & set(second)
    assert claim(db.session, table, now=now, limit=10) == []
    # a lease that ran out (the tick died) is taken over
    assert sorted(claim(db.session, table, now=now + timedelta(minutes=16), limit=10)) == \
        sorted(first + second)


def test_the_lms_tick_command_runs_the_webhook_step(admin, app, receiver, learner):
    create_endpoint(admin, receiver.url(), events=["course.completed"])
    completed_event(learner)
    result = app.test_cli_runner().invoke(args=["lms", "tick"])
    out = result.output
    assert "webhooks: 1 deliveries queued from 1 training events; 1 delivered" in out, out
    assert "xapi: disabled (XAPI_LRS_URL is empty)" in out, out
    assert len(receiver.received) == 1
