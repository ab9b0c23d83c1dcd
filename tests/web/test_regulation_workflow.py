"""A regulation update's way from entry to learners: triage, material, push, close; each
step one event and one ledger entry; illegal or concurrent steps refused; permissions;
the push assigns exactly the audience, due in working days, visible in "My learning"."""

from __future__ import annotations

import json
import re
import threading
from datetime import date

import pytest
from regulation_support import beijing, course_by_code, make_update, published_course
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from assessments.policies import PolicyVersion
from courses.models import Course, CourseVersion, Enrollment, Lesson
from lms.compliance.engine import sync_completions
from lms.compliance.models import Assignment, AssignmentRule
from lms.compliance.regulation import workflow
from lms.compliance.regulation.models import RegulationEvent, RegulationUpdate
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.ledger import LedgerEntry, verify

pytest_plugins = ["regulation_fixtures"]  # org, page_clock


def url(row_or_id, action: str = "") -> str:
    update_id = row_or_id if isinstance(row_or_id, int) else row_or_id.id
    return f"/regulation/updates/{update_id}" + (f"/{action}" if action else "")


def ledger_kinds(update_id: int) -> list[str]:
    return list(db.session.scalars(select(LedgerEntry.kind).where(
        LedgerEntry.subject == f"regulation:{update_id}").order_by(LedgerEntry.seq)))


def events(update_id: int) -> list[tuple[str | None, str]]:
    return [(e.from_state, e.to_state) for e in db.session.scalars(
        select(RegulationEvent).where(RegulationEvent.update_id == update_id)
        .order_by(RegulationEvent.id))]


def state_of(update_id: int) -> str:
    db.session.expire_all()
    return db.session.get(RegulationUpdate, update_id).state


def triage_data(org, **extra) -> dict:
    return {"topic": "labour_contracts", "department_ids": [str(org.sales.id)],
            "include_subdepartments": "y", "statuses": ["active"],
            "note": "涉及销售人员的加班费计算", "action": "save", **extra}


def assigned_users(rule_id: int) -> set[int]:
    return set(db.session.scalars(select(Assignment.user_id).where(Assignment.rule_id == rule_id)))


# --- the whole way ------------------------------------------------------------------------


