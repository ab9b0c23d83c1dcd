"""Messages: bulk sending, idempotence, e-mail over real SMTP (aiosmtpd), retries, leases
against double sending, read receipts (inbox and signed e-mail link), the inbox pages,
the unread badge, ledger evidence and the tick's scheduler lock."""

from __future__ import annotations

import asyncio
import email
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import date, timedelta
from email import policy

import pytest
from aiosmtpd.controller import Controller
from flask import template_rendered
from sqlalchemy import event, func, insert, select
from support import ON_POSTGRES

from lms.dbtypes import utcnow
from lms.extensions import db
from lms.ledger import LedgerEntry, verify
from lms.notify.mailer import SmtpMailer, SmtpSettings
from lms.notify.models import Message, MessageDelivery
from lms.notify.service import (
    BACKOFF,
    NotifyError,
    content_sha256,
    deliver_pending,
    mark_read,
    messages_digest,
    send,
    tracking_token,
    unread_count,
)
from lms.notify.tick import run_notify_tick
from lms.people.models import Employee, User
from lms.scheduler_lock import acquire, release

SUBJECT = "【提醒】请于 10 月 9 日前完成《绩效管理制度》培训"
BODY = "王芳，您好：\n您的必修课程《绩效管理制度》将于 2026-10-09 到期，请尽快完成。"


# --- fixtures ----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    """An aiosmtpd handler keeping what it received; refuses addresses on ``refuse``."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.lock = threading.Lock()
        self.delay = 0.0
        self.refuse: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos),
                                  envelope.original_content or envelope.content))
        return "250 Message accepted for delivery"

    def messages(self) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(raw, policy=policy.default)
                for _, _, raw in self.received]


@pytest.fixture
def smtp() -> Iterator[tuple[Sink, int]]:
    sink, port = Sink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


def mailer_for(port: int) -> SmtpMailer:
    return SmtpMailer(SmtpSettings(host="127.0.0.1", port=port, timeout=5,
                                   mail_from="合规学堂 <no-reply@example.com>"))


@pytest.fixture
def mailer(smtp) -> SmtpMailer:
    return mailer_for(smtp[1])


def make_users(people, n: int, prefix: str = "u") -> list[int]:
    """``n`` logins in bulk. Addresses by i % 4: 0 login and employee e-mail (the login's
    wins), 1 employee e-mail only, 2 blank login e-mail and none on the employee,
    3 no employee and no e-mail."""
    dept = people.department("门店")
    now = utcnow()
    db.session.execute(insert(Employee), [
        {"employee_no": f"{prefix}{i:06d}", "name": f"员工{i}", "department_id": dept.id,
         "hire_date": date(2024, 1, 1), "status": "active",
         "email": f"emp{i}@hr.example.com" if i % 4 in (0, 1) else None,
         "created_at": now, "updated_at": now}
        for i in range(n) if i % 4 != 3])
    employee_ids = dict(db.session.execute(
        select(Employee.employee_no, Employee.id).where(Employee.employee_no.like(f"{prefix}%"))
    ).all())
    db.session.execute(insert(User), [
        {"username": f"{prefix}{i:06d}", "display_name": f"员工{i}", "password_hash": "x",
         "email": f"{prefix}{i}@example.com" if i % 4 == 0 else ("" if i % 4 == 2 else None),
         "employee_id": employee_ids.get(f"{prefix}{i:06d}"), "is_enabled": True,
         "created_at": now, "password_changed_at": now}
        for i in range(n)])
    db.session.commit()
    return list(db.session.scalars(
        select(User.id).where(User.username.like(f"{prefix}%")).order_by(User.username)))


@pytest.fixture
def wangfang(people) -> User:
    emp = people.employee("王芳", employee_no="E0001")
    user = people.user("wangfang", "trainee", employee=emp)
    user.email = "wangfang@example.com"
    db.session.commit()
    return user


def count_statements(predicate: Callable[[str], bool]):
    """A context manager-ish counter of SQL statements matching ``predicate``."""
    counter = {"n": 0}

    def before(conn, cursor, statement, parameters, context, executemany):
        if predicate(statement):
            counter["n"] += 1

    event.listen(db.engine, "before_cursor_execute", before)
    counter["stop"] = lambda: event.remove(db.engine, "before_cursor_execute", before)
    return counter


def ledger_entries(kind: str) -> list[LedgerEntry]:
    return list(db.session.scalars(select(LedgerEntry).where(LedgerEntry.kind == kind)
                                   .order_by(LedgerEntry.seq)))


