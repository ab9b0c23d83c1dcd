"""Reminders and escalation: the schedule across National Day 2026 and a 调休 Saturday,
each stage once at the right Beijing date to the right people, bulk sends, nothing sent
twice (messages and e-mails), suspended/completed/waived left alone, digests once per
working day with indirect reports, real SMTP (aiosmtpd), and the ``lms tick`` command
with its lock."""

from __future__ import annotations

import email
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from email import policy as email_policy
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from courses.models import Course, CourseVersion, Enrollment, Lesson
from lms.compliance.engine import evaluate_rule, run_assignment_tick
from lms.compliance.models import Assignment, AssignmentRule, RuleDepartment
from lms.compliance.reminders import ReminderPolicy, ReminderReport, send_reminders
from lms.extensions import db
from lms.ledger import verify
from lms.notify.models import Message, MessageDelivery
from lms.notify.tick import run_notify_tick
from lms.people.models import User
from lms.scheduler_lock import SchedulerLock
from lms.workdays import default_calendar

CAL = default_calendar()
SHANGHAI = ZoneInfo("Asia/Shanghai")
D = date  # short dates below read like a calendar
TITLE = "入职身份核验"
DUE = D(2026, 10, 13)  # Tuesday after National Day (10-01..10-07 off, Sat 10-10 worked)


def at(day: date, hour: int = 10) -> datetime:
    """A UTC moment at ``hour`` o'clock Beijing time on ``day``."""
    return datetime.combine(day, time(hour), SHANGHAI).astimezone(UTC)


def tick(day: date, hour: int = 10, policy: ReminderPolicy | None = None) -> ReminderReport:
    report = send_reminders(db.session, calendar=CAL, now=at(day, hour), policy=policy)
    db.session.commit()
    return report


def sent() -> set[tuple[str, str]]:
    """(username, dedupe key) of every message."""
    return set(db.session.execute(
        select(User.username, Message.dedupe_key)
        .join(User, User.id == Message.recipient_user_id)).all())


def message(username: str, key: str) -> Message:
    return db.session.scalars(select(Message).join(User, User.id == Message.recipient_user_id)
                              .where(User.username == username,
                                     Message.dedupe_key == key)).one()


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def org(people) -> SimpleNamespace:
    """张总 <- 王店长 <- 李店员 (and 孙店员); HR: hr1, hr2, hr3 (disabled)."""
    hq = people.department("总部", code="HQ")
    retail = people.department("零售事业部", parent=hq, code="RT")
    store = people.department("南京门店", parent=retail, code="RT-NJ")
    boss_emp = people.employee("张总", department=hq, employee_no="E0")
    wang_emp = people.employee("王店长", department=retail, manager=boss_emp, employee_no="E1")
    li_emp = people.employee("李店员", department=store, manager=wang_emp, employee_no="E2")
    sun_emp = people.employee("孙店员", department=store, manager=wang_emp, employee_no="E4")
    org = SimpleNamespace(
        hq=hq, retail=retail, store=store,
        zhang=people.user("zhang", "manager", employee=boss_emp),
        wang=people.user("wang", "trainee", "manager", employee=wang_emp),
        li=people.user("li", "trainee", employee=li_emp),
        sun=people.user("sun", "trainee", employee=sun_emp),
        hr1=people.user("hr1", "hr", employee=people.employee("陈人事", department=hq,
                                                               employee_no="H1")),
        hr2=people.user("hr2", "hr"),
        hr3=people.user("hr3", "hr", enabled=False),
    )
    org.li.email = "li@example.com"
    db.session.commit()
    return org


def publish_course() -> CourseVersion:
    course = Course(code="RISK-ID-01", title_zh=TITLE, risk_topic="identity_verification")
    version = CourseVersion(course=course, number=1, status="draft")
    db.session.add_all([course, version])
    db.session.flush()
    db.session.add(Lesson(version=version, position=1, kind="document", title="阅读",
                          body="劳动合同应当以书面形式订立。"))
    db.session.flush()
    version.status = "published"
    version.content_hash = "01" * 32
    db.session.commit()
    return version


def add_rule(version: CourseVersion, department, days: int = 7) -> AssignmentRule:
    rule = AssignmentRule(name=f"规则-{department.code}", course_id=version.course_id,
                          due_working_days=days, effective_from=D(2026, 9, 1),
                          include_subdepartments=False)
    db.session.add(rule)
    db.session.flush()
    db.session.add(RuleDepartment(rule_id=rule.id, department_id=department.id))
    db.session.commit()
    return rule


