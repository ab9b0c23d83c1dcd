"""Policy acknowledgements through the real pages: the server measures the reading time,
the signer re-enters the password and types the name on record, nobody signs for anyone
else, and /verify notices any later edit of the row or the document."""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from support import PASSWORD, Clock

from assessments import signing
from assessments.policies import PolicyDocument, PolicyReading, PolicyVersion, Signature
from courses.media import storage
from courses.models import Course, CourseVersion, Enrollment, Lesson, LessonProgress
from lms.auth.models import LoginFailure
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.ledger import LedgerEntry, verify

READING_RE = re.compile(r'name="reading" type="hidden" value="([^"]+)"|'
                        r'type="hidden" name="reading" value="([^"]+)"|'
                        r'name="reading"[^>]*value="([^"]+)"')
CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|'
                     r'name="csrf_token"[^>]*value="([^"]+)"')
BODY = "第一条 为规范绩效管理，制定本制度。\n\n第二条 绩效考核每季度进行一次。"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"



@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(signing, "clock", c)
    return c


def make_policy(name: str = "绩效管理制度", *, body: str = BODY, min_seconds: int = 60
                ) -> PolicyVersion:
    document = db.session.scalar(select(PolicyDocument).where(PolicyDocument.name == name))
    if document is None:
        document = signing.create_document(db.session, name=name, statement_template=None,
                                           min_reading_seconds=min_seconds, actor_id=None)
    version = signing.add_text_version(db.session, document, body=body, actor_id=None)
    signing.publish_version(db.session, version, actor_id=None)
    db.session.commit()
    return version


def make_course(policy: PolicyVersion, *, code: str = "RISK-PERF-01",
                number: int = 1, course: Course | None = None) -> CourseVersion:
    course = course or Course(code=code, title_zh="绩效管理", risk_topic="performance")
    version = CourseVersion(course=course, number=number, status="draft")
    db.session.add_all([course, version])
    db.session.flush()
    db.session.add(Lesson(version=version, position=1, kind="policy", title="签署《绩效管理制度》",
                          policy_version_id=policy.id))
    db.session.flush()
    version.status = "published"
    version.content_hash = "c0" * 32
    version.published_at = utcnow()
    db.session.commit()
    return version


def enrol(user, version: CourseVersion) -> Lesson:
    db.session.add(Enrollment(user_id=user.id, version_id=version.id, source="manual"))
    db.session.commit()
    return version.lessons[0]


@pytest.fixture
def learner(people):
    emp = people.employee("李雷", employee_no="E10001")
    emp.id_number_masked = "110************23X"
    db.session.commit()
    return people.user("lilei", "trainee", employee=emp)


@pytest.fixture
def policy(app) -> PolicyVersion:
    return make_policy()


@pytest.fixture
def lesson(learner, policy) -> Lesson:
    return enrol(learner, make_course(policy))


def open_page(client, lesson_id: int) -> tuple[str, str, str]:
    """GET the signing page as a browser: (html, csrf token, reading token)."""
    resp = client.get(f"/policies/lessons/{lesson_id}")
    assert resp.status_code == 200, resp.data
    html = resp.get_data(as_text=True)
    csrf = next(g for g in CSRF_RE.search(html).groups() if g)
    match = READING_RE.search(html)
    reading = next(g for g in match.groups() if g) if match else ""
    return html, csrf, reading


def sign(client, lesson_id: int, *, csrf: str, reading: str, name: str = "李雷",
         password: str | None = None, headers: dict | None = None, **extra):
    data = {"csrf_token": csrf, "reading": reading, "full_name": name,
            "password": PASSWORD if password is None else password, **extra}
    return client.c.post(f"/policies/lessons/{lesson_id}/sign", data=data, headers=headers)


def signatures() -> int:
    return db.session.scalar(select(func.count()).select_from(Signature))


def entries(kind: str) -> list[LedgerEntry]:
    return list(db.session.scalars(select(LedgerEntry).where(LedgerEntry.kind == kind)))


def test_page_shows_document_and_exact_statement_and_signing_too_early_is_refused(
        client, lesson, clock):
    client.login("lilei")
    html, csrf, reading = open_page(client, lesson.id)
    assert "第二条 绩效考核每季度进行一次。" in html
    assert "本人已阅读并理解《绩效管理制度》（第 1 版）的全部内容，同意遵守。" in html
    clock.advance(30)
    resp = sign(client, lesson.id, csrf=csrf, reading=reading)
    assert resp.status_code == 409
    assert "请先阅读文档：30 秒后才能签署。" in resp.get_data(as_text=True)
    assert signatures() == 0
    assert db.session.scalar(select(LessonProgress.completed_at)) is None


