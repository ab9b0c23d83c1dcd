"""xAPI statements and webhook bodies built from training events, checked against Ralph's
models of the xAPI 1.0.3 statement rules (ralph-malph), and against what must never
leave the system (ID numbers, IPs, names)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from ralph.models.xapi.base.statements import BaseXapiStatement

from integrations.events import (
    CourseRef,
    Learner,
    Lookups,
    TrainingEvent,
    describe,
    event_uuid,
)
from integrations.webhooks.payloads import body_text, event_payload
from integrations.xapi.statements import VERBS, build_statement, registration_uuid

BASE = "https://lms.example.com"
AT = datetime(2026, 9, 28, 2, 0, 5, 123456, tzinfo=UTC)
LEARNER = Learner(user_id=7, username="lilei", employee_no="E10001", email="Li.Lei@Example.COM")
COURSE = CourseRef(code="RISK-PERF-01", version=None, title_zh="绩效管理制度培训",
                   title_en="Performance management")

# Ledger payloads shaped as courses/tracking.py, assessments/exam_taking.py and
# assessments/signing.py write them (with the fields that must not travel).
COURSE_DONE = {"user": "lilei", "employee_no": "E10001", "course_code": "RISK-PERF-01",
               "version_number": 2, "content_hash": "c0" * 32, "completed_at": AT.isoformat(),
               "enrollment_id": 31, "cycle": 1, "lessons": []}
LESSON_DONE = {"user": "lilei", "employee_no": "E10001", "course_code": "RISK-PERF-01",
               "version_number": 2, "lesson_id": 55, "lesson_kind": "video",
               "lesson_position": 1, "lesson_title": "绩效制度讲解", "enrollment_id": 31,
               "cycle": 1, "watched_seconds": 300.0, "coverage": 0.99}
EXAM = {"user": "lilei", "employee_no": "E10001", "course_code": "RISK-PERF-01",
        "version_number": 2, "lesson_id": 56, "lesson_title": "绩效制度测验", "exam_id": 9,
        "attempt_id": 77, "number": 2, "pass_score": 80, "score": 85, "passed": True,
        "correct_count": 17, "question_count": 20, "end_reason": "submitted",
        "ip": "10.1.2.3"}
SIGNED = {"verification_code": "ABCDEFGHJK", "user_id": 7, "employee_id": 3,
          "employee_no": "E10001", "signer_name": "李雷", "id_number_masked": "110************23X",
          "policy_document_id": 4, "policy_version_id": 12, "version_number": 3,
          "document_sha256": "d0" * 32, "lesson_id": 57, "statement": "本人已阅读并理解…",
          "statement_sha256": "5a" * 32, "ip": "10.1.2.3", "user_agent": "TestBrowser/1.0",
          "policy_name": "绩效管理制度", "enrollment_id": 31}


def lookups(**extra) -> Lookups:
    return Lookups(users={7: LEARNER}, courses={"RISK-PERF-01": COURSE},
                   lesson_courses={57: CourseRef("RISK-PERF-01", 2, "绩效管理制度培训", "")},
                   attempt_enrolments={77: 31}, **extra)


def event(kind: str, payload: dict, seq: int = 101, look: Lookups | None = None
          ) -> TrainingEvent:
    result = describe(seq=seq, hash="ab" * 32, at=AT, kind=kind, actor_id=7, payload=payload,
                      lookups=look or lookups())
    assert result is not None
    return result


def validated(statement: dict) -> BaseXapiStatement:
    """Ralph's model of a statement: raises on anything the xAPI rules forbid."""
    return BaseXapiStatement.model_validate(statement)


ALL = [("course.completed", COURSE_DONE), ("lesson.completed", LESSON_DONE),
       ("exam.submitted", EXAM), ("exam.submitted", {**EXAM, "passed": False, "score": 40}),
       ("policy.signed", SIGNED)]