@pytest.fixture
def assigned(org) -> SimpleNamespace:
    """王店长 (retail) and 李店员, 孙店员 (store) assigned on Mon 2026-09-28, due 10-13."""
    version = publish_course()
    for dept in (org.retail, org.store):
        evaluate_rule(db.session, add_rule(version, dept), calendar=CAL, now=at(D(2026, 9, 28)))
    db.session.commit()
    rows = {a.user_id: a for a in db.session.scalars(select(Assignment))}
    assert {a.due_date for a in rows.values()} == {DUE}
    return SimpleNamespace(version=version, wang=rows[org.wang.id], li=rows[org.li.id],
                           sun=rows[org.sun.id])


def key(assignment: Assignment, stage: str) -> str:
    return f"assignment:{assignment.id}:{stage}:{assignment.due_date.isoformat()}"


class Sink:
    """An aiosmtpd handler keeping what it received (as in tests/web/test_notify.py)."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], bytes]] = []
        self.lock = threading.Lock()
        self.delay = 0.0
        self.busy = threading.Event()  # set once an e-mail is being received

    async def handle_DATA(self, server, session, envelope):
        self.busy.set()
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)
        with self.lock:
            self.received.append((list(envelope.rcpt_tos),
                                  envelope.original_content or envelope.content))
        return "250 Message accepted for delivery"

    def messages(self) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(raw, policy=email_policy.default)
                for _, raw in self.received]


@pytest.fixture
def smtp(app) -> Iterator[Sink]:
    """A local SMTP server, and the app's e-mail settings pointing at it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=port, SMTP_TIMEOUT=5)
    try:
        yield sink
    finally:
        controller.stop()


# --- the chain -----------------------------------------------------------------------------


def test_chain_across_national_day_and_a_tiaoxiu_saturday(org, assigned):
    li, wang, sun = assigned.li, assigned.wang, assigned.sun
    assert CAL.is_workday(D(2026, 10, 10)) and D(2026, 10, 10).weekday() == 5  # 调休
    assert not CAL.is_workday(D(2026, 10, 7)) and not CAL.is_workday(D(2026, 10, 11))
    first_seen: dict[tuple[str, str], date] = {}

    def run(day: date, hour: int = 10) -> ReminderReport:
        report = tick(day, hour)
        for pair in sent() - first_seen.keys():
            first_seen[pair] = day
        return report

    for day in (D(2026, 9, 29), D(2026, 9, 30), D(2026, 10, 1), D(2026, 10, 6), D(2026, 10, 8)):
        assert run(day).sends == 0, day
    assert count(Message) == 0

    # 01:00 Beijing on Fri 10-09 is still 10-08 in UTC: the local date counts. Three
    # working days are left (Sat 10-10 调休, Mon 10-12, Tue 10-13), one bulk send.
    assert at(D(2026, 10, 9), 1).date() == D(2026, 10, 8)
    report = run(D(2026, 10, 9), 1)
    assert (report.before, report.sends) == (3, 1)
    reminder = message("li", key(li, "before"))
    assert reminder.subject == f"【培训提醒】《{TITLE}》（第 1 版）将于 2026-10-13 到期"
    assert "2026-10-13（周二）" in reminder.body and "还有 3 个工作日" in reminder.body
    assert reminder.link == f"/learning/courses/{assigned.version.id}"
    assert reminder.kind == "reminder"

    for day in (D(2026, 10, 10), D(2026, 10, 11), D(2026, 10, 12)):
        assert run(day).sends == 0, day
    report = run(DUE, 9)
    assert (report.due, report.sends) == (3, 1)
    assert "今天（2026-10-13，周二）到期" in message("li", key(li, "due")).body
    assert run(DUE, 23).sends == 0

    # Wed 10-14, the first working day after: managers (by manager_id), and digests.
    report = run(D(2026, 10, 14))
    assert (report.manager, report.hr, report.digest) == (3, 0, 4)
    escalation = message("wang", key(li, "manager"))
    assert escalation.kind == "escalation" and escalation.link == "/team/training"
    assert escalation.subject == f"【培训逾期】李店员（E2）未按期完成《{TITLE}》"
    assert "王店长，您好" in escalation.body and "已逾期 1 个工作日" in escalation.body
    assert "南京门店" in escalation.body
    assert "已逾期 1 个工作日" in message("zhang", key(wang, "manager")).body

    # HR five more working days after 10-14: 10-15, 16, 19, 20, 21 (not the weekend).
    for day in (D(2026, 10, d) for d in range(15, 21)):
        assert run(day).hr == 0, day
    report = run(D(2026, 10, 21))
    assert (report.hr, report.manager) == (6, 0)  # 3 assignments x 2 enabled HR users
    assert report.sends == 3 + 3  # an escalation send per assignment; digests: 2 teams, HR
    hr_message = message("hr1", key(sun, "hr"))
    assert "孙店员（工号 E4，南京门店）" in hr_message.body
    assert "已逾期 6 个工作日" in hr_message.body and "直属上级：王店长" in hr_message.body
    assert run(D(2026, 10, 21), 18).sends == 0

    stages = {(user, k): day for (user, k), day in first_seen.items()
              if k.startswith("assignment:")}
    expected = {}
    for who, a in (("wang", wang), ("li", li), ("sun", sun)):
        expected[(who, key(a, "before"))] = D(2026, 10, 9)
        expected[(who, key(a, "due"))] = DUE
        boss = "zhang" if who == "wang" else "wang"
        expected[(boss, key(a, "manager"))] = D(2026, 10, 14)
        for hr in ("hr1", "hr2"):
            expected[(hr, key(a, "hr"))] = D(2026, 10, 21)
    assert stages == expected
    digest_days = {day for (user, k), day in first_seen.items() if user == "hr1"
                   and k.startswith("digest:")}
    assert digest_days == {D(2026, 10, d) for d in (14, 15, 16, 19, 20, 21)}  # working days
    assert not any(user == "hr3" for user, _k in sent())  # disabled
    assert verify(db.session).ok