def test_reading_time_is_measured_from_the_servers_record_not_the_form(client, lesson, clock):
    client.login("lilei")
    _html, csrf, reading = open_page(client, lesson.id)
    clock.advance(61)
    # a reading token of nobody, or a made-up "served at" time, proves nothing
    resp = sign(client, lesson.id, csrf=csrf, reading="forged", served_at="2000-01-01")
    assert resp.status_code == 302 and signatures() == 0
    db.session.expire_all()
    served = db.session.scalar(select(PolicyReading.served_at).where(PolicyReading.token == reading))
    assert served is not None


def test_wrong_password_refused_and_counted_as_login_failure(client, lesson, clock):
    client.login("lilei")
    _html, csrf, reading = open_page(client, lesson.id)
    clock.advance(61)
    resp = sign(client, lesson.id, csrf=csrf, reading=reading, password="wrong-password-1")
    assert resp.status_code == 401
    assert "密码不正确，本次未签署。" in resp.get_data(as_text=True)
    assert signatures() == 0 and entries("policy.signed") == []
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(LoginFailure)
                             .where(LoginFailure.username == "lilei")) == 1


def test_signing_is_throttled_like_login(client, lesson, clock, app):
    app.config["LOGIN_MAX_FAILURES"] = 2
    client.login("lilei")
    _html, csrf, reading = open_page(client, lesson.id)
    clock.advance(61)
    for _ in range(2):
        assert sign(client, lesson.id, csrf=csrf, reading=reading,
                    password="nope-nope-nope").status_code == 401
    resp = sign(client, lesson.id, csrf=csrf, reading=reading)  # even the right password
    assert resp.status_code == 429 and signatures() == 0


def test_wrong_name_refused(client, lesson, clock):
    client.login("lilei")
    _html, csrf, reading = open_page(client, lesson.id)
    clock.advance(61)
    resp = sign(client, lesson.id, csrf=csrf, reading=reading, name="韩梅梅")
    assert resp.status_code == 422
    assert "您输入的姓名与您的员工档案不一致，本次未签署。" in resp.get_data(as_text=True)
    assert signatures() == 0


def test_user_without_employee_record_cannot_sign(client, people, policy, clock):
    user = people.user("contractor", "trainee")
    lesson = enrol(user, make_course(policy))
    client.login("contractor")
    html, csrf, reading = open_page(client, lesson.id)
    assert "您的账号没有关联员工档案" in html
    clock.advance(61)
    resp = sign(client, lesson.id, csrf=csrf, reading=reading, name="contractor")
    assert resp.status_code == 403 and signatures() == 0


def test_signing_records_everything_appends_ledger_and_completes_lesson_and_course(
        client, lesson, learner, policy, clock):
    client.login("lilei")
    _html, csrf, reading = open_page(client, lesson.id)
    clock.advance(75)
    resp = sign(client, lesson.id, csrf=csrf, reading=reading, name=" 李雷　",
                headers={"User-Agent": "TestBrowser/1.0"})
    assert resp.status_code == 302 and "/policies/receipts/" in resp.headers["Location"]
    sig = db.session.scalar(select(Signature))
    assert (sig.user_id, sig.employee_no, sig.id_number_masked) == (
        learner.id, "E10001", "110************23X")
    assert (sig.policy_version_id, sig.version_number, sig.document_sha256) == (
        policy.id, 1, policy.sha256)
    assert sig.statement == "本人已阅读并理解《绩效管理制度》（第 1 版）的全部内容，同意遵守。"
    assert sig.reading_seconds == 75.0 and sig.auth_method == "password"
    assert sig.user_agent == "TestBrowser/1.0" and sig.ip
    assert len(sig.verification_code) == 10
    [entry] = entries("policy.signed")
    assert (sig.ledger_seq, sig.ledger_hash) == (entry.seq, entry.hash)
    payload = json.loads(entry.payload)
    assert payload["statement_sha256"] == sig.statement_sha256
    assert payload["document_sha256"] == policy.sha256 and payload["ip"] == sig.ip
    progress = db.session.scalar(select(LessonProgress))
    assert progress.completed_at is not None and progress.completion_ledger_seq == entry.seq
    assert db.session.scalar(select(Enrollment.completed_at)) is not None
    [done] = entries("course.completed")
    assert json.loads(done.payload)["lessons"] == [{"lesson_id": lesson.id, "kind": "policy",
                                                    "ledger_seq": entry.seq,
                                                    "ledger_hash": entry.hash}]
    assert verify(db.session).ok
    receipt = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert sig.verification_code in receipt
    # the course page now shows the lesson done
    page = client.get(f"/policies/lessons/{lesson.id}").get_data(as_text=True)
    assert 'data-state="signed"' in page
    # the receipt message: in the signer's inbox, with the code, opened from there
    from lms.notify.models import Message

    [message] = db.session.scalars(select(Message).where(Message.recipient_user_id == sig.user_id))
    assert message.kind == "receipt" and sig.verification_code in message.body
    assert "绩效管理制度" in message.subject and policy.sha256 in message.body
    inbox = client.get("/inbox").get_data(as_text=True)
    assert "绩效管理制度" in inbox
    assert sig.verification_code in client.get(f"/inbox/{message.id}").get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Message, message.id).read_at is not None