def deliveries(channel: str = "email") -> list[MessageDelivery]:
    return list(db.session.scalars(select(MessageDelivery).where(
        MessageDelivery.channel == channel).order_by(MessageDelivery.id)))


def send_one(user: User, **kw) -> Message:
    kw.setdefault("kind", "reminder")
    kw.setdefault("subject", SUBJECT)
    kw.setdefault("body", BODY)
    assert send(db.session, recipient_ids=[user.id], **kw) == 1
    db.session.commit()
    return db.session.scalars(select(Message).where(Message.recipient_user_id == user.id)
                              .order_by(Message.id.desc())).first()


# --- sending -----------------------------------------------------------------------------

def test_bulk_send_uses_a_constant_number_of_inserts(people):
    ids = make_users(people, 2000)
    inserts = count_statements(lambda sql: sql.lstrip().upper().startswith("INSERT"))
    try:
        assert send(db.session, recipient_ids=ids, kind="reminder", subject=SUBJECT,
                    body=BODY, link="/learning", dedupe_key="rule:1:due-3") == 2000
        db.session.commit()
        many = inserts["n"]
        inserts["n"] = 0
        assert send(db.session, recipient_ids=ids[:20], kind="notice", subject="通知",
                    body="正文") == 20
        db.session.commit()
        few = inserts["n"]
    finally:
        inserts["stop"]()
    assert many == few <= 4  # messages, inbox deliveries, e-mail deliveries, ledger entry

    assert db.session.scalar(select(func.count()).select_from(Message)) == 2020
    assert len(deliveries("inbox")) == 2020
    assert all(d.status == "sent" and d.sent_at is not None for d in deliveries("inbox"))
    emails = {d.message_id: d.address for d in deliveries("email")}
    assert len(emails) == 1000 + 10  # i % 4 in (0, 1) have an address
    first = db.session.scalars(select(Message).where(Message.recipient_user_id == ids[0],
                                                     Message.kind == "reminder")).one()
    second = db.session.scalars(select(Message).where(Message.recipient_user_id == ids[1],
                                                      Message.kind == "reminder")).one()
    assert emails[first.id] == "u0@example.com"  # the login's address wins
    assert emails[second.id] == "emp1@hr.example.com"
    assert first.content_sha256 == content_sha256(ids[0], "reminder", SUBJECT, BODY,
                                                  "/learning")

    entry, small = ledger_entries("notify.sent")
    payload = json.loads(entry.payload)
    assert payload["count"] == 2000 and payload["kinds"] == ["reminder"]
    assert payload["email_queued"] == 1000
    rows = db.session.execute(select(Message.id, Message.content_sha256)
                              .where(Message.batch == payload["batch"])).all()
    assert len(rows) == 2000 and payload["messages_sha256"] == messages_digest(rows)
    assert json.loads(small.payload)["count"] == 20
    assert verify(db.session).ok


def test_sending_again_with_the_same_dedupe_key_inserts_nothing(people, wangfang):
    other = people.user("lisi", "trainee")
    args = dict(kind="reminder", subject=SUBJECT, body=BODY, dedupe_key="assignment:7:due")
    assert send(db.session, recipient_ids=[wangfang.id, wangfang.id], **args) == 1
    db.session.commit()
    assert send(db.session, recipient_ids=[wangfang.id], **args) == 0
    assert send(db.session, recipient_ids=[wangfang.id, other.id], **args) == 1
    db.session.commit()
    assert send(db.session, recipient_ids=[wangfang.id],
                **{**args, "dedupe_key": "assignment:7:overdue"}) == 1
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(Message)) == 3
    assert len(deliveries("inbox")) == 3
    assert len(ledger_entries("notify.sent")) == 3  # nothing new, no entry


@pytest.mark.parametrize("bad, field", [
    ({"kind": "spam"}, "kind"),
    ({"link": "https://evil.example.com/"}, "link"),
    ({"link": "//evil.example.com/x"}, "link"),
    ({"subject": "两行\n标题"}, "subject"),
    ({"body": ""}, "body"),
    ({"recipient_ids": [999999]}, "recipient_ids"),
])
def test_bad_messages_are_refused_before_anything_is_written(wangfang, bad, field):
    args = {"recipient_ids": [wangfang.id], "kind": "notice", "subject": "通知",
            "body": "正文", **bad}
    with pytest.raises(NotifyError) as caught:
        send(db.session, **args)
    assert field in caught.value.errors
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Message)) == 0


# --- e-mail ------------------------------------------------------------------------------

