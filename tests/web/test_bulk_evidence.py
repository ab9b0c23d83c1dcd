"""Bulk evidence (#7): the packs of a department (with its sub-departments) or a course
in one ZIP with index.csv, built as a background job — through the web pages with the
in-process worker, on RQ with the real Redis, from the command line — read back: one
signed PDF per person (the Chinese name inside), the index's SHA-256 of every member,
the ledger entries. A worker killed mid-export is taken over without exporting anyone
twice; a job out of attempts is failed with its reason shown; who may do what; bad
input named on its field."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select, update

from courses.models import Course, CourseVersion, Enrollment
from lms.dbtypes import utcnow
from lms.evidence import bulk
from lms.evidence.bulk import BULK_EXPORT_KIND, INDEX_HEADER
from lms.evidence.export import EXPORT_KIND
from lms.evidence.pack import PackScopeError
from lms.evidence.signing import SigningSettings, load_material
from lms.extensions import db
from lms.jobs import backends, store
from lms.jobs.models import BackgroundJob
from lms.jobs.runner import perform
from lms.ledger import LedgerEntry
from lms.people.models import Department, User

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def signing_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bulk-signing") / "org"


@pytest.fixture
def bulk_app(app, signing_dir, tmp_path):
    app.config.update(EVIDENCE_SIGNING_DIR=str(signing_dir), JOBS_DIR=str(tmp_path / "jobs"),
                      REDIS_URL="")
    load_material(SigningSettings.from_config(app.config, app.instance_path))  # key made once
    yield app
    assert backends.stop_inprocess(app)


@pytest.fixture
def org(bulk_app, people):
    """门店事业部 STORES ⊃ 上海门店 SH01: 李雷 E001 (STORES), 韩梅梅 E002 and 王芳 E003
    (SH01, 王芳 has left); 工厂 FAC: 赵六 E900, outside. Users: HR ×2, an auditor, a
    manager, a trainee."""
    stores = people.department("门店事业部", code="STORES")
    shanghai = people.department("上海门店", parent=stores, code="SH01")
    factory = people.department("工厂", code="FAC")
    people.department("空部门", code="EMPTY")
    boss = people.employee("周经理", department=factory, employee_no="M001")
    lilei = people.employee("李雷", department=stores, employee_no="E001")
    people.employee("韩梅梅", department=shanghai, employee_no="E002")
    people.employee("王芳", department=shanghai, employee_no="E003", status="left")
    zhao = people.employee("赵六", department=factory, employee_no="E900", manager=boss)
    people.user("hr1", "hr")
    people.user("hr2", "hr")
    people.user("audit1", "auditor")
    people.user("mgr", "manager", employee=boss)
    people.user("lilei", "trainee", employee=lilei)
    people.user("zhao", "trainee", employee=zhao)
    return {"stores": stores, "shanghai": shanghai, "factory": factory}


def english(client) -> None:
    client.post("/lang/en", {"next": "/"}, token_from="/")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def read_zip(data: bytes) -> tuple[bytes, list[list[str]], dict[str, bytes]]:
    """(raw index.csv, its rows, {member: bytes}) of a bulk ZIP."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        assert names[0] == "index.csv"
        members = {name: zf.read(name) for name in names}
    raw = members.pop("index.csv")
    return raw, list(csv.reader(io.StringIO(raw.decode("utf-8-sig")))), members


def count(kind: str) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(LedgerEntry)
                             .where(LedgerEntry.kind == kind))


def reload(job_id: int) -> BackgroundJob:
    db.session.expire_all()
    return db.session.get(BackgroundJob, job_id)


def check_zip(data: bytes, employee_nos: list[str]) -> list[list[str]]:
    """Index with a BOM, one row per person in employee-no. order, every member's
    SHA-256 and size as the index says, and the ledger recording each file."""
    raw, rows, members = read_zip(data)
    assert raw.startswith(b"\xef\xbb\xbf") and raw.count(b"\xef\xbb\xbf") == 1
    assert rows[0] == INDEX_HEADER
    body = rows[1:]
    assert [r[0] for r in body] == employee_nos
    assert sorted(members) == sorted(r[5] for r in body)
    for row in body:
        data_ = members[row[5]]
        assert data_.startswith(b"%PDF-")
        assert row[6] == sha(data_) and int(row[7]) == len(data_)
        assert row[9] == "已导出 exported" and row[10] == ""
        entry = db.session.get(LedgerEntry, int(row[8]))
        payload = json.loads(entry.payload)
        assert entry.kind == EXPORT_KIND and entry.subject == f"evidence_pack:{row[4]}"
        assert payload["file_sha256"] == row[6] and payload["employee_no"] == row[0]
    return body