def test_a_missed_tick_catches_up_and_no_manager_is_reported(org, assigned):
    org.zhang.is_enabled = False  # 王店长's manager cannot be told
    db.session.commit()
    report = tick(D(2026, 10, 12))  # nothing ran on 10-09 and 10-10
    assert report.before == 3
    assert "还有 1 个工作日" in message("li", key(assigned.li, "before")).body
    report = tick(D(2026, 10, 16))  # nothing ran on the due date nor on 10-14
    assert (report.due, report.manager, report.no_manager) == (0, 2, 1)
    assert "已逾期 3 个工作日" in message("wang", key(assigned.li, "manager")).body
    assert "1 overdue without a manager login" in report.line()


def test_extension_restarts_the_schedule_for_the_new_due_date(org, assigned):
    tick(D(2026, 10, 9))
    li = assigned.li
    old_before = key(li, "before")
    li.due_date = D(2026, 10, 20)  # extended by HR before it fell due
    li.extensions = 1
    db.session.commit()
    report = tick(D(2026, 10, 14))  # not overdue; 4 working days left: not yet reminded
    assert (report.before, report.manager) == (0, 2)
    assert ("wang", key(li, "manager")) not in sent()
    report = tick(D(2026, 10, 15))
    assert report.before == 1
    assert old_before != key(li, "before")
    assert "2026-10-20（周二）" in message("li", key(li, "before")).body
    assert "还有 3 个工作日" in message("li", key(li, "before")).body


def test_same_tick_twice_sends_nothing_twice_messages_and_emails(app, org, assigned, smtp):
    org.wang.email = "wang@example.com"
    org.hr1.email = "hr1@example.com"
    db.session.commit()
    for day in (D(2026, 10, 9), D(2026, 10, 14), D(2026, 10, 21)):
        first = tick(day)
        assert first.sends > 0
        run_notify_tick(db.session, app)
        messages, deliveries, mails = count(Message), count(MessageDelivery), len(smtp.received)
        second = tick(day, 11)
        assert (second.sends, second.before, second.manager, second.hr, second.digest) == (
            0, 0, 0, 0, 0)
        line = run_notify_tick(db.session, app)
        assert line.startswith("notify: 0 e-mails sent")
        assert (count(Message), count(MessageDelivery), len(smtp.received)) == (
            messages, deliveries, mails)
    pairs = [(tuple(rcpts), mail["Subject"])
             for (rcpts, _raw), mail in zip(smtp.received, smtp.messages(), strict=True)]
    assert len(pairs) == len(set(pairs)) > 5


