"""HR grants extra exam attempts to a learner stuck after using them all: the learner
can then start exactly as many more as granted, a pass completes the assignment, every
grant is a ledger entry with its reason, refusals name the field and write nothing, and
the database holds the allowance (an attempt row's ``max_attempts`` is the exam's own or
a grant's total)."""

from __future__ import annotations

import json
import re
from io import BytesIO

import pytest
from exam_support import correct_indices, exam_lesson, make_bank, make_exam_course, served
from pypdf import PdfReader
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from support import Clock

from assessments import exam_taking
from assessments.attempt_grants import GrantRefused, grant_attempts
from assessments.exam_taking import AttemptRefused
from assessments.exams import Exam, ExamAttempt, ExamAttemptGrant
from courses.media import storage
from courses.models import CourseVersion, Enrollment, Lesson
from lms import ledger
from lms.compliance import views as compliance_views
from lms.compliance.engine import sync_completions
from lms.compliance.models import Assignment
from lms.evidence.pack import gather
from lms.extensions import db
from lms.ledger import LedgerEntry, verify
from lms.notify.models import Message

ERROR_FIELD = re.compile(r'<div class="field has-error">\s*<label for="([^"]+)"')


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """One server clock for the exam pages and HR's pages."""
    c = Clock()
    monkeypatch.setattr(exam_taking, "clock", c)
    monkeypatch.setattr(compliance_views, "clock", c)
    return c


@pytest.fixture
def org(people):
    hq = people.department("总部", code="HQ")
    learner = people.user("lilei", "trainee", employee=people.employee(
        "李雷", department=hq, employee_no="E1001"))
    hr = people.user("hr", "hr", employee=people.employee("人事", department=hq,
                                                         employee_no="H1"))
    return {"hq": hq, "learner": learner, "hr": hr}


def _login(make_client, username: str):
    """A client logged in, reading the English UI (the assertions quote its messages)."""
    c = make_client()
    c.login(username)
    c.post("/lang/en", {"next": "/"}, token_from="/")
    return c


@pytest.fixture
def hr(make_client, org):
    return _login(make_client, "hr")


def _assigned(hr, *, code: str = "RISK-PERF-01", max_attempts: int = 2,
              review: str = "score", employee_no: str = "E1001"
              ) -> tuple[Assignment, CourseVersion, Lesson, Exam]:
    """A published course with one exam lesson, assigned by hand to the learner (which
    enrols them)."""
    bank = make_bank(name=f"题库 {code}")
    version = make_exam_course(bank=bank, code=code, max_attempts=max_attempts, review=review)
    response = hr.post("/compliance/assign", {
        "course_id": version.course_id, "employee_nos": employee_no,
        "due_working_days": "10", "reason": "绩效制度培训"}, token_from="/compliance/assign")
    assert response.status_code == 200, response.get_data(as_text=True)
    assignment = db.session.scalar(select(Assignment).where(
        Assignment.version_id == version.id))
    assert assignment is not None and assignment.enrollment_id is not None
    lesson = exam_lesson(version)
    exam = db.session.scalar(select(Exam).where(Exam.lesson_id == lesson.id))
    return assignment, version, lesson, exam


def _attempt(user, lesson: Lesson, *, passing: bool) -> ExamAttempt:
    """One whole attempt through the service: start, answer (right or not at all), submit."""
    attempt = exam_taking.start_attempt(db.session, user=user, lesson=lesson, ip="10.0.0.1",
                                        user_agent="pytest")
    if passing:
        for q in served(attempt):
            exam_taking.save_answer(db.session, attempt=attempt, position=q["position"],
                                    indices=correct_indices(q))
    exam_taking.submit(db.session, attempt=attempt)
    db.session.commit()
    assert attempt.passed is passing
    return attempt


def _grant_url(assignment: Assignment) -> str:
    return f"/compliance/assignments/{assignment.id}/grant-attempts"


def _page(assignment: Assignment) -> str:
    return f"/compliance/assignments/{assignment.id}"


def _grant(hr, assignment: Assignment, exam: Exam, **data):
    form = {"exam_id": str(exam.id), "extra": "1", "reason": "已完成一对一辅导，重新学习制度"}
    form.update(data)
    return hr.post(_grant_url(assignment), form, token_from=_page(assignment))


def _errors(response) -> set[str]:
    return set(ERROR_FIELD.findall(response.get_data(as_text=True)))


def _count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def _ledger(kind: str) -> list[LedgerEntry]:
    return list(db.session.scalars(select(LedgerEntry).where(LedgerEntry.kind == kind)
                                   .order_by(LedgerEntry.seq)))


