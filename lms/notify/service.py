"""Sending messages, delivering e-mail, read receipts, the inbox (nothing commits here,
see ``deliver_pending`` for the one short transaction of its own).

Sending is set-based so a rule that fans out to 50,000 people costs a constant number of
statements: the recipients travel as ONE JSON parameter, expanded in SQL
(``json_each`` on SQLite, ``jsonb_to_recordset`` on PostgreSQL), and
``INSERT ... SELECT ... ON CONFLICT (recipient_user_id, dedupe_key) DO NOTHING`` makes a
repeated scheduled send insert nothing. Deliveries are then inserted with
``INSERT ... SELECT`` over the new batch. Evidence: one ledger entry per call that wrote
("notify.sent", with a digest of the messages), and one per read ("notify.read").
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from itsdangerous import BadData, URLSafeTimedSerializer
from markupsafe import Markup, escape
from sqlalchemy import (
    Integer,
    Select,
    String,
    Subquery,
    bindparam,
    func,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from lms import ledger
from lms.dbtypes import UTCDateTime, utcnow
from lms.field_errors import ErrorCollector, FieldErrors
from lms.ledger_core import canonical_json
from lms.notify.mailer import Mailer, OutgoingEmail, SendOutcome
from lms.notify.models import MESSAGE_KINDS, READ_VIA, Message, MessageDelivery
from lms.paging import Page
from lms.people.models import Employee, User
from lms.queue_claim import claim_due

__all__ = [
    "BACKOFF",
    "DeliveryReport",
    "InboxPage",
    "NotifyError",
    "content_sha256",
    "deliver_pending",
    "inbox_page",
    "mark_read",
    "message_for",
    "messages_digest",
    "pending_email_count",
    "read_tracking_token",
    "send",
    "tracking_token",
    "unread_count",
]

# Waits after the 1st, 2nd, 3rd and 4th failed attempt; the 5th failure is final.
BACKOFF = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30),
           timedelta(hours=2))
# How long a tick owns the e-mails it claimed; longer than a batch can take.
CLAIM_LEASE = timedelta(minutes=15)
TOKEN_SALT = "notify-read"  # noqa: S105 (a salt that separates token uses, not a secret)
PER_PAGE = 20
MAX_SUBJECT = 200
MAX_BODY = 20_000
MAX_LINK = 500
MAX_DEDUPE_KEY = 200

_NAME = re.compile(r"[a-z_]{1,30}")
_SQL_TYPES = {"integer": Integer, "text": String}

_messages = Message.__table__
_deliveries = MessageDelivery.__table__


class NotifyError(FieldErrors):
    """A message refused before anything was written."""


# --- pure helpers -------------------------------------------------------------------------

def content_sha256(recipient_user_id: int, kind: str, subject: str, body: str,
                   link: str | None) -> str:
    """SHA-256 of the canonical JSON of what the recipient was told."""
    return hashlib.sha256(canonical_json({
        "recipient_user_id": recipient_user_id, "kind": kind, "subject": subject,
        "body": body, "link": link,
    }).encode("utf-8")).hexdigest()


def messages_digest(pairs: Iterable[tuple[int, str]]) -> str:
    """SHA-256 over the sorted (message id, content_sha256) pairs, as canonical JSON."""
    return hashlib.sha256(
        canonical_json(sorted([int(i), h] for i, h in pairs)).encode("utf-8")
    ).hexdigest()


def tracking_token(message_id: int, recipient_user_id: int, secret_key: str) -> str:
    """The signed part of an e-mail's ``/n/<token>`` link (no expiry: it is a receipt)."""
    return URLSafeTimedSerializer(secret_key, salt=TOKEN_SALT).dumps(
        {"m": message_id, "u": recipient_user_id})


def read_tracking_token(token: str, secret_key: str) -> tuple[int, int] | None:
    """(message id, recipient id) from a genuine token; None for anything forged."""
    try:
        data = URLSafeTimedSerializer(secret_key, salt=TOKEN_SALT).loads(token)
    except BadData:
        return None
    if not isinstance(data, dict):
        return None
    message_id, user_id = data.get("m"), data.get("u")
    if type(message_id) is not int or type(user_id) is not int:
        return None
    return message_id, user_id