def test_replayed_post_is_refused_and_creates_nothing(client, lesson, clock):
    client.login("lilei")
    _html, csrf, reading = open_page(client, lesson.id)
    clock.advance(61)
    assert sign(client, lesson.id, csrf=csrf, reading=reading).status_code == 302
    count = db.session.scalar(select(func.count()).select_from(LedgerEntry))
    resp = sign(client, lesson.id, csrf=csrf, reading=reading)
    assert resp.status_code == 302
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "您此前已签署过此版本，本次未新增记录。" in page
    assert signatures() == 1
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == count


def test_nobody_signs_for_someone_else(client, make_client, people, lesson, learner, clock):
    other = people.user("hanmeimei", "trainee",
                        employee=people.employee("韩梅梅", employee_no="E10002"))
    enrol(other, lesson.version)
    client.login("lilei")
    _html, _csrf, reading = open_page(client, lesson.id)
    clock.advance(61)
    # hanmeimei posts lilei's reading token and forged user fields: refused, nothing signed
    other_client = make_client()
    other_client.login("hanmeimei")
    _h, other_csrf, _r = open_page(other_client, lesson.id)
    resp = sign(other_client, lesson.id, csrf=other_csrf, reading=reading, name="李雷",
                user_id=str(learner.id), employee_no="E10001")
    assert resp.status_code == 302 and signatures() == 0
    # with her own reading and forged ids she signs only for herself
    _h, other_csrf, her_reading = open_page(other_client, lesson.id)
    clock.advance(61)
    resp = sign(other_client, lesson.id, csrf=other_csrf, reading=her_reading, name="韩梅梅",
                user_id=str(learner.id))
    assert resp.status_code == 302
    assert db.session.scalars(select(Signature.user_id)).all() == [other.id]


def test_hr_cannot_sign_on_behalf(client, people, lesson, clock):
    people.user("hr1", "hr", employee=people.employee("王芳", employee_no="E90001"))
    client.login("hr1")
    # HR is not enrolled: the lesson does not exist for them
    assert client.get(f"/policies/lessons/{lesson.id}").status_code == 404
    csrf = client.csrf("/")
    resp = sign(client, lesson.id, csrf=csrf, reading="x", name="李雷")
    assert resp.status_code == 404 and signatures() == 0


def test_new_version_needs_new_signature_and_old_one_stays(client, lesson, learner, clock):
    client.login("lilei")
    _html, csrf, reading = open_page(client, lesson.id)
    clock.advance(61)
    assert sign(client, lesson.id, csrf=csrf, reading=reading).status_code == 302
    v2 = make_policy(body=BODY + "\n\n第三条 新增条款。")
    assert v2.number == 2 and v2.sha256 != lesson.version.lessons[0].policy_version_id
    course = lesson.version.course
    lesson2 = enrol(learner, make_course(v2, number=2, course=course))
    html, csrf, reading = open_page(client, lesson2.id)
    assert "（第 2 版）" in html and 'data-state="signed"' not in html
    clock.advance(61)
    assert sign(client, lesson2.id, csrf=csrf, reading=reading).status_code == 302
    rows = db.session.execute(select(Signature.version_number).order_by(Signature.id)).all()
    assert [r[0] for r in rows] == [1, 2]