@pytest.mark.parametrize(("kind", "payload"), ALL)
def test_every_event_kind_makes_a_statement_ralph_accepts(kind, payload):
    statement = build_statement(event(kind, payload), base_url=BASE)
    model = validated(statement)
    assert model.id == uuid.UUID(statement["id"])
    assert "version" not in statement  # the LRS sets it (xAPI: providers SHOULD NOT)
    assert statement["timestamp"] == "2026-09-28T02:00:05.123456Z"  # the ledger entry's time
    assert statement["context"]["language"] == "zh-CN"
    assert statement["context"]["extensions"][f"{BASE}/xapi/extensions/ledger"] == {
        "seq": 101, "hash": "ab" * 32}
    assert statement["object"]["id"].startswith(f"{BASE}/xapi/activities/")


def test_course_completion_statement():
    s = build_statement(event("course.completed", COURSE_DONE), base_url=BASE)
    assert s["verb"] == VERBS["completed"]
    assert s["verb"]["id"] == "http://adlnet.gov/expapi/verbs/completed"
    assert s["object"] == {"objectType": "Activity",
                           "id": f"{BASE}/xapi/activities/course/RISK-PERF-01",
                           "definition": {"type": "http://adlnet.gov/expapi/activities/course",
                                          "name": {"zh-CN": "绩效管理制度培训",
                                                   "en-US": "Performance management"}}}
    assert s["result"] == {"completion": True}
    assert s["context"]["revision"] == "v2"
    assert s["context"]["registration"] == str(registration_uuid(BASE, 31))
    assert "contextActivities" not in s["context"]


def test_exam_statements_carry_score_and_success_under_the_course():
    passed = build_statement(event("exam.submitted", EXAM), base_url=BASE)
    assert passed["verb"]["id"] == "http://adlnet.gov/expapi/verbs/passed"
    assert passed["object"]["definition"]["type"] == "http://adlnet.gov/expapi/activities/assessment"
    assert passed["object"]["id"] == f"{BASE}/xapi/activities/exam/9"
    assert passed["result"] == {"score": {"scaled": 0.85, "raw": 85, "min": 0, "max": 100},
                                "success": True, "completion": True}
    [parent] = passed["context"]["contextActivities"]["parent"]
    assert parent["id"] == f"{BASE}/xapi/activities/course/RISK-PERF-01"
    # the attempt's enrolment, looked up: the same registration as the course's statements
    assert passed["context"]["registration"] == str(registration_uuid(BASE, 31))
    failed = build_statement(event("exam.submitted", {**EXAM, "passed": False, "score": 40}),
                             base_url=BASE)
    assert failed["verb"]["id"] == "http://adlnet.gov/expapi/verbs/failed"
    assert failed["result"]["success"] is False and failed["result"]["score"]["scaled"] == 0.4


def test_signature_is_an_accepted_policy_document_with_its_hashes():
    s = build_statement(event("policy.signed", SIGNED), base_url=BASE)
    assert s["verb"]["id"] == "http://activitystrea.ms/schema/1.0/accept"
    assert s["object"]["id"] == f"{BASE}/xapi/activities/policy/4"
    assert s["object"]["definition"] == {"type": "http://id.tincanapi.com/activitytype/document",
                                         "name": {"zh-CN": "绩效管理制度"}}
    assert s["context"]["revision"] == "v3"
    assert s["result"]["extensions"] == {f"{BASE}/xapi/extensions/document-sha256": "d0" * 32,
                                         f"{BASE}/xapi/extensions/statement-sha256": "5a" * 32}
    assert s["context"]["contextActivities"]["parent"][0]["id"].endswith("/course/RISK-PERF-01")


def test_actor_is_the_mailbox_when_usable_else_the_employee_account():
    s = build_statement(event("course.completed", COURSE_DONE), base_url=BASE)
    assert s["actor"] == {"objectType": "Agent", "mbox": "mailto:Li.Lei@example.com"}
    for email in (None, "", "not-an-address", "a@b"):
        look = lookups()
        look.users[7] = Learner(7, "lilei", "E10001", email)
        s = build_statement(event("course.completed", COURSE_DONE, look=look), base_url=BASE)
        assert s["actor"] == {"objectType": "Agent",
                              "account": {"homePage": BASE, "name": "E10001"}}
        validated(s)
    look = lookups()
    look.users[7] = Learner(7, "admin2", None, None)  # a login without an employee record
    s = build_statement(event("course.completed", COURSE_DONE, look=look), base_url=BASE)
    assert s["actor"]["account"]["name"] == "admin2"