def _relative_link(link: str) -> bool:
    parts = urlsplit(link)
    return (link.startswith("/") and not link.startswith("//") and "\\" not in link
            and not parts.scheme and not parts.netloc)


def _validate(kind: str, subject: str, body: str, link: str | None,
              dedupe_key: str | None) -> None:
    errors = ErrorCollector(NotifyError)
    if kind not in MESSAGE_KINDS:
        errors.add("kind", _l("Unknown message kind."))
    if not subject or len(subject) > MAX_SUBJECT or "\r" in subject or "\n" in subject:
        errors.add("subject", _l("A subject is one line of 1 to %(n)d characters.",
                                 n=MAX_SUBJECT))
    if not body or len(body) > MAX_BODY:
        errors.add("body", _l("A message body has 1 to %(n)d characters.", n=MAX_BODY))
    if link is not None and (len(link) > MAX_LINK or not _relative_link(link)):
        errors.add("link", _l("The link must be a path in this site, starting with /."))
    if dedupe_key is not None and not 0 < len(dedupe_key) <= MAX_DEDUPE_KEY:
        errors.add("dedupe_key", _l("The de-duplication key is too long or empty."))
    errors.raise_if_any()


# --- set-based SQL ---------------------------------------------------------------------

def _json_rows(session: Session, name: str, rows: list[dict[str, Any]],
               columns: dict[str, str]) -> Subquery:
    """A derived table of ``rows`` sent as one JSON parameter (``columns``: name -> SQL
    type, "integer" or "text"). One bound value whatever the number of rows, so neither
    SQLite's nor PostgreSQL's limit on bound parameters applies."""
    # Names and types come from this module only; checked anyway since they become SQL.
    if not all(_NAME.fullmatch(c) and t in _SQL_TYPES for c, t in columns.items()):
        raise ValueError(f"bad column spec {columns!r}")
    payload = json.dumps(rows, separators=(",", ":"), ensure_ascii=False)
    typed = {c: _SQL_TYPES[t] for c, t in columns.items()}
    if session.get_bind().dialect.name == "postgresql":
        spec = ", ".join(f"{c} {t}" for c, t in columns.items())
        sql = (f"SELECT {', '.join(columns)} FROM "  # noqa: S608
               f"jsonb_to_recordset(CAST(:rows AS jsonb)) AS x({spec})")
    else:
        picks = ", ".join(f"json_extract(value, '$.{c}') AS {c}" for c in columns)
        sql = f"SELECT {picks} FROM json_each(:rows)"  # noqa: S608
    return text(sql).bindparams(rows=payload).columns(**typed).subquery(name)


def _insert(session: Session):
    return (postgresql.insert if session.get_bind().dialect.name == "postgresql"
            else sqlite.insert)


def _unknown_users(session: Session, ids: list[int]) -> list[int]:
    src = _json_rows(session, "wanted", [{"u": i} for i in ids], {"u": "integer"})
    known = select(User.id).where(User.id == src.c.u).exists()
    return list(session.scalars(select(src.c.u).where(~known).order_by(src.c.u).limit(10)))