def _signed(client, lesson, clock) -> Signature:
    client.login("lilei")
    _html, csrf, reading = open_page(client, lesson.id)
    clock.advance(61)
    assert sign(client, lesson.id, csrf=csrf, reading=reading).status_code == 302
    return db.session.scalar(select(Signature))


SQLITE_SIGNATURE_GUARD = ("CREATE TRIGGER signatures_no_update BEFORE UPDATE ON signatures "
                          "BEGIN SELECT RAISE(ABORT, 'signatures are evidence and cannot be "
                          "changed: UPDATE refused'); END")


@contextmanager
def unguarded_signatures():
    """A connection on which the database's guard of signature rows is lifted, as an
    attacker with owner rights would do; the guard is restored afterwards."""
    postgres = db.engine.dialect.name == "postgresql"
    with db.engine.begin() as conn:
        if postgres:
            conn.exec_driver_sql("ALTER TABLE signatures DISABLE TRIGGER "
                                 "signatures_no_update_delete")
        else:
            conn.exec_driver_sql("DROP TRIGGER signatures_no_update")
        yield conn
        if postgres:
            conn.exec_driver_sql("ALTER TABLE signatures ENABLE TRIGGER "
                                 "signatures_no_update_delete")
        else:
            conn.exec_driver_sql(SQLITE_SIGNATURE_GUARD)


def test_the_database_refuses_to_edit_or_delete_a_signature_or_a_published_policy(
        client, lesson, clock):
    sig = _signed(client, lesson, clock)
    for statement in ("UPDATE signatures SET reading_seconds = 999",
                      "DELETE FROM signatures",
                      "UPDATE policy_versions SET body = 'changed'",
                      "DELETE FROM policy_versions"):
        with pytest.raises(DBAPIError, match=r"(?i)evidence|immutable"), \
                db.engine.begin() as conn:
            conn.execute(text(statement))
    db.session.expire_all()
    assert db.session.get(Signature, sig.id).reading_seconds == sig.reading_seconds


def test_verify_intact_then_reports_a_tampered_row(client, make_client, people, lesson, clock):
    sig = _signed(client, lesson, clock)
    code = sig.verification_code
    page = client.get(f"/verify/{code}")  # the signer themself
    assert page.status_code == 200 and 'data-state="intact"' in page.get_data(as_text=True)
    people.user("auditor1", "auditor")
    auditor = make_client()
    auditor.login("auditor1")
    assert 'data-state="intact"' in auditor.get(f"/verify/{code}").get_data(as_text=True)
    with unguarded_signatures() as conn:
        conn.execute(text("UPDATE signatures SET statement_sha256 = :h, reading_seconds = 999"),
                     {"h": "0" * 64})
    html = auditor.get(f"/verify/{code}").get_data(as_text=True)
    assert 'data-state="mismatch"' in html
    assert "statement_sha256" in html and "reading_seconds" in html
    assert "employee_no" not in html.split('id="verify-problems"')[1].split("</ul>")[0]


def test_ledger_verify_command_also_reports_a_tampered_signature_row(app, client, lesson, clock):
    sig = _signed(client, lesson, clock)
    runner = app.test_cli_runner()
    intact = runner.invoke(args=["ledger", "verify"])
    assert intact.exit_code == 0, intact.output
    assert "OK: 1 signature records match" in intact.output
    with unguarded_signatures() as conn:  # the chain stays intact: only the row changes
        conn.execute(text("UPDATE signatures SET reading_seconds = 999"))
    db.session.expire_all()  # the command runs in this test's session, not a new process
    broken = runner.invoke(args=["ledger", "verify"])
    assert broken.exit_code == 1
    assert f"BROKEN signature {sig.verification_code}" in broken.output
    assert "reading_seconds" in broken.output


def test_verify_reports_a_tampered_pdf_on_disk(client, people, learner, clock):
    document = signing.create_document(db.session, name="考勤制度", statement_template=None,
                                       min_reading_seconds=60, actor_id=None)
    version = signing.add_pdf_version(db.session, document, stream=BytesIO(PDF),
                                      filename="a.pdf", store=storage(), max_bytes=10**6,
                                      actor_id=None)
    signing.publish_version(db.session, version, actor_id=None)
    db.session.commit()
    lesson = enrol(learner, make_course(version, code="RISK-ATT-01"))
    sig = _signed(client, lesson, clock)
    assert client.get(f"/policies/versions/{version.id}/file").data == PDF
    assert 'data-state="intact"' in client.get(f"/verify/{sig.verification_code}").get_data(
        as_text=True)
    path = Path(storage().local_path(version.storage_key))
    path.write_bytes(PDF.replace(b"Catalog", b"Catalug"))
    html = client.get(f"/verify/{sig.verification_code}").get_data(as_text=True)
    assert 'data-state="mismatch"' in html and "存储的文档的 SHA-256 为" in html