def test_email_goes_out_over_smtp_with_chinese_subject_and_tracking_link(
        app, client, smtp, mailer, wangfang):
    sink, _ = smtp
    message = send_one(wangfang, link="/learning")
    report = deliver_pending(db.session, mailer, now=utcnow())
    db.session.commit()
    assert (report.claimed, report.sent, report.retrying, report.failed) == (1, 1, 0, 0)

    [(mail_from, rcpts, _)] = sink.received
    assert mail_from == "no-reply@example.com" and rcpts == ["wangfang@example.com"]
    [received] = sink.messages()
    assert received["Subject"] == SUBJECT
    assert received["From"].addresses[0].display_name == "合规学堂"
    raw_headers = sink.received[0][2].split(b"\r\n\r\n", 1)[0]
    assert raw_headers.isascii()  # RFC 2047 encoded, safe for any relay
    plain = received.get_body(("plain",)).get_content()
    html = received.get_body(("html",)).get_content()
    link = re.search(r"(http://127\.0\.0\.1:5000/n/\S+)", plain).group(1)
    assert "《绩效管理制度》将于 2026-10-09 到期" in plain
    assert f'href="{link}"' in html and "<img" not in html

    [delivery] = deliveries()
    assert delivery.status == "sent" and delivery.attempts == 1 and delivery.sent_at
    assert delivery.smtp_message_id == received["Message-ID"]
    assert delivery.claimed_until is None

    # The link in the e-mail is the read receipt: recorded once, with the IP.
    token = link.rsplit("/", 1)[1]
    response = client.get(f"/n/{token}", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/login?next=/inbox/{message.id}")
    db.session.refresh(message)
    first_read = message.read_at
    assert (message.read_via, message.read_ip) == ("email_link", "10.1.2.3")
    assert client.get(f"/n/{token}", environ_base={"REMOTE_ADDR": "10.9.9.9"}
                      ).status_code == 302
    db.session.refresh(message)
    assert (message.read_at, message.read_ip) == (first_read, "10.1.2.3")
    [read] = ledger_entries("notify.read")
    payload = json.loads(read.payload)
    assert payload["message_id"] == message.id and payload["via"] == "email_link"
    assert payload["content_sha256"] == message.content_sha256
    sent_entries = [json.loads(e.payload) for e in ledger_entries("notify.sent")]
    assert [p["channel"] for p in sent_entries] == ["inbox", "email"]
    assert sent_entries[1]["message_ids"] == [message.id]
    assert sent_entries[1]["messages_sha256"] == messages_digest(
        [(message.id, message.content_sha256)])
    assert verify(db.session).ok

    # Logged in as the recipient, the link goes straight to the message.
    client.login("wangfang")
    response = client.get(f"/n/{token}")
    assert response.headers["Location"].endswith(f"/inbox/{message.id}")


def test_smtp_down_retries_with_back_off_then_succeeds(smtp, wangfang):
    sink, port = smtp
    send_one(wangfang)
    down = mailer_for(free_port())  # nothing listens there: connection refused
    t0 = utcnow()
    report = deliver_pending(db.session, down, now=t0)
    db.session.commit()
    assert (report.sent, report.retrying) == (0, 1)
    [delivery] = deliveries()
    assert delivery.status == "pending" and delivery.attempts == 1
    assert "refused" in delivery.last_error.lower()
    assert delivery.next_attempt_at == t0 + BACKOFF[0]
    assert deliver_pending(db.session, down, now=t0 + timedelta(seconds=30)).claimed == 0
    db.session.commit()

    report = deliver_pending(db.session, mailer_for(port), now=t0 + timedelta(seconds=61))
    db.session.commit()
    assert report.sent == 1 and len(sink.received) == 1
    db.session.refresh(delivery)
    assert delivery.status == "sent" and delivery.attempts == 2


def test_after_five_failures_the_delivery_fails_for_good(wangfang):
    send_one(wangfang)
    down = mailer_for(free_port())
    at = utcnow()
    for wait_after in (*BACKOFF, None):
        assert deliver_pending(db.session, down, now=at).claimed == 1
        db.session.commit()
        [delivery] = deliveries()
        if wait_after is None:
            break
        assert delivery.status == "pending" and delivery.next_attempt_at == at + wait_after
        at = at + wait_after
    assert delivery.status == "failed" and delivery.attempts == 5
    assert deliver_pending(db.session, down, now=at + timedelta(days=1)).claimed == 0
    db.session.commit()
    # The inbox copy is unaffected.
    assert unread_count(db.session, wangfang.id) == 1


def test_a_refused_recipient_fails_alone_without_retry(people, smtp, mailer, wangfang):
    sink, _ = smtp
    other = people.user("lisi", "trainee")
    other.email = "nobody@example.com"
    db.session.commit()
    sink.refuse.add("nobody@example.com")
    send(db.session, recipient_ids=[other.id, wangfang.id], kind="notice", subject="通知",
         body="正文")
    db.session.commit()
    report = deliver_pending(db.session, mailer, now=utcnow())
    db.session.commit()
    assert (report.sent, report.failed, report.retrying) == (1, 1, 0)
    status = {d.address: d.status for d in deliveries()}
    assert status == {"nobody@example.com": "failed", "wangfang@example.com": "sent"}


def test_running_twice_or_concurrently_never_sends_an_email_twice(app, people, smtp, mailer):
    sink, _ = smtp
    sink.delay = 0.01  # slow server: the two ticks' batches overlap
    ids = make_users(people, 120)  # 60 have an address
    send(db.session, recipient_ids=ids, kind="reminder", subject=SUBJECT, body=BODY)
    db.session.commit()
    now = utcnow()
    barrier = threading.Barrier(2)

    def tick() -> int:
        with app.app_context():
            try:
                barrier.wait(timeout=30)
                sent = 0
                while True:
                    report = deliver_pending(db.session, mailer, now=now, limit=7)
                    db.session.commit()
                    if not report.claimed:
                        return sent
                    sent += report.sent
            except BaseException:
                barrier.abort()
                db.session.rollback()
                raise
            finally:
                db.session.remove()

    pool = ThreadPoolExecutor(max_workers=2)
    futures = [pool.submit(tick) for _ in range(2)]
    _, hung = wait(futures, timeout=120)
    pool.shutdown(wait=not hung, cancel_futures=True)
    assert not hung
    counts = [f.result() for f in futures]
    db.session.expire_all()

    assert sum(counts) == 60
    recipients = [r for _, rcpts, _ in sink.received for r in rcpts]
    assert len(recipients) == 60 and len(set(recipients)) == 60
    assert all(d.status == "sent" for d in deliveries())
    # Run again: nothing is due, nothing is sent.
    assert deliver_pending(db.session, mailer, now=now + timedelta(hours=3)).claimed == 0
    db.session.commit()
    assert len(sink.received) == 60
    assert verify(db.session).ok


def test_tick_sends_due_email_and_waits_when_email_is_disabled(app, smtp, wangfang):
    sink, port = smtp
    send_one(wangfang)
    line = run_notify_tick(db.session, app)  # the test app has no SMTP_HOST
    assert "disabled" in line and "1" in line
    assert deliveries()[0].status == "pending"

    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=port)
    line = run_notify_tick(db.session, app)
    assert line.startswith("notify: 1 e-mails sent")
    assert len(sink.received) == 1
    assert run_notify_tick(db.session, app).startswith("notify: 0 e-mails sent")
    assert len(sink.received) == 1