def test_reminder_email_goes_over_smtp_with_the_chinese_subject(app, org, assigned, smtp):
    tick(D(2026, 10, 9))
    assert run_notify_tick(db.session, app).startswith("notify: 1 e-mails sent")
    [(rcpts, _raw)] = smtp.received
    [mail] = smtp.messages()
    assert rcpts == ["li@example.com"]
    assert mail["Subject"] == f"【培训提醒】《{TITLE}》（第 1 版）将于 2026-10-13 到期"
    text = mail.get_body(preferencelist=("plain",)).get_content()
    assert "还有 3 个工作日" in text and "/n/" in text
    delivery = db.session.scalars(select(MessageDelivery).where(
        MessageDelivery.channel == "email")).one()
    assert delivery.status == "sent" and delivery.address == "li@example.com"


# --- who gets nothing ---------------------------------------------------------------------


def test_suspended_completed_and_waived_get_nothing(org, assigned):
    li_emp = org.li.employee
    li_emp.status = "absconded"  # 自离, before the engine has suspended anything
    enrolment = db.session.scalars(select(Enrollment).where(
        Enrollment.user_id == org.wang.id)).one()  # the engine enrolled him
    enrolment.completed_at = at(D(2026, 10, 8))
    assigned.sun.status = "waived"
    assigned.sun.waived_at = at(D(2026, 10, 8))
    assigned.sun.waive_reason = "已在原单位完成同等培训"
    db.session.commit()
    report = tick(D(2026, 10, 9))
    assert report.completed == 1 and report.sends == 0
    run_assignment_tick(db.session, calendar=CAL, now=at(D(2026, 10, 9)))
    db.session.commit()
    db.session.refresh(assigned.li)
    assert assigned.li.status == "suspended"
    for day in (DUE, D(2026, 10, 14), D(2026, 10, 21), D(2026, 10, 30)):
        report = tick(day)
        assert (report.sends, report.no_manager) == (0, 0), day
    assert count(Message) == 0
    assert {a.status for a in db.session.scalars(select(Assignment))} == {
        "suspended", "completed", "waived"}


# --- digests ------------------------------------------------------------------------------


def test_digest_once_per_working_day_with_indirect_reports(org, assigned):
    assigned.sun.status = "waived"
    db.session.commit()
    first = tick(D(2026, 10, 14))
    again = tick(D(2026, 10, 14), 16)
    assert first.digest == 4 and again.digest == 0 and again.sends == 0
    zhang = message("zhang", "digest:2026-10-14:team")
    assert zhang.kind == "digest" and zhang.link == "/team/training"
    assert "共有 2 项" in zhang.subject + zhang.body
    assert "王店长（工号 E1，零售事业部，直属）" in zhang.body
    assert "李店员（工号 E2，南京门店，间接下属）" in zhang.body
    wang = message("wang", "digest:2026-10-14:team")
    assert "李店员（工号 E2，南京门店，直属）" in wang.body and "王店长（" not in wang.body
    assert "孙店员" not in wang.body  # waived
    hr = message("hr1", "digest:2026-10-14:hr")
    assert hr.body == message("hr2", "digest:2026-10-14:hr").body
    assert f"《{TITLE}》（第 1 版）：2 项" in hr.body
    assert "零售事业部：1 项" in hr.body and "南京门店：1 项" in hr.body
    assert not any(user in {"li", "sun", "hr3"} for user, k in sent() if k.startswith("digest"))

    assert tick(D(2026, 10, 17)).digest == 0  # Saturday, not a 调休 working day
    assert tick(D(2026, 10, 18)).digest == 0
    assert tick(D(2026, 10, 19)).digest == 4
    assert "逾期 4 个工作日" in message("wang", "digest:2026-10-19:team").body
    assert tick(D(2026, 10, 20), policy=ReminderPolicy(digest=False)).digest == 0


def test_policy_from_config_and_limits(app):
    assert ReminderPolicy.from_config(app.config) == ReminderPolicy(3, 5, True)
    app.config.update(REMINDER_DAYS_BEFORE=0, ESCALATE_HR_AFTER_WORKDAYS=2,
                      DIGEST_ENABLED=False)
    assert ReminderPolicy.from_config(app.config) == ReminderPolicy(0, 2, False)
    with pytest.raises(ValueError):
        ReminderPolicy(days_before=-1)


# --- the tick command ---------------------------------------------------------------------


@pytest.fixture
def tick_now(monkeypatch):
    """``lms tick`` reads the time from lms.dbtypes.utcnow when it runs."""
    clock = SimpleNamespace(now=at(D(2026, 10, 9)))
    monkeypatch.setattr("lms.dbtypes.utcnow", lambda: clock.now)
    return clock