def send(
    session: Session,
    *,
    recipient_ids: Iterable[int],
    kind: str,
    subject: str,
    body: str,
    link: str | None = None,
    dedupe_key: str | None = None,
    dedupe_keys: Mapping[int, str] | None = None,
    email: bool = True,
    actor_id: int | None = None,
) -> int:
    """Send one message to each recipient (in bulk); return how many were new.

    With a ``dedupe_key``, a recipient who already has a message with that key gets
    nothing (also when a concurrent call inserted it a moment ago). ``dedupe_keys``
    instead gives each recipient a key of their own (recipient id -> key; every
    recipient needs one), so that one call can carry the same text to people whose
    obligations differ (e.g. one reminder per assignment). Each new message is
    in the inbox at once; with ``email``, an e-mail delivery waits for the tick for each
    recipient whose login or employee record has an address. The caller commits.
    """
    subject = (subject or "").strip()
    link = link or None
    _validate(kind, subject, body, link, dedupe_key)
    ids = list(dict.fromkeys(recipient_ids))
    if any(type(i) is not int for i in ids):
        raise NotifyError.one(_l("Recipients are user ids."), "recipient_ids")
    if dedupe_keys is not None and (
            dedupe_key is not None
            or any(not isinstance(dedupe_keys.get(i), str)
                   or not 0 < len(dedupe_keys[i]) <= MAX_DEDUPE_KEY for i in ids)):
        raise NotifyError.one(_l("The de-duplication key is too long or empty."),
                              "dedupe_key")
    if not ids:
        return 0
    unknown = _unknown_users(session, ids)
    if unknown:
        raise NotifyError.one(_l("Unknown users: %(ids)s", ids=", ".join(map(str, unknown))),
                              "recipient_ids")

    now = utcnow()
    batch = uuid.uuid4().hex
    src = _json_rows(session, "r", [
        {"u": uid, "h": content_sha256(uid, kind, subject, body, link),
         "k": dedupe_keys[uid] if dedupe_keys is not None else dedupe_key} for uid in ids
    ], {"u": "integer", "h": "text", "k": "text"})
    rows = select(
        src.c.u, literal(kind, String), literal(subject, String), literal(body, String),
        literal(link, String), src.c.k, src.c.h,
        literal(now, UTCDateTime()), literal(batch, String),
    ).where(src.c.u.is_not(None))  # SQLite needs a WHERE before an upsert's ON CONFLICT
    m = _messages
    stmt = (_insert(session)(m).from_select(
        [m.c.recipient_user_id, m.c.kind, m.c.subject, m.c.body, m.c.link, m.c.dedupe_key,
         m.c.content_sha256, m.c.created_at, m.c.batch], rows)
        .on_conflict_do_nothing(index_elements=[m.c.recipient_user_id, m.c.dedupe_key])
        .returning(m.c.id, m.c.content_sha256))
    inserted = session.execute(stmt).all()
    if not inserted:
        return 0

    d = _deliveries
    session.execute(d.insert().from_select(
        [d.c.message_id, d.c.channel, d.c.status, d.c.attempts, d.c.sent_at],
        select(m.c.id, literal("inbox", String), literal("sent", String), literal(0, Integer),
               literal(now, UTCDateTime())).where(m.c.batch == batch)))
    queued = 0
    if email:
        address = func.coalesce(func.nullif(func.trim(User.email), ""),
                                func.nullif(func.trim(Employee.email), ""))
        queued = session.execute(d.insert().from_select(
            [d.c.message_id, d.c.channel, d.c.address, d.c.status, d.c.attempts,
             d.c.next_attempt_at],
            select(m.c.id, literal("email", String), address, literal("pending", String),
                   literal(0, Integer), literal(now, UTCDateTime()))
            .select_from(m.join(User, User.id == m.c.recipient_user_id)
                         .outerjoin(Employee, Employee.id == User.employee_id))
            .where(m.c.batch == batch, address.is_not(None))),
            execution_options={"preserve_rowcount": True}).rowcount or 0

    ids_inserted = [row.id for row in inserted]
    ledger.append(session, kind="notify.sent", subject=f"notify:{kind}", actor_id=actor_id,
                  payload={
                      "channel": "inbox",
                      "batch": batch,
                      "count": len(inserted),
                      "kinds": [kind],
                      "dedupe_key": dedupe_key,
                      **({"dedupe_keys": "per recipient"} if dedupe_keys is not None else {}),
                      "email_queued": queued,
                      "first_message_id": min(ids_inserted),
                      "last_message_id": max(ids_inserted),
                      "messages_sha256": messages_digest(inserted),
                  })
    return len(inserted)


# --- e-mail delivery ---------------------------------------------------------------------

@dataclass
class DeliveryReport:
    claimed: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    ledger_seq: int | None = None
    errors: list[str] = field(default_factory=list)


def _claim(session: Session, *, now: datetime, limit: int) -> list[int]:
    """Lease up to ``limit`` due e-mail deliveries to this tick, committed on a
    connection of its own before any e-mail goes out (see ``lms.queue_claim``)."""
    return claim_due(session, _deliveries, now=now, limit=limit, lease=CLAIM_LEASE,
                     where=[_deliveries.c.channel == "email"])


