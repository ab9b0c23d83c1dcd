"""Alerts about the regulation clock: to every enabled trainer and HR user, once when two
working days or fewer remain and once when the deadline has passed, never twice, and
never for updates already pushed or set aside."""

from __future__ import annotations

from datetime import datetime

from regulation_support import beijing, make_update
from sqlalchemy import func, select

from lms.compliance.regulation import workflow
from lms.compliance.regulation.alerts import send_regulation_alerts
from lms.compliance.regulation.models import RegulationUpdate
from lms.extensions import db
from lms.notify.models import Message
from lms.workday_overrides import load_calendar

pytest_plugins = ["regulation_fixtures"]  # org, page_clock


def tick(now: datetime):
    report = send_regulation_alerts(db.session, calendar=load_calendar(db.session), now=now)
    db.session.commit()
    return report


def messages() -> list[tuple[int, str, str, str]]:
    return [(m.recipient_user_id, m.dedupe_key, m.kind, m.link) for m in db.session.scalars(
        select(Message).order_by(Message.id))]


def test_two_days_left_then_overdue_each_once_to_trainers_and_hr(app, org, people):
    off = people.user("trainer_off", "trainer", enabled=False)
    # detected Tue 29 Sep 2026: deadline Wed 14 Oct, across National Day
    row = make_update(detected_at=beijing(2026, 9, 29))
    assert row.deadline_date.isoformat() == "2026-10-14"
    staff = {org.trainer.id, org.hr.id}

    assert tick(beijing(2026, 10, 3)).updates == []  # holiday: 6 left
    assert tick(beijing(2026, 10, 9, 8)).updates == []  # Fri: Sat 10 (调休), 12, 13, 14
    assert messages() == []

    assert tick(beijing(2026, 10, 10, 8)).updates == []  # the 调休 Saturday: 12, 13, 14
    assert tick(beijing(2026, 10, 11, 8)).updates == []  # Sunday: still three
    report = tick(beijing(2026, 10, 12, 8))  # Monday: Tue 13, Wed 14 = 2 left
    assert report.updates == [row.id] and report.two_days_left == 2
    sent = messages()
    assert {r for r, *_ in sent} == staff and off.id not in {r for r, *_ in sent}
    assert {(k, kind, link) for _r, k, kind, link in sent} == {
        (f"regulation:{row.id}:2_days_left", "alert", f"/regulation/updates/{row.id}")}
    subject = db.session.scalar(select(Message.subject).limit(1))
    assert "还剩 2 个工作日" in subject and "关于调整最低工资标准的通知" in subject

    # the same day again, then the last days: nothing more
    for now in (beijing(2026, 10, 12, 9), beijing(2026, 10, 13), beijing(2026, 10, 14, 23)):
        assert tick(now).updates == []
    assert len(messages()) == 2

    report = tick(beijing(2026, 10, 15, 0, 5))  # past the deadline
    assert report.overdue == 2
    overdue = [m for m in messages() if m[1].endswith(":overdue")]
    assert {r for r, *_ in overdue} == staff
    body = db.session.scalar(select(Message.body).where(Message.dedupe_key.like("%:overdue")))
    assert "2026-10-14（周三）" in body

    for now in (beijing(2026, 10, 15, 9), beijing(2026, 10, 20)):
        assert tick(now).updates == []
    assert len(messages()) == 4
    db.session.expire_all()
    assert db.session.get(RegulationUpdate, row.id).alerts_sent == "2_days_left,overdue"


def test_a_first_tick_after_the_deadline_sends_only_the_overdue_alert(app, org):
    row = make_update(detected_at=beijing(2026, 11, 2))  # deadline Wed 11 Nov
    tick(beijing(2026, 11, 12))
    assert {k for _r, k, *_ in messages()} == {f"regulation:{row.id}:overdue"}


def test_a_late_first_tick_with_one_day_left_still_warns(app, org):
    row = make_update(detected_at=beijing(2026, 11, 2))  # deadline Wed 11 Nov
    report = tick(beijing(2026, 11, 10))  # Tue: one working day left
    assert report.two_days_left == 2
    assert "还剩 1 个工作日" in db.session.scalar(select(Message.subject).limit(1))
    assert {k for _r, k, *_ in messages()} == {f"regulation:{row.id}:2_days_left"}


def test_pushed_and_not_relevant_updates_are_not_alerted(app, org):
    decided = make_update("不相关的通知", detected_at=beijing(2026, 11, 2))
    workflow.mark_not_relevant(db.session, decided, reason="不适用", actor_id=org.trainer.id,
                               now=beijing(2026, 11, 3))
    db.session.commit()
    still_open = make_update("仍待处理的通知", detected_at=beijing(2026, 11, 2))
    tick(beijing(2026, 11, 12))
    assert {k for _r, k, *_ in messages()} == {f"regulation:{still_open.id}:overdue"}


def test_the_tick_command_sends_alerts_once(app, client, org, monkeypatch):
    row = make_update(detected_at=beijing(2026, 11, 2))
    monkeypatch.setattr("lms.dbtypes.utcnow", lambda: beijing(2026, 11, 10, 9))
    runner = app.test_cli_runner()
    first = runner.invoke(args=["lms", "tick"])
    assert "regulation alerts: 2 '2 working days left' and 0 'overdue' messages for 1 " \
           "updates" in first.output, first.output
    second = runner.invoke(args=["lms", "tick"])
    assert "regulation alerts: 0 '2 working days left' and 0 'overdue' messages for 0 " \
           "updates" in second.output, second.output
    assert db.session.scalar(select(func.count()).select_from(Message).where(
        Message.dedupe_key.like(f"regulation:{row.id}:%"))) == 2
    client.login("hr1")
    page = client.get("/inbox").get_data(as_text=True)
    assert "关于调整最低工资标准的通知" in page
