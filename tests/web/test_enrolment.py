"""Enrolment by HR and by trainees themselves, "My learning", the course page, and the
rule that lessons are taken in order."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from courses import tracking
from courses.media import ingest_video
from courses.models import Course, CourseVersion, Enrollment, Lesson, PlaybackSession
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.ledger import LedgerEntry

DEMO_WEBM = Path(__file__).resolve().parents[2] / "courses" / "demo_media" / "demo.webm"


def make_course(*, code: str, kinds: tuple[str, ...] = ("video",), optional: bool = False,
                status: str = "published", title: str = "劳动合同签订") -> CourseVersion:
    """A version built directly with the ORM (draft first, then its final status)."""
    course = Course(code=code, title_zh=title, title_en="Labour contracts",
                    risk_topic="labour_contracts", is_optional=optional)
    version = CourseVersion(course=course, number=1, status="draft")
    db.session.add_all([course, version])
    db.session.flush()
    for position, kind in enumerate(kinds, start=1):
        media = None
        if kind == "video":
            with DEMO_WEBM.open("rb") as fh:
                media = ingest_video(db.session, fh, "demo.webm", uploaded_by_id=None,
                                     max_bytes=10 * 1024 * 1024)
        db.session.add(Lesson(version=version, position=position, kind=kind,
                              title=f"第{position}课", media=media,
                              body="书面劳动合同" if kind == "document" else ""))
    db.session.flush()
    if status != "draft":
        version.status = status
        version.content_hash = "ab" * 32
        version.published_at = utcnow()
    db.session.commit()
    return version


def enrol(user, version) -> None:
    db.session.add(Enrollment(user_id=user.id, version_id=version.id, source="manual"))
    db.session.commit()


def enrolled_user_ids(version) -> set[int]:
    return set(db.session.execute(select(Enrollment.user_id).where(
        Enrollment.version_id == version.id)).scalars())


def ledger(kind: str) -> list[dict]:
    return [json.loads(p) for p in db.session.execute(
        select(LedgerEntry.payload).where(LedgerEntry.kind == kind)).scalars()]


@pytest.fixture
def org(people):
    """HQ → 华东区 → 南京西路店, with people in every state HR meets."""
    hq = people.department("总部", code="HQ")
    east = people.department("华东区", parent=hq, code="EAST")
    store = people.department("南京西路店", parent=east, code="S01")
    staff = {
        "a": people.employee("王芳", department=east, employee_no="E001"),
        "b": people.employee("刘强", department=store, employee_no="E002"),
        "nologin": people.employee("赵敏", department=store, employee_no="E003"),
        "left": people.employee("钱进", department=store, employee_no="E004", status="left"),
        "other": people.employee("孙丽", department=hq, employee_no="E005"),
    }
    users = {key: people.user(f"u_{key}", "trainee", employee=emp)
             for key, emp in staff.items() if key != "nologin"}
    people.user("hr", "hr")
    return {"hq": hq, "east": east, "store": store, "staff": staff, "users": users}


def test_hr_enrols_a_department_with_sub_departments_idempotently(client, org):
    version = make_course(code="LC-01")
    client.login("hr")
    form = {"version_id": version.id, "department_id": org["east"].id,
            "include_subdepartments": "y", "employee_nos": ""}
    page = client.post("/learning/enrol", form, token_from="/learning/enrol")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert re.search(r'data-count="enrolled">2<', html)
    assert re.search(r'data-count="no_login">1<', html) and "E003" in html
    assert re.search(r'data-count="not_active">1<', html) and "E004" in html
    users = org["users"]
    assert enrolled_user_ids(version) == {users["a"].id, users["b"].id}
    [entry] = ledger("enrolment.manual")
    assert entry["enrolled"] == 2 and entry["no_login"] == 1 and entry["not_active"] == 1
    assert entry["employee_nos"] == ["E001", "E002"] and entry["department"] == "EAST"

    again = client.post("/learning/enrol", form, token_from="/learning/enrol")
    html = again.get_data(as_text=True)
    assert re.search(r'data-count="enrolled">0<', html)
    assert re.search(r'data-count="already">2<', html)
    assert len(ledger("enrolment.manual")) == 1  # nothing changed, nothing recorded
    assert db.session.scalar(select(func.count()).select_from(Enrollment)) == 2


def test_hr_enrols_by_employee_numbers_and_unknown_numbers_are_reported(client, org):
    version = make_course(code="LC-01")
    client.login("hr")
    form = {"version_id": version.id, "department_id": "",
            "employee_nos": "E005，E002\nE999  E002"}
    html = client.post("/learning/enrol", form, token_from="/learning/enrol").get_data(
        as_text=True)
    assert re.search(r'data-count="enrolled">2<', html)
    assert re.search(r'data-count="unknown">1<', html) and "E999" in html
    users = org["users"]
    assert enrolled_user_ids(version) == {users["other"].id, users["b"].id}


def test_without_sub_departments_only_the_department_itself(client, org):
    version = make_course(code="LC-01")
    client.login("hr")
    client.post("/learning/enrol", {"version_id": version.id, "department_id": org["east"].id,
                                    "employee_nos": ""}, token_from="/learning/enrol")
    assert enrolled_user_ids(version) == {org["users"]["a"].id}


def test_enrolment_needs_people_and_a_published_version(client, org):
    draft = make_course(code="LC-02", status="draft")
    client.login("hr")
    empty = client.post("/learning/enrol", {"version_id": make_course(code="LC-01").id,
                                            "department_id": "", "employee_nos": ""},
                        token_from="/learning/enrol")
    assert empty.status_code == 422
    assert '<p class="error">' in empty.get_data(as_text=True)
    refused = client.post("/learning/enrol", {"version_id": draft.id, "employee_nos": "E001"},
                          token_from="/learning/enrol")
    assert refused.status_code == 422
    assert db.session.scalar(select(func.count()).select_from(Enrollment)) == 0


def test_a_trainee_cannot_enrol_anyone(client, org):
    version = make_course(code="LC-01")
    client.login("u_a")
    assert client.get("/learning/enrol").status_code == 403
    resp = client.post("/learning/enrol", {"version_id": version.id, "employee_nos": "E002"},
                       token_from="/learning")
    assert resp.status_code == 403
    assert enrolled_user_ids(version) == set()


def test_trainees_self_enrol_only_in_published_optional_courses(client, org):
    optional = make_course(code="OPT-01", optional=True, title="选修：考勤管理")
    mandatory = make_course(code="MAN-01", title="必修：工伤处理")
    draft = make_course(code="OPT-02", optional=True, status="draft", title="选修：草稿")
    client.login("u_a")
    page = client.get("/learning").get_data(as_text=True)
    assert "选修：考勤管理" in page
    assert "必修：工伤处理" not in page and "选修：草稿" not in page

    resp = client.post(f"/learning/courses/{optional.id}/enrol", token_from="/learning")
    assert resp.status_code == 302
    user_id = org["users"]["a"].id
    assert enrolled_user_ids(optional) == {user_id}
    [entry] = ledger("enrolment.self")
    assert entry["employee_no"] == "E001" and entry["course_code"] == "OPT-01"
    # Enrolling twice changes nothing.
    client.post(f"/learning/courses/{optional.id}/enrol", token_from="/learning")
    assert len(ledger("enrolment.self")) == 1

    for version in (mandatory, draft):
        client.post(f"/learning/courses/{version.id}/enrol", token_from="/learning")
        assert enrolled_user_ids(version) == set()
    # Now it is among the learner's courses and no longer offered.
    page = client.get("/learning").get_data(as_text=True)
    assert page.count('data-course-code="OPT-01"') == 1
    assert 'data-course-code="OPT-01"' in page.split('id="my-courses"')[1].split("</section>")[0]


def test_my_learning_shows_each_course_with_its_progress(client, org, monkeypatch):
    version = make_course(code="LC-01", kinds=("document", "video"))
    untouched = make_course(code="LC-02", title="离职交接")
    user = org["users"]["a"]
    enrol(user, version)
    enrol(user, untouched)
    client.login("u_a")
    html = client.get("/learning").get_data(as_text=True)
    assert html.count('data-course-status="not_started"') == 2

    # Read the document lesson (1 of 2) on a controlled clock.
    start = utcnow()
    monkeypatch.setattr(tracking, "clock", lambda: start)
    doc = version.lessons[0]
    client.get(f"/learning/lessons/{doc.id}")
    token = db.session.execute(select(PlaybackSession.token)).scalar_one()
    monkeypatch.setattr(tracking, "clock", lambda: start + timedelta(seconds=31))
    client.post(f"/learning/lessons/{doc.id}/read", {"session": token}, token_from="/learning")

    html = client.get("/learning").get_data(as_text=True)
    item = html.split(f'data-version-id="{version.id}"')[1].split("</li>")[0]
    assert 'data-course-status="in_progress"' in item
    assert 'value="50"' in item and "50%" in item
    other = html.split(f'data-version-id="{untouched.id}"')[1].split("</li>")[0]
    assert 'data-course-status="not_started"' in other and 'value="0"' in other
    # The home page shows the same, in the #my-learning section.
    home = client.get("/").get_data(as_text=True)
    section = home.split('id="my-learning"')[1].split("</section>")[0]
    assert "劳动合同签订" in section and 'value="50"' in section


def test_my_learning_is_one_query(app, client, org):
    from sqlalchemy import event

    user = org["users"]["a"]
    for n in range(5):
        enrol(user, make_course(code=f"LC-{n}", kinds=("video", "document")))
    client.login("u_a")
    client.get("/learning")
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        if "enrollments" in statement and "lesson_progress" in statement:
            statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        html = client.get("/learning").get_data(as_text=True)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert html.count('class="course-item"') == 5
    assert len(statements) == 1


def test_lessons_open_in_order(client, org, monkeypatch):
    version = make_course(code="LC-01", kinds=("document", "video"))
    user = org["users"]["a"]
    enrol(user, version)
    first, second = version.lessons
    client.login("u_a")
    course = client.get(f"/learning/courses/{version.id}").get_data(as_text=True)
    assert f'data-lesson-id="{second.id}" data-state="locked"' in course
    blocked = client.get(f"/learning/lessons/{second.id}")
    assert blocked.status_code == 302 and blocked.location.endswith(f"/courses/{version.id}")
    csrf = client.csrf("/learning")
    refused = client.c.post(f"/learning/lessons/{second.id}/session",
                            headers={"X-CSRFToken": csrf})
    assert refused.status_code == 403

    start = utcnow()
    monkeypatch.setattr(tracking, "clock", lambda: start)
    client.get(f"/learning/lessons/{first.id}")
    token = db.session.execute(select(PlaybackSession.token)).scalar_one()
    monkeypatch.setattr(tracking, "clock", lambda: start + timedelta(seconds=40))
    client.post(f"/learning/lessons/{first.id}/read", {"session": token}, token_from="/learning")

    assert client.get(f"/learning/lessons/{second.id}").status_code == 200
    opened = client.c.post(f"/learning/lessons/{second.id}/session",
                           headers={"X-CSRFToken": csrf})
    assert opened.status_code == 200 and opened.get_json()["session"]


def test_another_users_course_and_lessons_are_404(client, org):
    version = make_course(code="LC-01", kinds=("video",))
    enrol(org["users"]["b"], version)
    client.login("u_a")
    lesson = version.lessons[0]
    assert client.get(f"/learning/courses/{version.id}").status_code == 404
    assert client.get(f"/learning/lessons/{lesson.id}").status_code == 404
    csrf = client.csrf("/learning")
    assert client.c.post(f"/learning/lessons/{lesson.id}/session",
                         headers={"X-CSRFToken": csrf}).status_code == 404
    assert db.session.scalar(select(func.count()).select_from(PlaybackSession)) == 0