def test_entered_by_hand_triaged_briefed_with_signature_pushed_and_closed(
        app, client, make_client, org, page_clock):
    client.login("trainer1")
    # Tue 29 Sep 2026, 10:00 in Beijing: seven working days across National Day
    new = client.post("/regulation/updates/new", {
        "title": "最高法劳动争议司法解释（二）", "link": "https://www.court.gov.cn/zixun/123.html",
        "summary": "明确了加班费举证责任。", "published_on": "2026-09-28"},
        token_from="/regulation/updates/new")
    assert new.status_code == 302
    row = db.session.scalar(select(RegulationUpdate))
    assert new.headers["Location"].endswith(url(row))
    assert (row.origin, row.state, row.source_id) == ("manual", "new", None)
    assert row.dedupe_key.startswith("manual:") and len(row.dedupe_key) == 39
    assert row.deadline_date == date(2026, 10, 14) and row.deadline_working_days == 7
    assert row.published_raw == "2026-09-28"
    page = client.get(url(row)).get_data(as_text=True)
    assert "最高法劳动争议司法解释（二）" in page and "2026-10-14" in page
    assert 'data-remaining="7"' in page and 'data-urgency="ok"' in page

    # preview the audience: 销售部 with its sub-department = 王芳 and 李强
    preview = client.post(url(row, "triage"), triage_data(org, action="preview"),
                          token_from=url(row))
    assert preview.status_code == 200
    assert 'class="stat preview-count" data-count="2"' in preview.get_data(as_text=True)
    assert state_of(row.id) == "new"

    triaged = client.post(url(row, "triage"), triage_data(org), token_from=url(row))
    assert triaged.status_code == 302
    row = db.session.get(RegulationUpdate, row.id)
    assert row.state == "triaged" and row.topic == "labour_contracts"
    rule = db.session.get(AssignmentRule, row.rule_id)
    assert rule.is_active is False and rule.course.code == f"REG-{row.id}"
    assert rule.course.risk_topic == "labour_contracts"
    assert db.session.scalar(select(func.count()).select_from(Assignment)) == 0
    page = client.get(url(row)).get_data(as_text=True)
    assert 'id="audience-size" data-count="2"' in page and 'id="briefing-form"' in page

    page_clock.set(beijing(2026, 10, 8, 15))
    briefing = client.post(url(row, "briefing"), {
        "briefing-title": "加班费举证责任的新规定", "briefing-body": "用人单位应保存考勤记录两年。\n请各销售经理知悉。",
        "briefing-require_signature": "y"}, token_from=url(row))
    assert briefing.status_code == 302
    row = db.session.get(RegulationUpdate, row.id)
    assert row.state == "material_ready" and row.material_kind == "briefing"
    version = db.session.get(CourseVersion, row.version_id)
    assert version.status == "published" and version.course_id == row.course_id == rule.course_id
    lessons = db.session.scalars(select(Lesson).where(Lesson.version_id == version.id)
                                 .order_by(Lesson.position)).all()
    assert [lesson.kind for lesson in lessons] == ["document", "policy"]
    assert lessons[0].body == "用人单位应保存考勤记录两年。\n请各销售经理知悉。"
    policy = db.session.get(PolicyVersion, lessons[1].policy_version_id)
    assert policy.status == "published" and policy.body == lessons[0].body

    # push on Fri 9 Oct: due in 5 working days = Sat 10 (调休), Mon 12 .. Thu 15
    page_clock.set(beijing(2026, 10, 9, 11))
    pushed = client.post(url(row, "push"), {"due_working_days": "5"}, token_from=url(row))
    assert pushed.status_code == 302
    row = db.session.get(RegulationUpdate, row.id)
    assert row.state == "pushed" and row.on_time is True and row.pushed_at is not None
    assert db.session.get(AssignmentRule, row.rule_id).is_active is True
    assigned = db.session.scalars(select(Assignment).where(Assignment.rule_id == row.rule_id)).all()
    assert {a.user_id for a in assigned} == {org.in_sales.id, org.in_east.id}
    assert {a.due_date for a in assigned} == {date(2026, 10, 15)}
    assert {a.version_id for a in assigned} == {version.id}
    assert set(db.session.scalars(select(Enrollment.user_id).where(
        Enrollment.version_id == version.id))) == {org.in_sales.id, org.in_east.id}
    pushed_entry = db.session.scalar(select(LedgerEntry).where(
        LedgerEntry.kind == "regulation.pushed"))
    payload = json.loads(pushed_entry.payload)
    assert payload["assigned"] == 2 and payload["on_time"] is True
    assert payload["due_dates"] == {"2026-10-15": 2}

    page = client.get(url(row)).get_data(as_text=True)
    assert 'data-on-time="true"' in page and 'data-status="open" data-count="2"' in page

    closed = client.post(url(row, "close"), {"note": "已在周会上确认", "stop_assigning": "y"},
                         token_from=url(row))
    assert closed.status_code == 302
    row = db.session.get(RegulationUpdate, row.id)
    assert row.state == "closed" and row.closed_at is not None
    assert db.session.get(AssignmentRule, row.rule_id).is_active is False

    assert ledger_kinds(row.id) == ["regulation.detected", "regulation.triaged",
                                    "regulation.material_ready", "regulation.pushed",
                                    "regulation.closed"]
    assert events(row.id) == [(None, "new"), ("new", "triaged"), ("triaged", "material_ready"),
                              ("material_ready", "pushed"), ("pushed", "closed")]
    seqs = db.session.scalars(select(RegulationEvent.ledger_seq).where(
        RegulationEvent.update_id == row.id)).all()
    kinds = [db.session.get(LedgerEntry, s).kind for s in seqs]
    assert kinds == ledger_kinds(row.id)  # each event points at its own entry
    history = client.get(url(row)).get_data(as_text=True)
    assert all(f'data-seq="{s}"' in history for s in seqs)
    assert "已在周会上确认" in history
    assert verify(db.session).ok