def _standing(html: str, exam: Exam) -> dict[str, str]:
    row = re.search(rf'<tr data-exam-id="{exam.id}"([^>]*)>', html)
    assert row, "no exam row on HR's page"
    return dict(re.findall(r'data-(\w+)="([^"]*)"', row.group(1)))


# --- the whole story ------------------------------------------------------------------------


def test_a_grant_gives_exactly_the_extra_attempts_and_a_pass_completes(
        hr, make_client, org, clock):
    learner = org["learner"]
    assignment, _version, lesson, exam = _assigned(hr, max_attempts=2)
    _attempt(learner, lesson, passing=False)
    _attempt(learner, lesson, passing=False)
    with pytest.raises(AttemptRefused) as refused:
        exam_taking.start_attempt(db.session, user=learner, lesson=lesson, ip=None,
                                  user_agent=None)
    assert refused.value.code == "no_attempts"
    db.session.rollback()

    me = _login(make_client, "lilei")
    intro = me.get(f"/exams/lessons/{lesson.id}").get_data(as_text=True)
    assert 'data-state="no_attempts"' in intro and "Contact HR" in intro

    # HR sees the learner stuck and the form; a trainee sees nothing of it.
    html = hr.get(_page(assignment)).get_data(as_text=True)
    assert _standing(html, exam) == {"used": "2", "allowed": "2", "granted": "0",
                                     "passed": "false"}
    assert f'class="grant-attempts" data-exam-id="{exam.id}"' in html
    assert me.get(_page(assignment)).status_code == 403

    granted = _grant(hr, assignment, exam, extra="1")
    assert granted.status_code == 302
    assert granted.headers["Location"].endswith(f"{_page(assignment)}#exams")
    [grant] = db.session.scalars(select(ExamAttemptGrant)).all()
    assert (grant.enrollment_id, grant.exam_id, grant.extra, grant.allowed) == (
        assignment.enrollment_id, exam.id, 1, 3)
    assert grant.granted_by_id == org["hr"].id and grant.granted_at == clock.now
    [entry] = _ledger("exam.attempts_granted")
    payload = json.loads(entry.payload)
    assert entry.actor_id == org["hr"].id and entry.subject == f"exam_attempt_grant:{grant.id}"
    assert payload["reason"] == "已完成一对一辅导，重新学习制度"
    assert (payload["extra"], payload["allowed_before"], payload["allowed_now"]) == (1, 2, 3)
    assert (payload["employee_no"], payload["user"], payload["exam_id"],
            payload["enrollment_id"]) == ("E1001", "lilei", exam.id, assignment.enrollment_id)
    [message] = db.session.scalars(select(Message).where(
        Message.recipient_user_id == learner.id, Message.kind == "notice")).all()
    assert message.link == f"/exams/lessons/{lesson.id}" and "共有 3 次" in message.body
    html = hr.get(_page(assignment)).get_data(as_text=True)
    assert _standing(html, exam)["allowed"] == "3" and "grant-attempts" not in html
    assert "已完成一对一辅导" in html  # the grant is listed with its reason

    # The learner sees one attempt left and starts it from the page.
    intro = me.get(f"/exams/lessons/{lesson.id}").get_data(as_text=True)
    assert 'data-left="1"' in intro and 'data-max="3"' in intro and 'data-granted="1"' in intro
    started = me.post(f"/exams/lessons/{lesson.id}/start",
                      token_from=f"/exams/lessons/{lesson.id}")
    assert started.status_code == 302 and "/exams/attempts/" in started.headers["Location"]
    third = db.session.scalar(select(ExamAttempt).where(ExamAttempt.number == 3))
    assert third.max_attempts == 3  # the row carries the granted allowance
    exam_taking.submit(db.session, attempt=third)  # nothing answered: failed
    db.session.commit()
    with pytest.raises(AttemptRefused) as refused:
        exam_taking.start_attempt(db.session, user=learner, lesson=lesson, ip=None,
                                  user_agent=None)
    assert refused.value.code == "no_attempts"  # exactly one more, no more
    db.session.rollback()
    refused_page = me.post(f"/exams/lessons/{lesson.id}/start",
                           token_from=f"/exams/lessons/{lesson.id}", follow_redirects=True)
    assert "all 3 attempts" in refused_page.get_data(as_text=True)

    # A second grant adds to the first; the fourth attempt passes and completes.
    assert _grant(hr, assignment, exam, extra="1", reason="第二次辅导").status_code == 302
    assert [g.allowed for g in db.session.scalars(
        select(ExamAttemptGrant).order_by(ExamAttemptGrant.id))] == [3, 4]
    fourth = _attempt(learner, lesson, passing=True)
    assert (fourth.number, fourth.max_attempts) == (4, 4)
    sync_completions(db.session, now=clock.now)
    db.session.commit()
    db.session.refresh(assignment)
    assert assignment.status == "completed"
    assert verify(db.session).ok
    assert exam_taking.verify_attempt(db.session, fourth) == []