def _email_text(body: str, url: str) -> tuple[str, str]:
    """Plain text and HTML of an e-mail. The tracking link is the read receipt.

    No tracking pixel: many mail clients block remote images (so a pixel misses real
    reads) and some fetch them on arrival through a proxy (so it reports reads that did
    not happen); silently recording that someone opened an e-mail also sits badly with
    PIPL's notice-and-consent rules. A click on a signed link is deliberate and reliable.
    """
    label = _("Open this message in Compliance Academy:")
    plain = f"{body}\n\n{label}\n{url}\n"
    html = Markup(
        "<!doctype html><html><body>"
        '<div style="white-space:pre-wrap;font-family:sans-serif">{body}</div>'
        '<p><a href="{url}">{label}</a><br><span style="font-size:small">{url}</span></p>'
        "</body></html>"
    ).format(body=escape(body), url=url, label=label)
    return plain, str(html)


def _pending_rows(session: Session, ids: Sequence[int]) -> list[Any]:
    d, m = _deliveries, _messages
    return session.execute(
        select(d.c.id, d.c.address, d.c.attempts, m.c.id.label("message_id"),
               m.c.recipient_user_id, m.c.kind, m.c.subject, m.c.body, m.c.content_sha256)
        .join(m, m.c.id == d.c.message_id).where(d.c.id.in_(ids)).order_by(d.c.id)
    ).all()


def _record(session: Session, rows: list[Any], outcomes: list[SendOutcome], *,
            now: datetime) -> tuple[list[Any], int, int, list[str]]:
    """Write each outcome; return (sent rows, retrying, failed, errors)."""
    by_key = {o.key: o for o in outcomes}
    sent, updates = [], []
    retrying = failed = 0
    errors: list[str] = []
    for row in rows:
        outcome = by_key.get(row.id) or SendOutcome(row.id, False, error="not attempted")
        attempts = row.attempts + 1
        values = {"b_id": row.id, "b_attempts": attempts, "b_claimed": None,
                  "b_status": "pending", "b_sent_at": None, "b_next": None,
                  "b_error": outcome.error, "b_msgid": outcome.message_id}
        if outcome.ok:
            values.update(b_status="sent", b_sent_at=outcome.accepted_at or now)
            sent.append(row)
        elif outcome.permanent or attempts > len(BACKOFF):
            values["b_status"] = "failed"
            failed += 1
        else:
            values["b_next"] = now + BACKOFF[attempts - 1]
            retrying += 1
        if outcome.error and outcome.error not in errors:
            errors.append(outcome.error)
        updates.append(values)
    d = _deliveries
    session.execute(
        update(d).where(d.c.id == bindparam("b_id")).values(
            attempts=bindparam("b_attempts"), claimed_until=bindparam("b_claimed"),
            status=bindparam("b_status"), sent_at=bindparam("b_sent_at", type_=UTCDateTime()),
            next_attempt_at=bindparam("b_next", type_=UTCDateTime()),
            last_error=bindparam("b_error"), smtp_message_id=bindparam("b_msgid")),
        updates,
    )
    return sent, retrying, failed, errors