# --- reading: pages, tokens, badge -----------------------------------------------------

def test_opening_a_message_in_the_inbox_marks_it_read_once(client, wangfang):
    message = send_one(wangfang, link="/learning")
    client.login("wangfang")
    page = client.get("/inbox").get_data(as_text=True)
    assert SUBJECT in page
    assert f'data-message-id="{message.id}" data-unread="1"' in page
    assert 'data-unread="1" data-total="1"' in page

    page = client.get(f"/inbox/{message.id}").get_data(as_text=True)
    assert "将于 2026-10-09 到期" in page and 'href="/learning"' in page
    db.session.refresh(message)
    assert message.read_via == "inbox" and message.read_ip == "127.0.0.1"
    first = message.read_at
    assert 'data-read-via="inbox"' in page
    client.get(f"/inbox/{message.id}")
    db.session.refresh(message)
    assert message.read_at == first
    assert len(ledger_entries("notify.read")) == 1
    assert f'data-message-id="{message.id}" data-unread="0"' in client.get("/inbox").get_data(
        as_text=True)


def test_someone_elses_message_and_forged_tokens_answer_404(app, client, people, wangfang):
    message = send_one(wangfang)
    people.user("lisi", "trainee")
    client.login("lisi")
    assert client.get(f"/inbox/{message.id}").status_code == 404
    assert client.get("/inbox/999999").status_code == 404

    secret = app.config["SECRET_KEY"]
    good = tracking_token(message.id, wangfang.id, secret)
    forged = [
        "abc",
        good[:-2] + ("AA" if not good.endswith("AA") else "BB"),  # signature changed
        tracking_token(message.id, wangfang.id, "another-secret-key-" + "y" * 20),
        tracking_token(message.id, wangfang.id + 1, secret),  # not this message's recipient
        tracking_token(999999, wangfang.id, secret),
    ]
    for token in forged:
        response = client.get(f"/n/{token}")
        assert response.status_code == 404, token
        assert "BadSignature" not in response.get_data(as_text=True)
    db.session.refresh(message)
    assert message.read_at is None
    assert ledger_entries("notify.read") == []