# --- refusals -------------------------------------------------------------------------------


def test_bad_input_names_the_field_and_writes_nothing(hr, org, clock):
    assignment, _version, lesson, exam = _assigned(hr, max_attempts=1)
    _attempt(org["learner"], lesson, passing=False)
    before = _count(LedgerEntry)
    for data, field in (({"reason": "  "}, "reason"), ({"extra": "0"}, "extra"),
                        ({"extra": "6"}, "extra"), ({"extra": ""}, "extra"),
                        ({"extra": "两次"}, "extra"), ({"reason": "x" * 501}, "reason")):
        refused = _grant(hr, assignment, exam, **data)
        assert refused.status_code == 422, data
        assert _errors(refused) == {field}, data
    assert _count(ExamAttemptGrant) == 0 and _count(LedgerEntry) == before
    assert _count(Message) == 0


def test_no_grant_while_attempts_remain_or_after_a_pass(hr, org, clock):
    learner = org["learner"]
    assignment, _version, lesson, exam = _assigned(hr, max_attempts=2)
    _attempt(learner, lesson, passing=False)
    refused = _grant(hr, assignment, exam)
    assert refused.status_code == 409
    assert "still has 1 of 2 attempts left" in refused.get_data(as_text=True)
    assert 'class="grant-attempts"' not in hr.get(_page(assignment)).get_data(as_text=True)

    _attempt(learner, lesson, passing=True)
    refused = _grant(hr, assignment, exam)
    assert refused.status_code == 409
    assert "passed this exam already" in refused.get_data(as_text=True)
    html = hr.get(_page(assignment)).get_data(as_text=True)
    assert _standing(html, exam)["passed"] == "true"
    assert _count(ExamAttemptGrant) == 0 and not _ledger("exam.attempts_granted")


def test_no_grant_while_an_attempt_runs_nor_for_a_superseded_round(hr, org, clock):
    learner = org["learner"]
    assignment, _version, lesson, exam = _assigned(hr, max_attempts=1)
    exam_taking.start_attempt(db.session, user=learner, lesson=lesson, ip=None,
                              user_agent=None)
    db.session.commit()
    refused = _grant(hr, assignment, exam)
    assert refused.status_code == 409 and "attempt running" in refused.get_data(as_text=True)
    # Once its time is up it is scored first, and the grant then fits.
    clock.advance(21 * 60 + exam_taking.GRACE_SECONDS)
    assert _grant(hr, assignment, exam).status_code == 302
    assert db.session.scalar(select(ExamAttempt.end_reason)) == "timeout"

    db.session.execute(update(Enrollment).where(Enrollment.id == assignment.enrollment_id)
                       .values(superseded_at=clock.now))
    db.session.commit()
    with pytest.raises(GrantRefused) as refused_round:
        grant_attempts(db.session, enrollment_id=assignment.enrollment_id, exam_id=exam.id,
                       extra=1, reason="复训", actor_id=org["hr"].id, now=clock.now)
    assert "" in refused_round.value.errors
    db.session.rollback()
    assert _count(ExamAttemptGrant) == 1


def test_another_versions_exam_is_404_and_only_hr_may_grant(hr, make_client, people, org,
                                                           clock):
    assignment, _version, lesson, exam = _assigned(hr, max_attempts=1)
    _attempt(org["learner"], lesson, passing=False)
    _other, _v2, _l2, foreign = _assigned(hr, code="RISK-OTHER-01", max_attempts=1,
                                          employee_no="H1")
    assert _grant(hr, assignment, foreign).status_code == 404
    assert hr.post(_grant_url(assignment), {"exam_id": "999999", "extra": "1", "reason": "x"},
                   token_from=_page(assignment)).status_code == 404
    assert hr.post(_grant_url(assignment), {"extra": "1", "reason": "x"},
                   token_from=_page(assignment)).status_code == 404
    assert hr.post("/compliance/assignments/999999/grant-attempts",
                   {"exam_id": str(exam.id), "extra": "1", "reason": "x"},
                   token_from=_page(assignment)).status_code == 404
    # Without the CSRF token: refused before anything is read.
    assert hr.c.post(_grant_url(assignment), data={"exam_id": str(exam.id), "extra": "1",
                                                   "reason": "x"}).status_code == 400
    for username, roles in (("lilei", None), ("boss", "manager"), ("author", "trainer")):
        if roles:
            people.user(username, roles)
        other = _login(make_client, username)
        assert _grant(other, assignment, exam).status_code == 403, username
    assert _count(ExamAttemptGrant) == 0