def test_tick_command_assigns_reminds_and_emails_once(app, org, smtp, tick_now):
    add_rule(publish_course(), org.store, days=3)  # due 10-13 from Fri 10-09
    runner = app.test_cli_runner()
    result = runner.invoke(args=["lms", "tick"])
    assert result.exit_code == 0, result.output
    assert "assignments: 2 assigned" in result.output
    assert "reminders: 2 before the due date" in result.output
    assert "notify: 1 e-mails sent" in result.output  # li has an address, sun has none
    assert {a.due_date for a in db.session.scalars(select(Assignment))} == {DUE}

    again = runner.invoke(args=["lms", "tick"])
    assert again.exit_code == 0, again.output
    assert "assignments: 0 assigned" in again.output
    assert "reminders: 0 before the due date" in again.output and "(0 sends)" in again.output
    assert "notify: 0 e-mails sent" in again.output
    assert count(Message) == 2 and len(smtp.received) == 1


def test_two_ticks_at_once_the_second_does_nothing(app, org, smtp, tick_now):
    org.sun.email = "sun@example.com"
    db.session.commit()
    add_rule(publish_course(), org.store, days=3)
    smtp.delay = 1.0  # the first tick is busy sending for a while
    outputs: dict[str, str] = {}

    def first() -> None:
        outputs["first"] = app.test_cli_runner().invoke(args=["lms", "tick"]).output

    thread = threading.Thread(target=first)
    thread.start()
    try:
        # The first tick is inside its e-mail step (it holds the lock for its whole run
        # and prints nothing more until the slow server is done: the runners' captured
        # outputs cannot mix).
        assert smtp.busy.wait(timeout=30)
        db.session.rollback()
        held = db.session.scalar(select(SchedulerLock.holder).where(
            SchedulerLock.name == "tick", SchedulerLock.expires_at > datetime.now(UTC)))
        assert held
        second = app.test_cli_runner().invoke(args=["lms", "tick"])
    finally:
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert second.exit_code == 0
    assert "another tick is running" in second.output
    assert "reminders" not in second.output
    assert "reminders: 2 before the due date" in outputs["first"]
    assert "notify: 2 e-mails sent" in outputs["first"]
    db.session.expire_all()
    assert count(Message) == 2 and len(smtp.received) == 2
    smtp.delay = 0
    third = app.test_cli_runner().invoke(args=["lms", "tick"])
    assert "(0 sends)" in third.output and "notify: 0 e-mails sent" in third.output
    assert len(smtp.received) == 2


def test_tick_keeps_going_when_a_year_is_missing_from_the_calendar(app, org, tick_now):
    """Assignments due in a year without a holiday schedule: the tick says so, exits 1,
    and still does the rest (the e-mail step runs)."""
    add_rule(publish_course(), org.store, days=3)
    tick_now.now = at(D(2026, 12, 30))  # 3 working days later is in 2027 (unknown)
    result = app.test_cli_runner().invoke(args=["lms", "tick"])
    assert result.exit_code == 1
    assert "2027" in result.output and "notify:" in result.output
    assert count(Assignment) == 0


def test_bulk_send_with_a_key_per_recipient(org):
    """The notify service's per-recipient keys: one statement set for many people, each
    (recipient, key) inserted once, even when the caller does not filter first."""
    from lms.notify.service import NotifyError, send

    ids = [org.li.id, org.sun.id]
    keys = {org.li.id: "assignment:1:before:2026-10-13",
            org.sun.id: "assignment:2:before:2026-10-13"}
    args = dict(kind="reminder", subject="【培训提醒】测试", body="正文")
    assert send(db.session, recipient_ids=ids, dedupe_keys=keys, **args) == 2
    assert send(db.session, recipient_ids=ids, dedupe_keys=keys, **args) == 0
    keys[org.sun.id] = "assignment:2:before:2026-10-20"
    assert send(db.session, recipient_ids=ids, dedupe_keys=keys, **args) == 1
    db.session.commit()
    assert sent() == {("li", "assignment:1:before:2026-10-13"),
                      ("sun", "assignment:2:before:2026-10-13"),
                      ("sun", "assignment:2:before:2026-10-20")}
    for bad in ({org.li.id: "k"}, {org.li.id: "k", org.sun.id: ""},
                {org.li.id: "k", org.sun.id: "x" * 201}):
        with pytest.raises(NotifyError):
            send(db.session, recipient_ids=ids, dedupe_keys=bad, **args)
    with pytest.raises(NotifyError):
        send(db.session, recipient_ids=[org.li.id], dedupe_key="k",
             dedupe_keys={org.li.id: "k"}, **args)
    assert verify(db.session).ok