def test_learners_in_the_audience_see_the_briefing_and_reading_it_completes_it(
        app, client, make_client, org, page_clock):
    app.config["DOCUMENT_MIN_READ_SECONDS"] = 0
    row = make_update(detected_at=beijing(2026, 11, 16))
    page_clock.set(beijing(2026, 11, 16, 14))
    client.login("hr1")  # HR may act too
    assert client.post(url(row, "triage"), triage_data(org), token_from=url(row)).status_code == 302
    assert client.post(url(row, "briefing"), {"briefing-title": "最低工资调整",
                                              "briefing-body": "自 12 月 1 日起执行新标准。"},
                       token_from=url(row)).status_code == 302
    assert client.post(url(row, "push"), {"due_working_days": "5"},
                       token_from=url(row)).status_code == 302
    row = db.session.get(RegulationUpdate, row.id)
    code = f"REG-{row.id}"

    inside = make_client()
    inside.login("liqiang")  # 华东销售, a sub-department of 销售部
    mine = inside.get("/learning").get_data(as_text=True)
    assert f'data-course-code="{code}"' in mine and "法规更新：关于调整最低工资标准的通知" in mine
    assert 'data-due-date="2026-11-23"' in mine  # Mon 16 Nov + 5 working days
    outside = make_client()
    outside.login("zhaolei")  # 工厂
    assert f'data-course-code="{code}"' not in outside.get("/learning").get_data(as_text=True)
    assert outside.get(f"/learning/courses/{row.version_id}").status_code == 404

    # reading the document lesson is the read receipt; it completes the assignment
    lesson = db.session.scalar(select(Lesson).where(Lesson.version_id == row.version_id))
    page = inside.get(f"/learning/lessons/{lesson.id}").get_data(as_text=True)
    assert "自 12 月 1 日起执行新标准。" in page
    token = re.search(r'name="session"[^>]*value="([^"]+)"', page).group(1)
    done = inside.post(f"/learning/lessons/{lesson.id}/read", {"session": token},
                       token_from="/learning")
    assert done.status_code == 302
    sync_completions(db.session, now=utcnow())
    db.session.commit()
    status = dict(db.session.execute(select(Assignment.user_id, Assignment.status).where(
        Assignment.rule_id == row.rule_id)).all())
    assert status == {org.in_sales.id: "open", org.in_east.id: "completed"}


def test_existing_course_as_material_assigns_its_newest_published_version(
        app, client, org, page_clock):
    version = published_course(actor_id=org.trainer.id)
    row = make_update(detected_at=beijing(2026, 11, 16))
    client.login("trainer1")
    page_clock.set(beijing(2026, 11, 16, 11))
    client.post(url(row, "triage"), triage_data(org, include_subdepartments=""),
                token_from=url(row))
    page = client.get(url(row)).get_data(as_text=True)
    assert "RISK-LC-01 · 劳动合同管理" in page  # offered as material
    chosen = client.post(url(row, "course"), {"course-course_id": str(version.course_id)},
                         token_from=url(row))
    assert chosen.status_code == 302
    row = db.session.get(RegulationUpdate, row.id)
    assert (row.material_kind, row.course_id, row.version_id) == ("course", version.course_id,
                                                                  version.id)
    assert db.session.get(AssignmentRule, row.rule_id).course_id == version.course_id
    # pushed late: after the deadline (Wed 25 Nov)
    page_clock.set(beijing(2026, 11, 26, 9))
    assert client.post(url(row, "push"), {"due_working_days": "3"},
                       token_from=url(row)).status_code == 302
    row = db.session.get(RegulationUpdate, row.id)
    assert row.on_time is False
    # without sub-departments only 王芳 (销售部 itself) is assigned
    assert assigned_users(row.rule_id) == {org.in_sales.id}
    assert db.session.scalar(select(Assignment.due_date).where(
        Assignment.rule_id == row.rule_id)) == date(2026, 12, 1)
    assert 'data-on-time="false"' in client.get(url(row)).get_data(as_text=True)