def test_the_grant_form_warns_when_the_learner_saw_the_key(hr, org, clock):
    assignment, _version, lesson, _exam = _assigned(hr, max_attempts=1,
                                                   review="answers_when_done")
    _attempt(org["learner"], lesson, passing=False)
    html = hr.get(_page(assignment)).get_data(as_text=True)
    assert 'data-warning="key-seen"' in html


# --- the database holds the allowance --------------------------------------------------------


def _attempt_row(exam: Exam, enrolment_id: int, user_id: int, **values) -> dict:
    now = exam_taking.clock()
    row = {"exam_id": exam.id, "max_attempts": exam.max_attempts, "user_id": user_id,
           "enrollment_id": enrolment_id, "lesson_id": exam.lesson_id, "number": 1,
           "seed": "s", "started_at": now, "deadline_at": now, "served": "[]",
           "served_sha256": "0" * 64, "question_count": 0}
    row.update(values)
    return row


def test_the_database_refuses_allowances_nobody_granted(hr, org, clock):
    assignment, _version, _lesson, exam = _assigned(hr, max_attempts=2)
    eid, uid = assignment.enrollment_id, org["learner"].id
    attempts = ExamAttempt.__table__
    grants = ExamAttemptGrant.__table__
    grant = {"enrollment_id": eid, "exam_id": exam.id, "reason": "辅导",
             "granted_by_id": org["hr"].id, "granted_at": clock.now}
    for forged in ({"number": 3, "max_attempts": 3}, {"number": 1, "max_attempts": 3},
                   {"number": 3}):
        with pytest.raises(IntegrityError):
            db.session.execute(insert(attempts).values(**_attempt_row(exam, eid, uid, **forged)))
        db.session.rollback()
    for wrong in ({"extra": 1, "allowed": 4}, {"extra": 1, "allowed": 2},
                  {"extra": 6, "allowed": 8}):
        with pytest.raises(IntegrityError):
            db.session.execute(insert(grants).values(**grant, **wrong))
        db.session.rollback()
    db.session.execute(insert(grants).values(**grant, extra=1, allowed=3))
    db.session.execute(insert(attempts).values(**_attempt_row(exam, eid, uid, number=3,
                                                             max_attempts=3)))
    db.session.commit()
    # A second grant computed from the same total (a concurrent request) cannot count.
    with pytest.raises(IntegrityError):
        db.session.execute(insert(grants).values(**grant, extra=1, allowed=3))
    db.session.rollback()
    # A grant is evidence: never changed or deleted.
    for sql in ("UPDATE exam_attempt_grants SET extra = 2", "DELETE FROM exam_attempt_grants"):
        with pytest.raises(DBAPIError):
            db.session.execute(text(sql))
        db.session.rollback()
    assert _count(ExamAttemptGrant) == 1 and _count(ExamAttempt) == 1


# --- the evidence pack ----------------------------------------------------------------------


def test_the_evidence_pack_lists_the_grant_with_its_ledger_entry(app, hr, org, clock,
                                                                 tmp_path):
    assignment, _version, lesson, exam = _assigned(hr, max_attempts=1)
    _attempt(org["learner"], lesson, passing=False)
    assert _grant(hr, assignment, exam, reason="主管辅导后复考").status_code == 302
    chain = ledger.verify(db.session)
    pack = gather(db.session, org["learner"].employee, chain=chain, store=storage())
    [view] = [lv for e in pack.enrolments for lv in e.lessons if lv.lesson.id == lesson.id]
    [grant] = view.grants
    assert grant.row.reason == "主管辅导后复考" and grant.row.allowed == 2
    assert grant.record is not None and grant.record.kind == "exam.attempts_granted"
    assert pack.intact

    app.config["EVIDENCE_SIGNING_DIR"] = str(tmp_path / "signing")
    url = f"/evidence/employees/{org['learner'].employee_id}"
    response = hr.post(f"{url}/pack", {"course": ""}, token_from=url)
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    text_ = "\n".join(p.extract_text() for p in PdfReader(BytesIO(response.data)).pages)
    assert "Extra exam attempts granted by HR" in text_ and "主管辅导后复考" in text_