def test_inbox_pages_newest_first(client, wangfang):
    for i in range(25):
        send(db.session, recipient_ids=[wangfang.id], kind="notice", subject=f"通知{i:02d}",
             body="正文")
    db.session.commit()
    client.login("wangfang")
    first = client.get("/inbox").get_data(as_text=True)
    second = client.get("/inbox?page=2").get_data(as_text=True)
    assert first.count("data-message-id=") == 20 and second.count("data-message-id=") == 5
    assert first.index("通知24") < first.index("通知23")
    assert "通知00" in second and "通知00" not in first


def test_unread_badge_is_one_count_query_per_page(app, client, wangfang):
    send_one(wangfang)
    second = send_one(wangfang, subject="第二条")
    client.login("wangfang")
    seen: list[int] = []

    def capture(sender, template, context, **extra):
        seen.append(context.get("unread_messages"))

    counter = count_statements(lambda sql: "FROM messages" in sql and "count(" in sql.lower())
    template_rendered.connect(capture, app)
    try:
        client.get("/")
        assert seen[-1] == 2 and counter["n"] == 1
        client.get(f"/inbox/{second.id}")
        client.get("/")
        assert seen[-1] == 1
    finally:
        template_rendered.disconnect(capture, app)
        counter["stop"]()
    client.logout()
    seen.clear()
    template_rendered.connect(capture, app)
    try:
        client.get("/login")
    finally:
        template_rendered.disconnect(capture, app)
    assert seen == [0]


def test_mark_read_is_first_read_wins(wangfang):
    message = send_one(wangfang)
    t0 = utcnow()
    assert mark_read(db.session, message.id, via="email_link", ip="1.2.3.4", now=t0)
    assert not mark_read(db.session, message.id, via="inbox", ip="5.6.7.8",
                         now=t0 + timedelta(hours=1))
    db.session.commit()
    db.session.refresh(message)
    assert (message.read_at, message.read_via, message.read_ip) == (t0, "email_link",
                                                                    "1.2.3.4")


# --- the tick's lock -----------------------------------------------------------------------

def test_scheduler_lock_is_held_until_released_or_expired(app):
    t0 = utcnow()
    ttl = timedelta(minutes=5)
    assert acquire(db.session, "tick", "a", ttl, now=t0)
    assert not acquire(db.session, "tick", "b", ttl, now=t0 + timedelta(minutes=1))
    assert acquire(db.session, "tick", "a", ttl, now=t0 + timedelta(minutes=2))  # extend
    assert not acquire(db.session, "tick", "b", ttl, now=t0 + timedelta(minutes=6))
    assert acquire(db.session, "tick", "b", ttl, now=t0 + timedelta(minutes=7, seconds=1))
    assert not release(db.session, "tick", "a", now=t0 + timedelta(minutes=8))
    assert release(db.session, "tick", "b", now=t0 + timedelta(minutes=8))
    assert acquire(db.session, "tick", "a", ttl, now=t0 + timedelta(minutes=8, seconds=1))
    assert acquire(db.session, "other", "b", ttl, now=t0)  # locks are per name


@pytest.mark.parametrize("round_", range(5))
def test_two_ticks_at_once_get_the_lock_once(app, round_):
    barrier = threading.Barrier(2)
    now = utcnow()

    def contender(holder: str) -> bool:
        with app.app_context():
            try:
                barrier.wait(timeout=30)
                return acquire(db.session, f"tick-{round_}", holder, timedelta(minutes=1),
                               now=now)
            finally:
                db.session.remove()

    db.session.commit()
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(contender, ["host-a", "host-b"]))
    assert sorted(results) == [False, True]


def test_postgres_partial_index_serves_the_unread_count(app):
    """The unread badge's index exists as a partial index on both databases."""
    if ON_POSTGRES:
        sql = "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_messages_unread'"
    else:
        sql = "SELECT sql FROM sqlite_master WHERE name = 'ix_messages_unread'"
    definition = db.session.execute(db.text(sql)).scalar()
    assert definition and "read_at IS NULL" in definition