def test_a_course_without_a_published_version_cannot_be_the_material(app, client, org,
                                                                     page_clock):
    row = make_update(detected_at=beijing(2026, 11, 16))
    client.login("trainer1")
    client.post(url(row, "triage"), triage_data(org), token_from=url(row))
    own = course_by_code(f"REG-{row.id}")  # the update's own course: an empty draft
    refused = client.post(url(row, "course"), {"course-course_id": str(own.id)},
                          token_from=url(row))
    assert refused.status_code == 422
    form = refused.get_data(as_text=True).split('id="course-form"')[1].split("</form>")[0]
    assert '<p class="error">' in form  # named on the course field
    assert state_of(row.id) == "triaged"


def test_the_audience_can_change_before_the_push(app, client, org, page_clock):
    row = make_update(detected_at=beijing(2026, 11, 16))
    client.login("trainer1")
    client.post(url(row, "triage"), triage_data(org), token_from=url(row))
    changed = client.post(url(row, "audience"), {
        "department_ids": [str(org.factory.id)], "statuses": ["active"], "action": "save"},
        token_from=url(row))
    assert changed.status_code == 302
    client.post(url(row, "briefing"), {"briefing-title": "通知", "briefing-body": "正文"},
                token_from=url(row))
    client.post(url(row, "push"), {"due_working_days": "5"}, token_from=url(row))
    row = db.session.get(RegulationUpdate, row.id)
    assert assigned_users(row.rule_id) == {org.in_factory.id}
    assert ("triaged", "triaged") in events(row.id)
    assert "regulation.audience_changed" in ledger_kinds(row.id)


# --- refusals -----------------------------------------------------------------------------


def test_not_relevant_needs_a_reason_and_is_final(app, client, org, page_clock):
    row = make_update(detected_at=beijing(2026, 11, 16))
    client.login("trainer1")
    missing = client.post(url(row, "not-relevant"), {"reason": "  "}, token_from=url(row))
    assert missing.status_code == 422
    assert state_of(row.id) == "new" and ledger_kinds(row.id) == ["regulation.detected"]
    done = client.post(url(row, "not-relevant"), {"reason": "仅适用于建筑业企业"},
                       token_from=url(row))
    assert done.status_code == 302
    assert state_of(row.id) == "not_relevant"
    assert ledger_kinds(row.id) == ["regulation.detected", "regulation.not_relevant"]
    page = client.get(url(row)).get_data(as_text=True)
    assert "仅适用于建筑业企业" in page and 'id="triage-form"' not in page
    again = client.post(url(row, "triage"), triage_data(org), token_from=url(row))
    assert again.status_code == 409
    assert state_of(row.id) == "not_relevant"
    assert db.session.scalar(select(func.count()).select_from(AssignmentRule)) == 0


@pytest.mark.parametrize(("action", "data"), [
    ("push", {"due_working_days": "5"}),
    ("close", {"note": ""}),
    ("briefing", {"briefing-title": "标题", "briefing-body": "正文"}),
])
def test_steps_out_of_order_are_refused_with_409_and_change_nothing(app, client, org,
                                                                   page_clock, action, data):
    row = make_update(detected_at=beijing(2026, 11, 16))
    client.login("trainer1")
    before = db.session.scalar(select(func.count()).select_from(LedgerEntry))
    refused = client.post(url(row, action), data, token_from=url(row))
    assert refused.status_code == 409
    text = refused.get_data(as_text=True)
    assert 'data-state="new"' in text and 'role="alert"' in text
    assert state_of(row.id) == "new"
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == before
    assert events(row.id) == [(None, "new")]
    assert db.session.scalar(select(func.count()).select_from(Course)) == 0


def test_bad_input_is_named_and_nothing_is_written(app, client, org, page_clock):
    row = make_update(detected_at=beijing(2026, 11, 16))
    client.login("trainer1")
    bad = client.post(url(row, "triage"), triage_data(org, topic="", statuses=[]),
                      token_from=url(row))
    assert bad.status_code == 422
    assert state_of(row.id) == "new"
    client.post(url(row, "triage"), triage_data(org), token_from=url(row))
    empty = client.post(url(row, "briefing"), {"briefing-title": "", "briefing-body": ""},
                        token_from=url(row))
    assert empty.status_code == 422
    assert state_of(row.id) == "triaged"
    assert db.session.scalar(select(func.count()).select_from(Lesson)) == 0
    client.post(url(row, "briefing"), {"briefing-title": "标题", "briefing-body": "正文"},
                token_from=url(row))
    zero = client.post(url(row, "push"), {"due_working_days": "0"}, token_from=url(row))
    assert zero.status_code == 422
    assert state_of(row.id) == "material_ready"
    assert db.session.scalar(select(func.count()).select_from(Assignment)) == 0