# --- the command line: the same job, run here and now ---------------------------------------


def test_command_line_zip_of_a_department_with_its_sub_departments(bulk_app, org, tmp_path):
    out = tmp_path / "stores.zip"
    result = bulk_app.test_cli_runner().invoke(
        args=["evidence", "bulk", "--department", "STORES", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 employees" in result.output and sha(out.read_bytes()) in result.output
    data = out.read_bytes()
    body = check_zip(data, ["E001", "E002", "E003"])  # 赵六 in 工厂 is not in it
    assert [r[1] for r in body] == ["李雷", "韩梅梅", "王芳"]
    assert [r[2] for r in body] == ["门店事业部", "上海门店", "上海门店"]
    assert {r[3] for r in body} == {"全部 ALL"}
    _raw, _rows, members = read_zip(data)
    text = pdf_text(members[body[1][5]])
    assert "韩梅梅" in text and "E002" in text and "命令行 command line" in text

    assert count(EXPORT_KIND) == 3
    entry = db.session.scalar(select(LedgerEntry).where(LedgerEntry.kind == BULK_EXPORT_KIND))
    payload = json.loads(entry.payload)
    assert payload["zip_sha256"] == sha(data) and payload["zip_bytes"] == len(data)
    assert (payload["scope"], payload["scope_code"], payload["employees"], payload["packs"],
            payload["problems"]) == ("department", "STORES", 3, 3, 0)
    assert payload["index_sha256"] == sha(read_zip(data)[0])
    assert entry.actor_id is None
    job = db.session.scalar(select(BackgroundJob))
    assert (job.status, job.result_sha256, job.requested_by) == ("done", sha(data), None)
    # the loose PDFs are gone from the job directory: the ZIP holds them
    folder = store.job_dir(store.JobSettings.from_app(bulk_app), job.id)
    assert [p.name for p in folder.iterdir()] == [job.result_path]


def test_command_line_zip_of_a_course_has_course_scoped_packs(bulk_app, org, people,
                                                              tmp_path):
    course = Course(code="RISK-A", title_zh="入职身份核验", risk_topic="identity_verification")
    version = CourseVersion(course=course, number=1, status="draft")
    db.session.add_all([course, version])
    db.session.flush()
    for username in ("zhao",):
        user = db.session.scalar(select(User).where(User.username == username))
        db.session.add(Enrollment(user_id=user.id, version_id=version.id, source="manual"))
    db.session.commit()
    out = tmp_path / "course.zip"
    runner = bulk_app.test_cli_runner()
    result = runner.invoke(args=["evidence", "bulk", "--course", "RISK-A", "-o", str(out),
                                 "--by", "hr1"])
    assert result.exit_code == 0, result.output
    body = check_zip(out.read_bytes(), ["E900"])
    assert body[0][3] == "RISK-A"
    _raw, _rows, members = read_zip(out.read_bytes())
    text = pdf_text(members[body[0][5]])
    assert "赵六" in text and "课程 Course RISK-A" in text
    hr = db.session.scalar(select(User).where(User.username == "hr1"))
    assert db.session.scalar(select(LedgerEntry.actor_id).where(
        LedgerEntry.kind == BULK_EXPORT_KIND)) == hr.id

    for args, message in ((["--course", "NOPE"], "no course with the code 'NOPE'"),
                          (["--department", "NOPE"], "no department with the code 'NOPE'"),
                          ([], "give either --department CODE or --course CODE"),
                          (["--department", "STORES", "--course", "RISK-A"],
                           "give either --department CODE or --course CODE")):
        refused = runner.invoke(args=["evidence", "bulk", *args, "-o", str(tmp_path / "x.zip")])
        assert refused.exit_code != 0 and message in refused.output, refused.output
    assert not (tmp_path / "x.zip").exists()


# --- the web pages, with the in-process worker ----------------------------------------------


def start(client, **form):
    return client.post("/evidence/bulk", {"department": "", "course": "", **form},
                       token_from="/evidence")


def wait_for(client, job_id: int, timeout: float = 120) -> dict:
    """Poll the JSON as the page's script does, until the job has finished."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        response = client.get(f"/evidence/jobs/{job_id}.json")
        assert response.status_code == 200
        state = response.get_json()
        seen.append((state["status"], state["done"]))
        if state["finished"]:
            return {**state, "seen": seen}
        assert time.monotonic() < deadline, seen[-5:]
        time.sleep(0.1)


def test_hr_starts_follows_and_downloads_a_bulk_export_in_the_browser_pages(
        bulk_app, client, org):
    client.login("hr1")
    english(client)
    page = client.get("/evidence").get_data(as_text=True)
    assert 'id="bulk-export"' in page and "门店事业部 (STORES)" in page

    response = start(client, department=str(org["stores"].id))
    assert response.status_code == 302
    job_id = int(response.headers["Location"].rsplit("/", 1)[1])
    assert response.headers["Location"].endswith(f"/evidence/jobs/{job_id}")

    html = client.get(f"/evidence/jobs/{job_id}").get_data(as_text=True)
    assert 'id="job-progress"' in html and "<progress" in html
    assert "/static/jobs.js" in html  # the polling script, no inline script (CSP)
    assert "<script>" not in html
    if 'data-finished="false"' in html:  # without JavaScript the page refreshes itself
        assert '<noscript><meta http-equiv="refresh"' in html
    assert "门店事业部" in html

    state = wait_for(client, job_id)
    assert state["status"] == "done" and state["done"] == state["total"] == 3
    assert state["percent"] == 100 and state["error"] is None
    assert state["download_url"] == f"/evidence/jobs/{job_id}/download"
    assert state["label"] == "3 of 3 employees; the ZIP is ready"

    html = client.get(f"/evidence/jobs/{job_id}").get_data(as_text=True)
    assert 'id="job-download"' in html and "http-equiv" not in html
    download = client.get(state["download_url"])
    assert download.status_code == 200 and download.mimetype == "application/zip"
    assert "attachment" in download.headers["Content-Disposition"]
    data = download.get_data()
    assert download.headers["X-Content-SHA256"] == sha(data) == state["result_sha256"]
    assert sha(data) in html
    check_zip(data, ["E001", "E002", "E003"])

    hr = db.session.scalar(select(User).where(User.username == "hr1"))
    entry = db.session.scalar(select(LedgerEntry).where(LedgerEntry.kind == BULK_EXPORT_KIND))
    assert entry.actor_id == hr.id and json.loads(entry.payload)["zip_sha256"] == sha(data)
    exports = list(db.session.scalars(select(LedgerEntry).where(LedgerEntry.kind == EXPORT_KIND)))
    assert len(exports) == 3 and {e.actor_id for e in exports} == {hr.id}
    listing = client.get("/evidence").get_data(as_text=True)
    assert f'data-job-id="{job_id}"' in listing and 'data-status="done"' in listing
    assert bulk_app.extensions["jobs.thread"].name == "lms-jobs"

    # a week later the tick has removed the file; the page says so, the ledger keeps it
    db.session.execute(update(BackgroundJob).where(BackgroundJob.id == job_id)
                       .values(finished_at=utcnow() - timedelta(days=8)))
    db.session.commit()
    assert backends.prune(bulk_app) == [job_id]
    html = client.get(f"/evidence/jobs/{job_id}").get_data(as_text=True)
    assert "no longer kept on the server" in html and 'id="job-download"' not in html
    assert client.get(f"/evidence/jobs/{job_id}/download").status_code == 404


def test_the_same_export_on_rq_with_the_real_redis(bulk_app, client, org):
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    bulk_app.config.update(REDIS_URL="redis://127.0.0.1:6379/0",
                           RQ_QUEUE=f"lms-test-{uuid.uuid4().hex[:10]}")
    queue = backends.rq_queue(bulk_app)
    try:
        client.login("audit1")
        response = start(client, department=str(org["shanghai"].id))
        job_id = int(response.headers["Location"].rsplit("/", 1)[1])
        assert queue.job_ids == [backends.rq_job_id(bulk_app, job_id)]
        assert "jobs.thread" not in bulk_app.extensions  # Redis, so no thread here
        waiting = client.get(f"/evidence/jobs/{job_id}.json").get_json()
        assert (waiting["status"], waiting["finished"]) == ("queued", False)

        worker = backends.make_rq_worker(bulk_app, name=f"lms-test-{uuid.uuid4().hex[:8]}")
        assert worker.work(burst=True)
        state = client.get(f"/evidence/jobs/{job_id}.json").get_json()
        assert state["status"] == "done" and state["total"] == 2
        data = client.get(state["download_url"]).get_data()
        body = check_zip(data, ["E002", "E003"])
        _raw, _rows, members = read_zip(data)
        assert "王芳" in pdf_text(members[body[1][5]])
    finally:
        queue.delete(delete_jobs=True)
        keys = list(queue.connection.scan_iter(match=f"*{queue.name}*"))
        if keys:
            queue.connection.delete(*keys)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


# --- a worker that dies mid-export ----------------------------------------------------------


def test_a_worker_that_dies_mid_export_is_taken_over_without_exporting_anyone_twice(
        bulk_app, client, org, people, monkeypatch):
    people.employee("陈晨", department=org["shanghai"], employee_no="E004")
    client.login("hr1")
    english(client)
    bulk_app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"  # no worker here: run it by hand
    response = start(client, department=str(org["stores"].id))
    bulk_app.config["REDIS_URL"] = ""
    job_id = int(response.headers["Location"].rsplit("/", 1)[1])

    real = bulk.export_pack
    calls = []

    def dies_at_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise SystemExit("the worker process was killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(bulk, "export_pack", dies_at_the_third)
    with pytest.raises(SystemExit):
        perform(job_id)
    job = reload(job_id)
    assert (job.status, job.progress_done, job.progress_total) == ("running", 2, 4)
    assert count(EXPORT_KIND) == 2

    monkeypatch.setattr(bulk, "export_pack", real)
    db.session.execute(update(BackgroundJob).where(BackgroundJob.id == job_id)
                       .values(heartbeat_at=utcnow() - timedelta(minutes=5)))
    db.session.commit()
    # the page, looked at now, says the job waits for a worker and wakes this process's
    state = wait_for(client, job_id)
    assert state["status"] == "done" and state["attempts"] == 2
    assert count(EXPORT_KIND) == 4  # E001 and E002 were not exported again
    data = client.get(state["download_url"]).get_data()
    body = check_zip(data, ["E001", "E002", "E003", "E004"])
    assert len({r[8] for r in body}) == 4
    html = client.get(f"/evidence/jobs/{job_id}").get_data(as_text=True)
    assert 'id="job-attempts"' in html and "Attempt 2 of 3" in html
    assert json.loads(db.session.scalar(select(LedgerEntry.payload).where(
        LedgerEntry.kind == BULK_EXPORT_KIND)))["attempt"] == 2


def test_a_killed_worker_process_is_taken_over_by_the_next_one(bulk_app, org, people,
                                                               database_url, signing_dir,
                                                               tmp_path):
    """A real ``lms worker`` process, SIGKILLed during the export; ``lms worker --burst``
    started afterwards finishes it. Wherever the kill landed, each person is exported
    exactly once and the ZIP has everyone."""
    for n in (4, 5):
        people.employee(f"员工{n}", department=org["shanghai"], employee_no=f"E00{n}")
    job = bulk.start_bulk_export(db.session, department=org["shanghai"], course=None,
                                 actor=None, generated_by="test")
    db.session.commit()
    job_id = job.id
    env = {**os.environ, "DATABASE_URL": database_url, "JOBS_DIR": bulk_app.config["JOBS_DIR"],
           "EVIDENCE_SIGNING_DIR": str(signing_dir), "MEDIA_ROOT": str(tmp_path / "media"),
           "REDIS_URL": "", "JOB_LEASE_SECONDS": "1"}
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "lms", "worker"]
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while reload(job_id).progress_done < 1:
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        first.kill()
        first.wait(30)
    assert reload(job_id).status == "running"
    time.sleep(1.2)  # the lease (1 s here) runs out
    second = subprocess.run([*command, "--burst"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"1 interrupted jobs queued again: [{job_id}]" in second.stdout
    job = reload(job_id)
    assert (job.status, job.attempts) == ("done", 2)
    assert count(EXPORT_KIND) == 4
    folder = store.job_dir(store.JobSettings.from_app(bulk_app), job_id)
    body = check_zip((folder / job.result_path).read_bytes(), ["E002", "E003", "E004", "E005"])
    assert len({r[8] for r in body}) == 4


# --- problems -------------------------------------------------------------------------------


def test_a_pack_that_cannot_be_made_is_a_row_of_the_index_not_a_crash(bulk_app, org, tmp_path,
                                                                       monkeypatch):
    real = bulk.export_pack

    def refuse_e002(session, employee, **kwargs):
        if employee.employee_no == "E002":
            raise PackScopeError({"course": ["课程 RISK-X 不存在 no such course"]})
        return real(session, employee, **kwargs)

    monkeypatch.setattr(bulk, "export_pack", refuse_e002)
    out = tmp_path / "out.zip"
    result = bulk_app.test_cli_runner().invoke(
        args=["evidence", "bulk", "--department", "STORES", "-o", str(out)])
    assert result.exit_code == 0, result.output
    _raw, rows, members = read_zip(out.read_bytes())
    failed = next(r for r in rows if r[0] == "E002")
    assert failed[9] == "未导出 not exported" and "RISK-X" in failed[10]
    assert failed[5] == "" and failed[6] == ""
    assert len(members) == 2
    payload = json.loads(db.session.scalar(select(LedgerEntry.payload).where(
        LedgerEntry.kind == BULK_EXPORT_KIND)))
    assert (payload["packs"], payload["problems"]) == (2, 1)


def test_a_job_out_of_attempts_is_failed_with_its_reason_on_the_page(bulk_app, client, org,
                                                                      monkeypatch):
    def broken(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bulk, "export_pack", broken)
    client.login("hr1")
    english(client)
    job_id = int(start(client, department=str(org["shanghai"].id))
                 .headers["Location"].rsplit("/", 1)[1])
    state = wait_for(client, job_id)
    assert state["status"] == "failed" and state["attempts"] == 3
    assert state["error"] == "OSError: [Errno 28] No space left on device"
    assert state["download_url"] is None
    html = client.get(f"/evidence/jobs/{job_id}").get_data(as_text=True)
    assert 'id="job-error"' in html and "No space left on device" in html
    assert 'data-status="failed"' in html
    assert client.get(f"/evidence/jobs/{job_id}/download").status_code == 404
    assert count(EXPORT_KIND) == 0 and count(BULK_EXPORT_KIND) == 0


# --- who may, and bad input -----------------------------------------------------------------


def test_who_may_start_see_and_download_bulk_exports(bulk_app, client, org, make_client):
    client.login("hr1")
    job_id = int(start(client, department=str(org["shanghai"].id))
                 .headers["Location"].rsplit("/", 1)[1])
    state = wait_for(client, job_id)
    assert state["status"] == "done"
    job_urls = [f"/evidence/jobs/{job_id}", f"/evidence/jobs/{job_id}.json",
                f"/evidence/jobs/{job_id}/download"]
    for username in ("hr2", "audit1"):  # HR and auditors see everyone's exports
        other = make_client()
        other.login(username)
        for url in job_urls:
            assert other.get(url).status_code == 200, (username, url)
    manager = make_client()
    manager.login("mgr")
    assert 'id="bulk-export"' not in manager.get("/evidence").get_data(as_text=True)
    assert manager.get("/evidence/bulk").status_code == 403
    assert start(manager, department=str(org["factory"].id)).status_code == 403
    for url in job_urls:  # another person's job: not found, as if it did not exist
        assert manager.get(url).status_code == 404, url
    trainee = make_client()
    trainee.login("lilei")
    for url in ("/evidence/bulk", "/evidence/jobs", *job_urls):
        assert trainee.get(url).status_code == 403, url
    assert start(trainee, department=str(org["stores"].id)).status_code == 403
    assert client.get("/evidence/jobs/9999").status_code == 404
    assert db.session.scalar(select(func.count()).select_from(BackgroundJob)) == 1


@pytest.mark.parametrize("form, field, message", [
    ({}, "department", "Choose a department or a course."),
    ({"department": "99999"}, "department", "No such department."),
    ({"department": "abc"}, "department", "No such department."),
    ({"course": "99999"}, "course", "No such course."),
    ({"department": "EMPTY", "course": ""}, "department",
     "Nobody is in this department or its sub-departments."),
    ({"department": "STORES", "course": "RISK-A"}, "course",
     "Choose either a department or a course, not both."),
])
def test_bad_input_is_named_on_its_field_and_starts_nothing(bulk_app, client, org, form,
                                                            field, message):
    course = Course(code="RISK-A", title_zh="入职身份核验", risk_topic="identity_verification")
    db.session.add(course)
    db.session.commit()
    empty = db.session.scalar(select(Department.id).where(Department.code == "EMPTY"))
    values = {"STORES": str(org["stores"].id), "RISK-A": str(course.id), "EMPTY": str(empty)}
    form = {k: values.get(v, v) for k, v in form.items()}
    client.login("hr1")
    english(client)
    response = start(client, **form)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    block = html.split(f'id="{field}"', 1)[1].split("</div>", 1)[0]
    assert message in block
    assert db.session.scalar(select(func.count()).select_from(BackgroundJob)) == 0
    no_token = client.c.post("/evidence/bulk", data={"department": str(org["stores"].id)})
    assert no_token.status_code == 400

