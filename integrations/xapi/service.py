"""Queueing xAPI statements from the ledger and sending them to the LRS (nothing commits
here; the tick or the admin view that owns the unit of work commits once).

Enabled by ``XAPI_LRS_URL`` (the LRS endpoint, e.g. ``https://lrs.example.com/xapi``;
statements go to ``<it>/statements``) with HTTP basic auth from ``XAPI_LRS_USERNAME`` /
``XAPI_LRS_PASSWORD``. While it is empty nothing is queued and the outbox cursor
stays where it is, so enabling it later sends the training history from the start.

Sending: a leased batch is POSTed as one JSON array with ``X-Experience-API-Version:
1.0.3``. A 2xx answer marks the batch sent. A 400/409/413 refuses the whole batch for
one bad statement, so a batch so refused is sent again one statement at a time and
only the statement refused on its own is "failed" at once (the same bytes would be
refused again). Anything else (5xx, 401/403 until the credentials are fixed, 429, no
answer) is retried after 1 min, 5 min, 30 min, 2 h and 12 h, then "failed".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from integrations.events import LEDGER_KINDS, TrainingEvent, load_events
from integrations.outbox import advance, claim, next_attempt_at, unread_entries
from integrations.xapi.models import XapiStatement
from integrations.xapi.statements import build_statement
from lms import ledger
from lms.dbtypes import UTCDateTime
from lms.paging import Page

__all__ = [
    "CURSOR",
    "LrsSettings",
    "SendReport",
    "queue_counts",
    "queue_events",
    "queue_from_ledger",
    "retry_failed",
    "send_due",
    "statements_page",
]

log = logging.getLogger(__name__)

CURSOR = "xapi"
XAPI_VERSION = "1.0.3"
PERMANENT = frozenset({400, 409, 413})
PER_PAGE = 50
INSERT_CHUNK = 500


@dataclass(frozen=True)
class LrsSettings:
    url: str
    username: str = ""
    password: str = field(default="", repr=False)
    connect_timeout: float = 5.0
    read_timeout: float = 20.0

    @property
    def statements_url(self) -> str:
        return self.url.rstrip("/") + "/statements"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LrsSettings | None:
        """The LRS settings, or None when xAPI is disabled (no XAPI_LRS_URL)."""
        url = (config.get("XAPI_LRS_URL") or "").strip()
        if not url:
            return None
        return cls(url=url, username=config.get("XAPI_LRS_USERNAME") or "",
                   password=config.get("XAPI_LRS_PASSWORD") or "",
                   connect_timeout=float(config.get("XAPI_CONNECT_TIMEOUT") or 5),
                   read_timeout=float(config.get("XAPI_READ_TIMEOUT") or 20))


# --- queueing ----------------------------------------------------------------------------

def _insert(session: Session):
    return (postgresql.insert if session.get_bind().dialect.name == "postgresql"
            else sqlite.insert)


def _verb_key(statement: dict[str, Any]) -> str:
    return statement["verb"]["display"]["en-US"]


def queue_events(session: Session, events: Sequence[TrainingEvent], *, base_url: str,
                 now: datetime) -> int:
    """Queue one statement per event (an event already queued is left alone)."""
    rows = []
    for event in events:
        try:
            statement = build_statement(event, base_url=base_url)
        except ValueError as exc:  # an event without what a statement needs: skip it
            log.warning("no xAPI statement for ledger entry %s: %s", event.seq, exc)
            continue
        rows.append({"ledger_seq": event.seq, "statement_id": statement["id"],
                     "verb": _verb_key(statement),
                     "statement": json.dumps(statement, ensure_ascii=False,
                                             separators=(",", ":")),
                     "status": "pending", "attempts": 0, "next_attempt_at": now,
                     "created_at": now})
    table = XapiStatement.__table__
    new = 0
    for start in range(0, len(rows), INSERT_CHUNK):
        stmt = (_insert(session)(table).values(rows[start:start + INSERT_CHUNK])
                .on_conflict_do_nothing(index_elements=[table.c.ledger_seq]))
        new += session.execute(stmt, execution_options={"preserve_rowcount": True}
                               ).rowcount or 0
    return new


@dataclass(frozen=True)
class QueueBatch:
    entries: int
    queued: int
    more: bool


def queue_from_ledger(session: Session, *, base_url: str, now: datetime,
                      limit: int = 500) -> QueueBatch:
    """One outbox batch: entries past the cursor become statements; the cursor moves in
    the same transaction (the caller commits)."""
    entries, upto = unread_entries(session, CURSOR, LEDGER_KINDS, limit=limit)
    queued = queue_events(session, load_events(session, entries), base_url=base_url, now=now)
    advance(session, CURSOR, upto, now=now)
    return QueueBatch(len(entries), queued, len(entries) >= limit)


# --- sending -----------------------------------------------------------------------------

@dataclass(frozen=True)
class LrsOutcome:
    status_code: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _post(client: httpx.Client, settings: LrsSettings, statements: Sequence[str]
          ) -> LrsOutcome:
    body = ("[" + ",".join(statements) + "]").encode("utf-8")
    headers = {"Content-Type": "application/json; charset=utf-8",
               "X-Experience-API-Version": XAPI_VERSION}
    auth = (settings.username, settings.password) if settings.username else None
    timeout = httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout)
    try:
        response = client.post(settings.statements_url, content=body, headers=headers,
                               auth=auth, timeout=timeout)
    except httpx.TimeoutException:
        return LrsOutcome(None, f"the LRS did not answer within {settings.read_timeout:g} s")
    except httpx.HTTPError as exc:
        return LrsOutcome(None, f"{type(exc).__name__}: {exc}"[:500])
    if response.is_success:
        return LrsOutcome(response.status_code)
    text = response.text[:200].strip()
    reason = f"HTTP {response.status_code} {response.reason_phrase}".strip()
    return LrsOutcome(response.status_code, f"{reason}: {text}" if text else reason)


@dataclass
class SendReport:
    claimed: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def send_due(session: Session, settings: LrsSettings, *, now: datetime, limit: int = 50
             ) -> SendReport:
    """POST the due statements as one batch and write the outcomes in ``session`` (the
    caller commits). Call with no uncommitted writes: the lease commits on its own."""
    report = SendReport()
    ids = claim(session, XapiStatement.__table__, now=now, limit=limit)
    if not ids:
        return report
    rows = session.execute(select(XapiStatement.id, XapiStatement.statement,
                                  XapiStatement.attempts)
                           .where(XapiStatement.id.in_(ids)).order_by(XapiStatement.id)).all()
    report.claimed = len(rows)
    with httpx.Client(follow_redirects=False) as client:
        outcome = _post(client, settings, [row.statement for row in rows])
        if not outcome.ok and outcome.status_code in PERMANENT and len(rows) > 1:
            outcomes = [(row, _post(client, settings, [row.statement])) for row in rows]
        else:
            outcomes = [(row, outcome) for row in rows]
    updates = []
    for row, result in outcomes:
        attempts = row.attempts + 1
        values = {"b_id": row.id, "b_attempts": attempts, "b_status": "pending",
                  "b_next": None, "b_code": result.status_code, "b_error": result.error,
                  "b_sent": None}
        if result.ok:
            values.update(b_status="sent", b_sent=now)
            report.sent += 1
        else:
            retry_at = None if result.status_code in PERMANENT else next_attempt_at(attempts,
                                                                                    now)
            if retry_at is None:
                values["b_status"] = "failed"
                report.failed += 1
            else:
                values["b_next"] = retry_at
                report.retrying += 1
            if result.error and result.error not in report.errors:
                report.errors.append(result.error)
        updates.append(values)
    table = XapiStatement.__table__
    session.execute(
        update(table).where(table.c.id == bindparam("b_id")).values(
            attempts=bindparam("b_attempts"), status=bindparam("b_status"),
            claimed_until=None, last_attempt_at=now,
            next_attempt_at=bindparam("b_next", type_=UTCDateTime()),
            last_status_code=bindparam("b_code"), last_error=bindparam("b_error"),
            sent_at=bindparam("b_sent", type_=UTCDateTime())),
        updates)
    return report


# --- admin -------------------------------------------------------------------------------

def retry_failed(session: Session, *, actor_id: int | None, now: datetime,
                 statement_row_id: int | None = None) -> int:
    """Failed statements (all, or one) back to pending for the next tick; how many. A
    statement keeps its attempt count, so failing again is final at once. Appends
    ``xapi.retry_requested`` when anything changed."""
    table = XapiStatement.__table__
    stmt = update(table).where(table.c.status == "failed")
    if statement_row_id is not None:
        stmt = stmt.where(table.c.id == statement_row_id)
    rows = session.execute(
        stmt.values(status="pending", next_attempt_at=now, claimed_until=None)
        .returning(table.c.id, table.c.ledger_seq)).all()
    if rows:
        ledger.append(session, kind="xapi.retry_requested",
                      subject=(f"xapi_statement:{statement_row_id}"
                               if statement_row_id is not None else "xapi"),
                      actor_id=actor_id, payload={
                          "statement_ids": sorted(r.id for r in rows),
                          "ledger_seqs": sorted(r.ledger_seq for r in rows)})
    return len(rows)


def queue_counts(session: Session) -> dict[str, int]:
    counts = dict.fromkeys(("pending", "sent", "failed"), 0)
    counts.update(dict(session.execute(
        select(XapiStatement.status, func.count()).group_by(XapiStatement.status)).all()))
    return counts


def statements_page(session: Session, *, status: str | None, page: int,
                    per_page: int = PER_PAGE) -> Page:
    """Queued statements newest first, narrowed to one status."""
    stmt = select(XapiStatement).order_by(XapiStatement.id.desc())
    if status in ("pending", "sent", "failed"):
        stmt = stmt.where(XapiStatement.status == status)
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    page = max(1, min(page, max(1, -(-total // per_page))))
    items = list(session.scalars(stmt.limit(per_page).offset((page - 1) * per_page)))
    return Page(items=items, page=page, per_page=per_page, total=total)