@pytest.mark.parametrize(("link", "ok"), [
    ("https://www.mohrss.gov.cn/a.html", True),
    ("http://example.cn/x?y=1", True),
    ("ftp://example.cn/a", False),
    ("javascript:alert(1)", False),
    ("www.example.cn", False),
    ("https://", False),
    ("", False),
])
def test_manual_entry_accepts_only_http_links(app, client, org, page_clock, link, ok):
    client.login("trainer1")
    resp = client.post("/regulation/updates/new", {"title": "某地工伤认定新规", "link": link,
                                                   "summary": ""},
                       token_from="/regulation/updates/new")
    assert resp.status_code == (302 if ok else 422)
    count = db.session.scalar(select(func.count()).select_from(RegulationUpdate))
    assert count == (1 if ok else 0)


def test_manual_entry_requires_a_title_and_a_past_publication_date(app, client, org,
                                                                  page_clock):
    client.login("trainer1")
    resp = client.post("/regulation/updates/new", {
        "title": " ", "link": "https://example.cn/", "published_on": "2026-10-30"},
        token_from="/regulation/updates/new")
    assert resp.status_code == 422
    assert resp.get_data(as_text=True).count('class="error"') == 2
    assert db.session.scalar(select(func.count()).select_from(RegulationUpdate)) == 0


# --- concurrency --------------------------------------------------------------------------


def test_a_stale_page_cannot_win_a_transition_already_made(app, org):
    row = make_update(detected_at=beijing(2026, 11, 16))
    stale_session = Session(db.engine, expire_on_commit=False)
    try:
        stale = stale_session.get(RegulationUpdate, row.id)
        stale_session.commit()  # the object still says "new" in memory
        workflow.mark_not_relevant(db.session, db.session.get(RegulationUpdate, row.id),
                                   reason="不适用", actor_id=org.trainer.id, now=utcnow())
        db.session.commit()
        assert stale.state == "new"
        with pytest.raises(workflow.TransitionRefused):
            workflow.triage(stale_session, stale, topic="other",
                            audience=workflow.Audience(), note="", actor_id=org.hr.id,
                            now=utcnow())
        stale_session.rollback()
    finally:
        stale_session.close()
    assert state_of(row.id) == "not_relevant"
    assert events(row.id) == [(None, "new"), ("new", "not_relevant")]