def deliver_pending(
    session: Session,
    mailer: Mailer,
    *,
    now: datetime,
    limit: int = 200,
    secret_key: str | None = None,
    base_url: str | None = None,
) -> DeliveryReport:
    """Send the e-mails that are due, through one mailer batch, and record the outcome.

    The claim (a lease on the chosen rows) is committed on its own connection first, so
    a concurrent tick never sends the same e-mail (see ``_claim``); call this with no
    uncommitted writes in ``session``. Outcomes — ``sent_at`` when the SMTP server
    accepted the message, or a retry after 1 min, 5 min, 30 min, 2 h, then "failed" —
    and one "notify.sent" ledger entry are written in ``session``; the caller commits.
    Delivery is at-least-once: a tick that dies after sending and before its commit
    leaves the lease to expire, and the e-mail goes out again.
    """
    secret_key = secret_key or current_app.config["SECRET_KEY"]
    base_url = (base_url or current_app.config["PUBLIC_BASE_URL"]).rstrip("/")
    report = DeliveryReport()
    claimed = _claim(session, now=now, limit=limit)
    if not claimed:
        return report
    rows = _pending_rows(session, claimed)
    report.claimed = len(rows)
    emails = []
    for row in rows:
        url = f"{base_url}/n/{tracking_token(row.message_id, row.recipient_user_id, secret_key)}"
        plain, html = _email_text(row.body, url)
        emails.append(OutgoingEmail(key=row.id, to=row.address or "", subject=row.subject,
                                    text=plain, html=html))
    outcomes = mailer.send_batch(emails)
    sent, report.retrying, report.failed, report.errors = _record(session, rows, outcomes,
                                                                  now=now)
    report.sent = len(sent)
    entry = ledger.append(session, kind="notify.sent", subject="notify:email", payload={
        "channel": "email",
        "count": len(sent),
        "kinds": sorted({row.kind for row in sent}),
        "message_ids": sorted(row.message_id for row in sent),
        "messages_sha256": messages_digest((row.message_id, row.content_sha256)
                                           for row in sent),
        "retrying": report.retrying,
        "failed": report.failed,
        "not_sent_message_ids": sorted(row.message_id for row in rows if row not in sent),
    })
    report.ledger_seq = entry.seq
    return report


def pending_email_count(session: Session) -> int:
    d = _deliveries
    return session.scalar(select(func.count()).select_from(d).where(
        d.c.channel == "email", d.c.status == "pending")) or 0


# --- reading -----------------------------------------------------------------------------

def mark_read(session: Session, message_id: int, *, via: str, ip: str | None, now: datetime,
              user_agent: str | None = None) -> bool:
    """Record the first read of a message (later opens change nothing); True if this was
    the first. One "notify.read" ledger entry per first read. The caller commits."""
    if via not in READ_VIA:
        raise ValueError(f"unknown read channel {via!r}")
    m = _messages
    row = session.execute(
        update(m).where(m.c.id == message_id, m.c.read_at.is_(None))
        .values(read_at=now, read_via=via, read_ip=(ip or None) and ip[:64],
                read_user_agent=(user_agent or None) and user_agent[:512])
        .returning(m.c.recipient_user_id, m.c.content_sha256)
    ).first()
    if row is None:
        return False
    ledger.append(session, kind="notify.read", subject=f"message:{message_id}",
                  actor_id=row.recipient_user_id, payload={
                      "message_id": message_id,
                      "recipient_user_id": row.recipient_user_id,
                      "content_sha256": row.content_sha256,
                      "via": via,
                      "at": now.isoformat(),
                      "ip": ip,
                  })
    return True


def unread_count(session: Session, user_id: int) -> int:
    """Unread messages of a user: one COUNT on the partial index of unread messages."""
    return session.scalar(select(func.count()).select_from(_messages).where(
        _messages.c.recipient_user_id == user_id, _messages.c.read_at.is_(None))) or 0


def message_for(session: Session, user_id: int, message_id: int) -> Message | None:
    """The message if ``user_id`` is its recipient; None otherwise (answer 404)."""
    return session.scalars(select(Message).where(
        Message.id == message_id, Message.recipient_user_id == user_id)).first()


@dataclass
class InboxPage(Page):
    """A page of the inbox, with the unread count for the heading."""

    items: list[Message]
    unread: int = 0


def _inbox_query(user_id: int) -> Select:
    return (select(Message).where(Message.recipient_user_id == user_id)
            .order_by(Message.created_at.desc(), Message.id.desc()))


def inbox_page(session: Session, user_id: int, page: int, per_page: int = PER_PAGE
               ) -> InboxPage:
    """Newest first; unread ones are marked by the page (``read_at`` is None)."""
    total = session.scalar(select(func.count()).select_from(_messages).where(
        _messages.c.recipient_user_id == user_id)) or 0
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    items = list(session.scalars(_inbox_query(user_id).limit(per_page)
                                 .offset((page - 1) * per_page)))
    return InboxPage(items=items, page=page, per_page=per_page, total=total,
                     unread=unread_count(session, user_id))
