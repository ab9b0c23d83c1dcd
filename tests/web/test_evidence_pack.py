"""Evidence packs end to end: a learner assigned a course, reminded, watching the video
(one beat refused), failing then passing the exam and e-signing the policy, all through
the real pages and services; then HR, a manager and an auditor export the signed PDF,
read it back with pypdf, check its PAdES signature (and that one changed byte breaks
it), see a tampered ledger reported in the pack, and use the command line."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from exam_support import DEMO_WEBM, correct_indices, make_bank
from pypdf import PdfReader
from sqlalchemy import func, select, text
from support import PASSWORD, Clock

from assessments import exam_authoring, exam_taking, signing
from assessments.exams import ExamAttempt
from assessments.policies import Signature
from courses import tracking
from courses.authoring import publish_version
from courses.media import ingest_video
from courses.models import Course, CourseVersion, Enrollment, Lesson, WatchRejection
from lms.compliance.engine import sync_completions
from lms.compliance.manual import assign_by_hand
from lms.compliance.models import Assignment
from lms.compliance.reminders import send_reminders
from lms.dbtypes import utcnow
from lms.evidence.export import EXPORT_KIND
from lms.evidence.signing import SigningSettings, load_material, validate_pack
from lms.extensions import db
from lms.ledger import LedgerEntry
from lms.notify.models import Message
from lms.people.models import Employee, User
from lms.workday_overrides import load_calendar

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
ATTEMPT_URL_RE = re.compile(r"/exams/attempts/(\d+)$")
READING_RE = re.compile(r'name="reading"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="reading"')
# A Monday in June 2026: a working day well inside the years the calendar knows.
ASSIGNED_AT = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
MASKED_ID = "110105********002X"


@pytest.fixture(scope="session")
def signing_dir(tmp_path_factory) -> Path:
    """One generated organisation certificate for the whole run (RSA keys take time)."""
    return tmp_path_factory.mktemp("evidence-signing") / "org"


@pytest.fixture(autouse=True)
def evidence_config(app, signing_dir):
    app.config["EVIDENCE_SIGNING_DIR"] = str(signing_dir)
    return app


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    for module in (tracking, exam_taking, signing):
        monkeypatch.setattr(module, "clock", c)
    return c


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no CSRF token"
    return match.group(1)


# --- the scenario: everything through the real services and pages ---------------------------


@dataclass
class Scenario:
    employee_id: int
    user_id: int
    version: CourseVersion
    course: Course
    video: Lesson
    exam: Lesson
    policy: Lesson


def make_course(hr_id: int) -> CourseVersion:
    """RISK-PERF-01: video → exam (5 of the bank's 10 questions) → sign 《绩效管理制度》,
    published with the real service (content hash, frozen pool)."""
    document = signing.create_document(db.session, name="绩效管理制度", statement_template=None,
                                       min_reading_seconds=60, actor_id=hr_id)
    policy = signing.add_text_version(db.session, document, actor_id=hr_id,
                                      body="第一条 为规范绩效管理，制定本制度。\n\n第二条 绩效考核每季度进行一次。")
    signing.publish_version(db.session, policy, actor_id=hr_id)
    bank = make_bank()
    course = Course(code="RISK-PERF-01", title_zh="绩效管理制度培训",
                    title_en="Performance management rules", risk_topic="performance")
    version = CourseVersion(course=course, number=1, status="draft")
    db.session.add_all([course, version])
    db.session.flush()
    with DEMO_WEBM.open("rb") as fh:
        media = ingest_video(db.session, fh, "demo.webm", uploaded_by_id=hr_id,
                             max_bytes=10 * 1024 * 1024)
    db.session.add(Lesson(version=version, position=1, kind="video", title="绩效制度讲解",
                          media=media))
    db.session.flush()
    exam_authoring.add_exam_lesson(db.session, version, title="绩效制度测验",
                                   settings=exam_authoring.ExamSettings(
                                       bank_id=bank.id, selection="random",
                                       per_topic=(("performance", 5),), pass_score=80,
                                       max_attempts=3))
    signing.add_policy_lesson(db.session, version, title="签署《绩效管理制度》",
                              policy_version_id=policy.id)
    publish_version(db.session, version, actor_id=hr_id)
    db.session.commit()
    return version


def watch_video(client, clock: Clock, lesson: Lesson) -> None:
    """What player.js does: a session and honest beats every 2 s — and one beat sent
    again (a replay), which the server refuses and logs."""
    csrf = client.csrf(f"/learning/lessons/{lesson.id}")
    start = client.c.post(f"/learning/lessons/{lesson.id}/session",
                          headers={"X-CSRFToken": csrf, "User-Agent": "Mozilla/5.0 (iPhone) 微信"})
    assert start.status_code == 200, start.data
    data = start.get_json()
    token, duration, seq = data["session"], data["duration"], 0

    def beat(position: float, event: str = "tick", again: int | None = None):
        nonlocal seq
        if again is None:
            seq += 1
        return client.c.post("/learning/beat", data={
            "session": token, "seq": str(again or seq), "position": str(position),
            "event": event, "csrf_token": csrf})

    beat(0.0, "play")
    position = 0.0
    while position < duration:
        clock.advance(2)
        position = min(duration, position + 2)
        response = beat(position)
        assert response.status_code == 200
        if seq == 3:
            assert beat(2.0, again=2).get_json()["rejected"] == "replayed"
    assert response.get_json()["completed"] is True


def take_exam(client, lesson: Lesson, *, passing: bool) -> ExamAttempt:
    intro = f"/exams/lessons/{lesson.id}"
    response = client.post(f"{intro}/start", token_from=intro)
    assert response.status_code == 302, response.get_data(as_text=True)
    attempt_id = int(ATTEMPT_URL_RE.search(response.headers["Location"]).group(1))
    attempt = db.session.get(ExamAttempt, attempt_id)
    html = client.get(f"/exams/attempts/{attempt_id}").get_data(as_text=True)
    data: dict = {"csrf_token": csrf_of(html)}
    for q in json.loads(attempt.served):
        right = correct_indices(q)
        wrong = [i for i in range(len(q["options"])) if i not in right][:1]
        data[f"q{q['position']}"] = [str(c) for c in (right if passing else wrong)]
    response = client.c.post(f"/exams/attempts/{attempt_id}/submit", data=data)
    assert response.status_code == 302
    db.session.refresh(attempt)
    assert attempt.passed is passing
    return attempt


def sign_policy(client, clock: Clock, lesson: Lesson) -> None:
    html = client.get(f"/policies/lessons/{lesson.id}").get_data(as_text=True)
    match = READING_RE.search(html)
    reading = next(g for g in match.groups() if g)
    clock.advance(61)
    response = client.c.post(f"/policies/lessons/{lesson.id}/sign", data={
        "csrf_token": csrf_of(html), "reading": reading, "full_name": "李雷",
        "password": PASSWORD}, headers={"User-Agent": "Mozilla/5.0 (iPhone) 微信"})
    assert response.status_code in (200, 302), response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Signature)) == 1


@pytest.fixture
def scenario(app, client, people, clock) -> Scenario:
    store = people.department("上海门店", code="SH01")
    manager_employee = people.employee("王经理", department=store, employee_no="M0001")
    people.user("wangjl", "manager", employee=manager_employee)
    employee = people.employee("李雷", department=store, position=people.position("店长"),
                               manager=manager_employee, employee_no="E10001")
    employee.id_number_masked = MASKED_ID
    db.session.commit()
    learner = people.user("lilei", "trainee", employee=employee)
    hr = people.user("hr1", "hr")
    people.user("audit1", "auditor")
    people.user("other_manager", "manager", employee=people.employee("赵经理"))
    people.user("bystander", "trainee", employee=people.employee("韩梅梅"))

    version = make_course(hr.id)
    calendar = load_calendar(db.session)
    report = assign_by_hand(db.session, actor_id=hr.id, course_id=version.course_id,
                            employee_nos=["E10001"], due_working_days=3,
                            reason="新制度上线，全员培训", calendar=calendar, now=ASSIGNED_AT)
    assert report.assigned == ["E10001"]
    db.session.commit()
    send_reminders(db.session, calendar=calendar, now=ASSIGNED_AT)
    db.session.commit()

    client.login("lilei")
    notice = db.session.scalar(select(Message).where(Message.recipient_user_id == learner.id,
                                                     Message.dedupe_key.like("assignment:%")))
    assert notice is not None
    assert client.get(f"/inbox/{notice.id}").status_code == 200  # the read receipt
    video, exam, policy = version.lessons
    watch_video(client, clock, video)
    take_exam(client, exam, passing=False)
    take_exam(client, exam, passing=True)
    sign_policy(client, clock, policy)
    client.logout()
    sync_completions(db.session, now=utcnow())
    db.session.commit()
    assert db.session.scalar(select(Enrollment.completed_at)) is not None
    return Scenario(employee.id, learner.id, version, version.course, video, exam, policy)


# --- helpers reading the PDF ------------------------------------------------------------------


def download(client, employee_id: int, course: str = ""):
    url = f"/evidence/employees/{employee_id}"
    return client.post(f"{url}/pack", {"course": course}, token_from=url)


def keep_for_inspection(name: str, data: bytes) -> None:
    """With EVIDENCE_PACK_DUMP_DIR set, keep the PDF there to look at (pdftoppm)."""
    if os.environ.get("EVIDENCE_PACK_DUMP_DIR"):
        (Path(os.environ["EVIDENCE_PACK_DUMP_DIR"]) / f"{name}.pdf").write_bytes(data)


def pdf_text(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


def flat(value: str) -> str:
    """Text without whitespace: pypdf breaks long hashes across lines in table cells."""
    return re.sub(r"\s+", "", value)


def material(app):
    return load_material(SigningSettings.from_config(app.config, app.instance_path))


# --- the pack ---------------------------------------------------------------------------------


def test_hr_downloads_a_signed_pack_with_every_record_and_the_ledger_check(
        app, client, scenario):
    client.login("hr1")
    page = client.get(f"/evidence/employees/{scenario.employee_id}")
    assert page.status_code == 200
    assert "RISK-PERF-01" in page.get_data(as_text=True)

    response = download(client, scenario.employee_id)
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    assert response.mimetype == "application/pdf"
    assert "attachment" in response.headers["Content-Disposition"]
    data = response.data
    keep_for_inspection("pack", data)
    text = pdf_text(data)
    squeezed = flat(text)

    # the employee, with the ID number masked and never in full
    assert "李雷" in text and "E10001" in text and MASKED_ID in text
    assert "上海门店" in text and "店长" in text and "在职" in text
    # the course, its version's content hash, the lessons
    assert "绩效管理制度培训" in text and "RISK-PERF-01" in text
    assert flat(scenario.version.content_hash) in squeezed
    assert "绩效制度讲解" in text and "绩效制度测验" in text
    # the assignment and its reminder, delivered and read
    assignment = db.session.scalar(select(Assignment))
    assert "新制度上线，全员培训" in text and assignment.due_date.isoformat() in text
    assert "到期前提醒" in text and "已读 read" in text
    # the viewing record: a session with its IP and the refused jump
    assert "127.0.0.1" in text and "重复或乱序 replayed" in text
    # both exam attempts, as served, with their hashes and results
    attempts = list(db.session.scalars(select(ExamAttempt).order_by(ExamAttempt.number)))
    assert "未通过 FAILED" in text and "通过 PASSED" in text
    for attempt in attempts:
        assert flat(attempt.served_sha256) in squeezed
        first = json.loads(attempt.served)[0]
        assert flat(first["text"]) in squeezed
    # the signature: statement, document hash, verification code
    signature = db.session.scalar(select(Signature))
    assert flat(signature.statement) in squeezed
    assert flat(signature.document_sha256) in squeezed
    assert signature.verification_code in text
    # every record's ledger entry, with its hash
    for seq in (signature.ledger_seq, attempts[1].ledger_seq):
        entry = db.session.get(LedgerEntry, seq)
        assert flat(entry.hash) in squeezed
    # the chain was verified at export time and said so
    assert "哈希链完整 INTACT" in text
    assert "BROKEN" not in text
    assert "flask --app wsgi ledger verify" in text
    # page numbers
    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) >= 2
    assert f"共 {len(reader.pages)} 页" in reader.pages[0].extract_text()

    # the export is itself a ledger entry recording this very file
    entry = db.session.scalar(select(LedgerEntry).where(LedgerEntry.kind == EXPORT_KIND))
    payload = json.loads(entry.payload)
    assert payload["file_sha256"] == hashlib.sha256(data).hexdigest()
    assert payload["employee_no"] == "E10001" and payload["chain"]["ok"] is True
    assert entry.subject == f"evidence_pack:{response.headers['X-Evidence-Pack']}"
    assert entry.actor_id is not None


def test_the_pdf_signature_validates_and_fails_after_one_changed_byte(app, client, scenario):
    client.login("hr1")
    data = download(client, scenario.employee_id).data
    check = validate_pack(data, material(app))
    assert check.ok, check
    assert check.signer and "合规学堂" in check.signer
    assert check.pack_id

    middle = bytearray(data)
    middle[len(data) // 2] ^= 0x01
    assert validate_pack(bytes(middle), material(app)).status in ("altered", "bad_signature",
                                                                  "not_pdf")
    appended = data + b"\n% a note added later\n"
    assert not validate_pack(appended, material(app)).ok

    # the verify page says the same to a person
    def upload(payload: bytes):
        return client.post("/evidence/verify", {"file": (io.BytesIO(payload), "pack.pdf")},
                           token_from="/evidence/verify", content_type="multipart/form-data")

    good = upload(data)
    assert good.status_code == 200
    assert "Untampered" in good.get_data(as_text=True) or "未被改动" in good.get_data(
        as_text=True) or 'data-ok="true"' in good.get_data(as_text=True)
    assert 'data-ok="true"' in good.get_data(as_text=True)
    bad = upload(bytes(middle))
    assert bad.status_code == 422
    assert 'data-ok="false"' in bad.get_data(as_text=True)


@contextmanager
def ledger_unguarded():
    """Lift the append-only guard on ledger entries, as a tamperer with database access
    would, and put it back exactly as it was."""
    db.session.commit()
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text(
            "ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_no_update_delete"))
        db.session.commit()
        try:
            yield
        finally:
            db.session.rollback()
            db.session.execute(text(
                "ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_no_update_delete"))
            db.session.commit()
        return
    name = "ledger_entries_no_update"
    sql = db.session.scalar(text("SELECT sql FROM sqlite_master WHERE type = 'trigger' "
                                 "AND name = :n"), {"n": name})
    assert sql
    db.session.execute(text(f"DROP TRIGGER {name}"))
    db.session.commit()
    try:
        yield
    finally:
        db.session.rollback()
        db.session.execute(text(sql))
        db.session.commit()


def test_a_tampered_ledger_makes_the_pack_say_so(app, client, scenario):
    signature = db.session.scalar(select(Signature))
    seq = signature.ledger_seq
    with ledger_unguarded():
        entry = db.session.get(LedgerEntry, seq)
        payload = json.loads(entry.payload)
        payload["reading_seconds"] = 600.0  # "they read it for ten minutes"
        db.session.execute(text("UPDATE ledger_entries SET payload = :p WHERE seq = :s"),
                           {"p": json.dumps(payload, ensure_ascii=False, sort_keys=True,
                                            separators=(",", ":")), "s": seq})
        db.session.commit()
    client.login("audit1")
    response = download(client, scenario.employee_id)
    assert response.status_code == 200
    keep_for_inspection("pack-tampered-ledger", response.data)
    text_ = pdf_text(response.data)
    assert "哈希链已损坏 BROKEN" in text_
    assert f"entry #{seq}" in text_
    assert "已被改动" in text_ and "altered" in text_
    assert "INTACT" not in text_
    entry = db.session.scalar(select(LedgerEntry).where(LedgerEntry.kind == EXPORT_KIND))
    assert json.loads(entry.payload)["chain"] == {
        "ok": False, "count": seq - 1, "broken_seq": seq,
        "head_hash": json.loads(entry.payload)["chain"]["head_hash"],
        "reason": "content does not match its hash (entry was altered)"}
    # the pack itself is still a valid pack of ours: it faithfully reports the break
    assert validate_pack(response.data, material(app)).ok


def test_per_course_pack_and_an_unknown_course(app, client, scenario, people):
    other = Course(code="RISK-ID-01", title_zh="入职身份核验", risk_topic="identity_verification")
    db.session.add(other)
    db.session.commit()
    client.login("hr1")
    response = download(client, scenario.employee_id, course="RISK-PERF-01")
    assert response.status_code == 200
    text_ = pdf_text(response.data)
    assert "课程 Course RISK-PERF-01" in text_ and "绩效管理制度培训" in text_

    empty = pdf_text(download(client, scenario.employee_id, course="RISK-ID-01").data)
    assert "没有任何分配或学习记录" in empty and "绩效制度测验" not in empty

    refused = download(client, scenario.employee_id, course="NOPE-99")
    assert refused.status_code == 422
    assert "NOPE-99" in refused.get_data(as_text=True)
    kinds = db.session.scalars(select(LedgerEntry.kind).where(LedgerEntry.kind == EXPORT_KIND))
    assert len(list(kinds)) == 2  # the refused export wrote nothing


def test_who_may_export(app, make_client, scenario):
    """HR, admins and auditors: anyone; a manager: their reports; nobody else."""
    url = f"/evidence/employees/{scenario.employee_id}"
    for username, status in (("wangjl", 200), ("audit1", 200), ("hr1", 200),
                             ("other_manager", 404), ("bystander", 403), ("lilei", 403)):
        client = make_client()
        client.login(username)
        assert client.get(url).status_code == status, username
        if username == "wangjl":
            response = download(client, scenario.employee_id)
            assert response.status_code == 200 and response.data.startswith(b"%PDF-")
        elif status != 200:
            refused = client.post(f"{url}/pack", {"course": ""}, token_from="/")
            assert refused.status_code == status, username
    exports = list(db.session.scalars(select(LedgerEntry).where(LedgerEntry.kind == EXPORT_KIND)))
    assert len(exports) == 1
    manager = db.session.scalar(select(User).where(User.username == "wangjl"))
    assert exports[0].actor_id == manager.id


def test_the_employee_page_links_to_the_pack(client, scenario):
    client.login("hr1")
    html = client.get(f"/employees/{scenario.employee_id}").get_data(as_text=True)
    assert f"/evidence/employees/{scenario.employee_id}" in html


def test_lookup_by_employee_number(client, scenario):
    client.login("wangjl")
    found = client.get("/evidence?employee_no=E10001")
    assert found.status_code == 302
    assert found.headers["Location"].endswith(f"/evidence/employees/{scenario.employee_id}")
    stranger = db.session.scalar(select(Employee).where(Employee.name == "韩梅梅"))
    hidden = client.get(f"/evidence?employee_no={stranger.employee_no}")  # not a report
    assert hidden.status_code == 404
    assert client.get("/evidence?employee_no=NOBODY").status_code == 404  # the same answer
    assert client.get(f"/evidence/employees/{stranger.id}").status_code == 404


def test_command_line_export_and_verify(app, scenario, tmp_path):
    runner = app.test_cli_runner()
    out = tmp_path / "pack.pdf"
    result = runner.invoke(args=["evidence", "pdf", "--employee", "E10001", "--course",
                                 "RISK-PERF-01", "-o", str(out)])
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    text_ = pdf_text(data)
    assert "李雷" in text_ and "命令行 command line" in text_
    entry = db.session.scalar(select(LedgerEntry).where(LedgerEntry.kind == EXPORT_KIND))
    assert json.loads(entry.payload)["file_sha256"] == hashlib.sha256(data).hexdigest()
    assert entry.actor_id is None

    ok = runner.invoke(args=["evidence", "verify", str(out)])
    assert ok.exit_code == 0, ok.output
    assert "OK: pack" in ok.output

    tampered = tmp_path / "tampered.pdf"
    changed = bytearray(data)
    changed[len(changed) // 3] ^= 0x01
    tampered.write_bytes(bytes(changed))
    bad = runner.invoke(args=["evidence", "verify", str(tampered)])
    assert bad.exit_code == 1

    missing = runner.invoke(args=["evidence", "pdf", "--employee", "E99999", "-o",
                                  str(tmp_path / "x.pdf")])
    assert missing.exit_code != 0 and "E99999" in missing.output
    assert not (tmp_path / "x.pdf").exists()


def test_pack_queries_do_not_grow_with_the_records(app, scenario):
    """A handful of queries per section: more refused beats, sessions and notices add
    rows to the pack, not queries."""
    from sqlalchemy import event

    from courses.media import storage
    from lms import ledger
    from lms.evidence.pack import gather

    def count_queries() -> tuple[int, int]:
        statements: list[str] = []

        def log(_conn, _cursor, statement, *_args) -> None:
            statements.append(statement)

        db.session.expire_all()
        chain = ledger.verify(db.session)
        employee = db.session.get(Employee, scenario.employee_id)
        event.listen(db.engine, "before_cursor_execute", log)
        try:
            pack = gather(db.session, employee, chain=chain, store=storage())
        finally:
            event.remove(db.engine, "before_cursor_execute", log)
        video = pack.enrolments[0].lessons[0]
        return len(statements), video.rejected_total

    before, rejected = count_queries()
    enrolment = db.session.scalar(select(Enrollment))
    db.session.add_all([WatchRejection(user_id=scenario.user_id, lesson_id=scenario.video.id,
                                       enrollment_id=enrolment.id, seq=100 + i,
                                       position=float(i), reason="replayed", ip="10.0.0.9")
                        for i in range(30)])
    db.session.commit()
    after, rejected_after = count_queries()
    assert rejected_after == rejected + 30
    assert after == before
    assert before <= 30, before


def test_each_round_of_recertification_is_its_own_section(app, client, people, monkeypatch):
    """A rule recurring every 12 months: the pack shows round 1 and round 2 of the same
    course version, each with its own assignment (and the rule run that made it), its own
    signature and completion."""
    from datetime import date, timedelta

    from test_signatures import make_course as policy_course
    from test_signatures import make_policy, open_page, sign

    from lms.compliance.engine import run_assignment_tick
    from lms.compliance.models import AssignmentRule, RuleDepartment
    from lms.workdays import default_calendar

    start = datetime(2025, 11, 10, 2, 0, tzinfo=UTC)  # a Monday, 10:00 in Beijing
    clock = Clock()
    clock.now = start
    monkeypatch.setattr(signing, "clock", clock)
    dept = people.department("财务部", code="FIN")
    employee = people.employee("李雷", department=dept, employee_no="E10001")
    people.user("lilei", "trainee", employee=employee)
    people.user("hr1", "hr")
    version = policy_course(make_policy())
    rule = AssignmentRule(name="年度绩效制度确认", course_id=version.course_id,
                          due_working_days=5, effective_from=date(2025, 11, 1), recur_months=12)
    db.session.add(rule)
    db.session.flush()
    db.session.add(RuleDepartment(rule_id=rule.id, department_id=dept.id))
    db.session.commit()

    def tick(now: datetime) -> None:
        run_assignment_tick(db.session, calendar=default_calendar(), now=now)
        db.session.commit()

    def sign_round() -> None:
        _html, csrf, reading = open_page(client, version.lessons[0].id)
        clock.advance(61)
        assert sign(client, version.lessons[0].id, csrf=csrf, reading=reading).status_code == 302

    tick(start)
    client.login("lilei")
    sign_round()
    tick(clock.now)
    clock.now = clock.now.replace(year=clock.now.year + 1) + timedelta(hours=1)
    tick(clock.now)
    sign_round()
    tick(clock.now)
    client.logout()

    client.login("hr1")
    response = download(client, employee.id)
    assert response.status_code == 200
    text_ = pdf_text(response.data)
    first, second = text_.index("第 1 轮 round 1"), text_.index("第 2 轮 round 2")
    assert first < second
    codes = [s.verification_code for s in db.session.scalars(
        select(Signature).order_by(Signature.signed_at))]
    assert first < text_.index(codes[0]) < second < text_.index(codes[1])
    assert "定期复训 recertification" in text_[second:]  # the second round's assignment
    runs = list(db.session.scalars(select(LedgerEntry).where(
        LedgerEntry.kind == "assignment.rule_applied").order_by(LedgerEntry.seq)))
    squeezed = flat(text_)
    assert len(runs) == 2 and all(flat(r.hash) in squeezed for r in runs)
    assert squeezed.index(flat(runs[0].hash)) < squeezed.index(flat(runs[1].hash))
    assert "哈希链完整 INTACT" in text_


def test_an_employee_without_records_and_a_missing_font(app, client, people, tmp_path):
    """A pack proves absence too; without a usable CJK font nothing is exported and HR is
    told what to install."""
    newcomer = people.employee("赵新人", employee_no="E20001")
    people.user("hr1", "hr")
    client.login("hr1")
    response = download(client, newcomer.id)
    assert response.status_code == 200
    text_ = pdf_text(response.data)
    assert "赵新人" in text_ and "无登录账号 no login" in text_ and "没有任何分配或学习记录" in text_

    app.config["EVIDENCE_FONT_PATH"] = str(tmp_path / "missing.ttf")
    refused = download(client, newcomer.id)
    assert refused.status_code == 503
    assert "fonts-wqy-microhei" in refused.get_data(as_text=True)
    exports = db.session.scalar(select(func.count()).select_from(LedgerEntry)
                                .where(LedgerEntry.kind == EXPORT_KIND))
    assert exports == 1