def test_two_simultaneous_transitions_only_one_wins(app, org):
    row = make_update(detected_at=beijing(2026, 11, 16))
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def act(reason: str) -> None:
        with app.app_context():
            session = Session(db.engine, expire_on_commit=False)
            try:
                mine = session.get(RegulationUpdate, row.id)
                session.commit()
                barrier.wait(timeout=10)
                workflow.mark_not_relevant(session, mine, reason=reason,
                                           actor_id=org.trainer.id, now=utcnow())
                session.commit()
                outcomes.append("won")
            except workflow.TransitionRefused:
                session.rollback()
                outcomes.append("refused")
            finally:
                session.close()

    threads = [threading.Thread(target=act, args=(r,)) for r in ("理由甲", "理由乙")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["refused", "won"]
    assert events(row.id)[1:] == [("new", "not_relevant")]
    assert ledger_kinds(row.id) == ["regulation.detected", "regulation.not_relevant"]
    assert verify(db.session).ok


# --- permissions --------------------------------------------------------------------------


def test_only_trainers_and_hr_act_auditors_read_others_are_refused(app, client, make_client,
                                                                   org, page_clock):
    row = make_update(detected_at=beijing(2026, 11, 16))
    for username in ("trainee1", "manager1"):
        c = make_client()
        c.login(username)
        assert c.get("/regulation").status_code == 403
        assert c.get("/regulation/updates").status_code == 403
        assert c.get(url(row)).status_code == 403
        assert c.get("/regulation/updates/new").status_code == 403
        assert c.post(url(row, "triage"), triage_data(org), token_from="/learning"
                      ).status_code == 403
        assert 'id="nav-regulation"' not in c.get("/learning").get_data(as_text=True)
    auditor = make_client()
    auditor.login("auditor1")
    assert auditor.get("/regulation").status_code == 200
    page = auditor.get(url(row))
    assert page.status_code == 200 and 'id="triage-form"' not in page.get_data(as_text=True)
    assert auditor.post(url(row, "not-relevant"), {"reason": "x"},
                        token_from="/regulation").status_code == 403
    assert auditor.get("/regulation/updates/new").status_code == 403
    assert state_of(row.id) == "new"
    trainer = make_client()
    trainer.login("trainer1")
    assert 'id="nav-regulation"' in trainer.get("/learning").get_data(as_text=True)
    assert 'id="triage-form"' in trainer.get(url(row)).get_data(as_text=True)
    assert trainer.get(url(row.id + 999)).status_code == 404
    assert trainer.post(url(row.id + 999, "push"), {"due_working_days": "5"},
                        token_from="/regulation").status_code == 404
    anonymous = make_client()
    assert anonymous.get("/regulation").status_code in (302, 401)


# --- tags and HR's rules page ----------------------------------------------------------


def test_an_audience_by_tag_reaches_only_the_tagged_people(app, client, org, page_clock):
    from lms.people.models import EmployeeTag

    db.session.add(EmployeeTag(employee_id=org.in_east.employee_id, tag="外派"))
    db.session.commit()
    row = make_update(detected_at=beijing(2026, 11, 16))
    client.login("trainer1")
    preview = client.post(url(row, "triage"), triage_data(org, tags="外派", action="preview"),
                          token_from=url(row))
    assert 'class="stat preview-count" data-count="1"' in preview.get_data(as_text=True)
    bad = client.post(url(row, "triage"), triage_data(org, tags="x" * 40), token_from=url(row))
    assert bad.status_code == 422 and state_of(row.id) == "new"
    client.post(url(row, "triage"), triage_data(org, tags="外派"), token_from=url(row))
    page = client.get(url(row)).get_data(as_text=True)
    assert 'id="audience-size" data-count="1"' in page and 'value="外派"' in page
    client.post(url(row, "briefing"), {"briefing-title": "通知", "briefing-body": "正文"},
                token_from=url(row))
    client.post(url(row, "push"), {"due_working_days": "5"}, token_from=url(row))
    row = db.session.get(RegulationUpdate, row.id)
    assert assigned_users(row.rule_id) == {org.in_east.id}


def test_hr_rules_page_keeps_regulation_audiences_apart_and_read_only(app, client, make_client,
                                                                      org, page_clock):
    row = make_update(detected_at=beijing(2026, 11, 16))
    client.login("trainer1")
    client.post(url(row, "triage"), triage_data(org), token_from=url(row))
    rule_id = db.session.get(RegulationUpdate, row.id).rule_id
    hr = make_client()
    hr.login("hr1")
    page = hr.get("/compliance/rules").get_data(as_text=True)
    own_table = page.split('id="regulation-rules"', 1)
    assert len(own_table) == 2 and f'id="rule-{rule_id}"' in own_table[1]
    assert f'id="rule-{rule_id}"' not in own_table[0]
    assert f"/regulation/updates/{row.id}" in own_table[1]
    edit = hr.get(f"/compliance/rules/{rule_id}/edit")
    assert edit.status_code == 409 and edit.headers["Location"].endswith(url(row))
    sneaky = hr.post(f"/compliance/rules/{rule_id}/edit", {
        "name": "x", "course_id": "", "statuses": ["active"], "is_active": "y",
        "due_working_days": "5", "applies_to": "everyone"}, token_from="/compliance/rules")
    assert sneaky.status_code == 409
    run = hr.post(f"/compliance/rules/{rule_id}/run", {}, token_from="/compliance/rules")
    assert run.status_code == 409
    db.session.expire_all()
    assert db.session.get(AssignmentRule, rule_id).is_active is False
    assert db.session.scalar(select(func.count()).select_from(Assignment)) == 0