def test_ids_are_stable_per_ledger_entry_and_installation():
    one = build_statement(event("course.completed", COURSE_DONE, seq=5), base_url=BASE)
    again = build_statement(event("course.completed", COURSE_DONE, seq=5), base_url=BASE + "/")
    other_seq = build_statement(event("course.completed", COURSE_DONE, seq=6), base_url=BASE)
    other_site = build_statement(event("course.completed", COURSE_DONE, seq=5),
                                 base_url="https://other.example.com")
    assert one["id"] == again["id"] == str(event_uuid(BASE, 5))
    assert uuid.UUID(one["id"]).version == 5
    assert len({one["id"], other_seq["id"], other_site["id"]}) == 3
    assert registration_uuid(BASE, 31) != registration_uuid(BASE, 32)


def test_ralph_really_refuses_a_broken_statement():
    """The validator is not vacuous: the rules our builder keeps are enforced by it."""
    good = build_statement(event("exam.submitted", EXAM), base_url=BASE)
    broken = json.loads(json.dumps(good))
    broken["result"]["score"]["scaled"] = 1.5  # scaled lies in [-1, 1]
    with pytest.raises(ValidationError):
        validated(broken)
    broken = json.loads(json.dumps(good))
    broken["object"]["definition"]["name"] = {"zh-CN": ""}  # no empty strings
    with pytest.raises(ValidationError):
        validated(broken)
    broken = json.loads(json.dumps(good))
    broken["actor"] = {"objectType": "Agent", "mbox": "li.lei@example.com"}  # needs mailto:
    with pytest.raises(ValidationError):
        validated(broken)


def test_a_course_without_a_chinese_title_is_named_by_its_code():
    look = Lookups(users={7: LEARNER})  # the course row is gone: the payload still names it
    s = build_statement(event("course.completed", COURSE_DONE, look=look), base_url=BASE)
    assert s["object"]["definition"]["name"] == {"zh-CN": "RISK-PERF-01"}
    validated(s)


@pytest.mark.parametrize(("kind", "payload"), ALL)
def test_nothing_personal_beyond_the_identifier_leaves(kind, payload):
    ev = event(kind, payload)
    for text in (json.dumps(build_statement(ev, base_url=BASE), ensure_ascii=False),
                 body_text(event_payload(ev, base_url=BASE))):
        for secret in ("110************23X", "10.1.2.3", "TestBrowser", "李雷", "ABCDEFGHJK"):
            assert secret not in text


def test_webhook_body_names_the_event_and_its_ledger_entry():
    ev = event("exam.submitted", EXAM)
    body = event_payload(ev, base_url=BASE)
    assert body["id"] == str(event_uuid(BASE, 101))
    assert body["type"] == "exam.passed"
    assert body["occurred_at"] == "2026-09-28T02:00:05.123456Z"
    assert body["ledger"] == {"seq": 101, "hash": "ab" * 32}
    assert body["data"]["employee_no"] == "E10001"
    assert body["data"]["course"] == {"code": "RISK-PERF-01", "title": "绩效管理制度培训",
                                      "title_en": "Performance management", "version": 2}
    assert body["data"]["exam"]["score"] == 85 and body["data"]["exam"]["passed"] is True
    signed = event_payload(event("policy.signed", SIGNED), base_url=BASE)
    assert signed["type"] == "policy.signed"
    assert signed["data"]["policy"] == {"document_id": 4, "name": "绩效管理制度", "version": 3,
                                        "document_sha256": "d0" * 32,
                                        "statement_sha256": "5a" * 32}
    # the body as sent: UTF-8 JSON, Chinese as is
    assert "绩效管理制度" in body_text(signed)


def test_other_ledger_kinds_are_not_events():
    assert describe(seq=1, hash="0" * 64, at=AT, kind="user.created", actor_id=None,
                    payload={}, lookups=Lookups()) is None