def test_verify_is_for_hr_auditors_admins_and_the_signer_only(client, make_client, people,
                                                              lesson, clock):
    sig = _signed(client, lesson, clock)
    people.user("someone", "trainee", employee=people.employee("路人", employee_no="E3"))
    other = make_client()
    other.login("someone")
    assert other.get(f"/verify/{sig.verification_code}").status_code == 403
    assert other.get(f"/policies/receipts/{sig.verification_code}").status_code == 404


def test_policy_authoring_pages(client, people):
    people.user("trainer1", "trainer")
    people.user("trainee1", "trainee")
    client.login("trainee1")
    assert client.get("/policies").status_code == 403
    assert client.get("/policies/new").status_code == 403
    client.logout()
    client.login("trainer1")
    resp = client.post("/policies/new", {"name": "考勤制度", "min_reading_seconds": "45",
                                         "statement_template": ""}, token_from="/policies/new")
    assert resp.status_code == 302
    document = db.session.scalar(select(PolicyDocument))
    assert document.min_reading_seconds == 45 and "{version}" in document.statement_template
    url = f"/policies/{document.id}"
    resp = client.post(f"{url}/versions", {"body": "<b>第一条</b> 按时出勤。"}, token_from=url)
    assert resp.status_code == 302
    page = client.get(url).get_data(as_text=True)
    version = db.session.scalar(select(PolicyVersion))
    assert version.sha256 in page
    view = client.get(f"/policies/versions/{version.id}").get_data(as_text=True)
    assert "&lt;b&gt;第一条&lt;/b&gt;" in view  # plain text, escaped
    resp = client.post(f"{url}/versions", {"pdf": (BytesIO(b"not a pdf"), "x.pdf")},
                       token_from=url, content_type="multipart/form-data")
    assert resp.status_code == 422 and "该文件不是 PDF 文件。" in resp.get_data(as_text=True)
    resp = client.post(f"/policies/versions/{version.id}/publish", token_from=url)
    assert resp.status_code == 302
    [entry] = entries("policy.version_published")
    assert json.loads(entry.payload)["sha256"] == version.sha256
    db.session.expire_all()
    version = db.session.get(PolicyVersion, version.id)
    version.body = "changed"
    with pytest.raises(Exception, match="published"):
        db.session.flush()
    db.session.rollback()


def test_trainer_adds_policy_lesson_to_draft_only(client, people, policy):
    people.user("trainer1", "trainer")
    people.user("trainee1", "trainee")
    course = Course(code="RISK-PERF-02", title_zh="绩效", risk_topic="performance")
    draft = CourseVersion(course=course, number=1, status="draft")
    db.session.add_all([course, draft])
    db.session.commit()
    url = f"/authoring/versions/{draft.id}/lessons/policy"
    client.login("trainee1")
    assert client.get(url).status_code == 403
    client.logout()
    client.login("trainer1")
    resp = client.post(url, {"title": "签署制度", "policy_version_id": str(policy.id)},
                       token_from=url)
    assert resp.status_code == 302
    lesson = db.session.scalar(select(Lesson))
    assert (lesson.kind, lesson.policy_version_id) == ("policy", policy.id)
    published = make_course(policy, code="RISK-PERF-03")
    url = f"/authoring/versions/{published.id}/lessons/policy"
    resp = client.post(url, {"title": "再加一课", "policy_version_id": str(policy.id)},
                       token_from=url)
    assert resp.status_code == 409
    assert db.session.scalar(select(func.count()).select_from(Lesson)) == 2


def test_the_course_page_sends_a_policy_lesson_to_its_signing_page(client, lesson, clock):
    client.login("lilei")
    course_page = client.get(f"/learning/courses/{lesson.version_id}").get_data(as_text=True)
    assert f"/learning/lessons/{lesson.id}" in course_page
    resp = client.get(f"/learning/lessons/{lesson.id}")
    assert resp.status_code == 302
    assert resp.headers["Location"].endswith(f"/policies/lessons/{lesson.id}")
