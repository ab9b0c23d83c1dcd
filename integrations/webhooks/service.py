"""Webhook endpoints and the delivery queue (nothing commits here; the view or the tick
that owns the unit of work commits once).

Events reach the queue only through the outbox (``queue_from_ledger``), never from the
learner's request: completing a course appends a ledger entry and nothing else.
Admin actions — creating and deactivating an endpoint, asking for a retry, sending a
test event — are evidence-worthy and append a ledger entry each.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import httpx
from flask_babel import lazy_gettext as _l
from sqlalchemy import Select, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from integrations.events import EVENT_TYPES, LEDGER_KINDS, TrainingEvent, load_events
from integrations.outbox import advance, unread_entries
from integrations.webhooks.models import DELIVERY_STATUSES, WebhookDelivery, WebhookEndpoint
from integrations.webhooks.payloads import (
    TEST_EVENT_TYPE,
    body_text,
    event_payload,
    test_payload,
)
from lms import ledger
from lms.field_errors import ErrorCollector, FieldErrors
from lms.paging import Page

__all__ = [
    "CURSOR",
    "CreatedEndpoint",
    "EndpointInputError",
    "SecretVault",
    "create_endpoint",
    "deactivate_endpoint",
    "deliveries_page",
    "endpoint_counts",
    "queue_events",
    "queue_from_ledger",
    "queue_test",
    "retry_delivery",
    "retry_failed",
    "url_problem",
]

CURSOR = "webhooks"
SECRET_PREFIX = "whsec_"  # noqa: S105 -- marks our secrets in logs and secret scanners
MAX_URL = 2000
PER_PAGE = 50
INSERT_CHUNK = 500


class SecretVault(Protocol):
    """The app's Fernet vault (``app.extensions["id_vault"]``)."""

    def encrypt(self, id_number: str) -> bytes: ...

    def decrypt(self, token: bytes) -> str: ...


class EndpointInputError(FieldErrors):
    """An endpoint form with a bad field."""


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str  # shown once, stored only encrypted


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot receive webhooks (a message), or None."""
    if not url:
        return _l("An address is required.")
    if len(url) > MAX_URL:
        return _l("The address is longer than %(n)d characters.", n=MAX_URL)
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return _l("This is not a valid address.")
    if parsed.scheme not in ("http", "https"):
        return _l("Only http:// and https:// addresses can receive webhooks.")
    if not parsed.host:
        return _l("The address has no host name.")
    if parsed.userinfo:
        return _l("Put no user name or password in the address; requests are signed "
                  "with the endpoint's secret instead.")
    if parsed.fragment:
        return _l("The address may not contain a #fragment.")
    return None


def _without_query(url: str) -> str:
    """The address as the ledger keeps it: a query string may carry a receiver's token,
    and the ledger is read by auditors and never forgets."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(query=None)) + ("?…" if parsed.query else "")


def create_endpoint(session: Session, vault: SecretVault, *, name: str, url: str,
                    events: Iterable[str], actor_id: int | None, now: datetime
                    ) -> CreatedEndpoint:
    """Register an endpoint with a new secret (returned once) and append
    ``webhook.endpoint_created``. It receives the events recorded after this entry."""
    name, url = (name or "").strip(), (url or "").strip()
    chosen = sorted(set(events))
    errors = ErrorCollector(EndpointInputError)
    if not name or len(name) > 64:
        errors.add("name", _l("A name of 1 to 64 characters is required."))
    problem = url_problem(url)
    if problem:
        errors.add("url", problem)
    unknown = sorted(set(chosen) - set(EVENT_TYPES))
    if not chosen:
        errors.add("events", _l("Choose at least one event."))
    elif unknown:
        errors.add("events", _l("Unknown event(s): %(events)s.", events=", ".join(unknown)))
    errors.raise_if_any()
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    endpoint = WebhookEndpoint(name=name, url=url, secret_cipher=vault.encrypt(secret),
                               secret_prefix=secret[:10], events=json.dumps(chosen),
                               is_active=True, created_seq=0, created_by=actor_id,
                               created_at=now)
    session.add(endpoint)
    session.flush()
    entry = ledger.append(session, kind="webhook.endpoint_created",
                          subject=f"webhook_endpoint:{endpoint.id}", actor_id=actor_id,
                          payload={"name": name, "url": _without_query(url),
                                   "events": chosen, "secret_prefix": endpoint.secret_prefix})
    endpoint.created_seq = entry.seq
    session.flush()
    return CreatedEndpoint(endpoint, secret)


def deactivate_endpoint(session: Session, endpoint_id: int, *, actor_id: int | None,
                        now: datetime) -> bool:
    """Stop sending to an endpoint (once; False if already inactive or unknown). Its
    waiting deliveries end as failed, so the log says what was never sent."""
    done = session.execute(
        update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id,
                                      WebhookEndpoint.is_active.is_(True))
        .values(is_active=False, deactivated_at=now, deactivated_by=actor_id)
        .execution_options(synchronize_session=False)).rowcount
    if not done:
        return False
    abandoned = session.execute(
        update(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id,
                                      WebhookDelivery.status == "pending")
        .values(status="failed", next_attempt_at=None, claimed_until=None,
                last_error="endpoint deactivated")
        .execution_options(synchronize_session=False)).rowcount
    ledger.append(session, kind="webhook.endpoint_deactivated",
                  subject=f"webhook_endpoint:{endpoint_id}", actor_id=actor_id,
                  payload={"endpoint_id": endpoint_id, "pending_abandoned": abandoned})
    return True


# --- the queue -------------------------------------------------------------------------

def _insert(session: Session):
    return (postgresql.insert if session.get_bind().dialect.name == "postgresql"
            else sqlite.insert)


def queue_events(session: Session, events: Sequence[TrainingEvent], *, base_url: str,
                 now: datetime) -> int:
    """Queue each event for each active endpoint subscribed to its type and created
    before it; an (endpoint, event) pair already queued is left alone. Returns how many
    deliveries were new."""
    if not events:
        return 0
    endpoints = session.execute(select(WebhookEndpoint.id, WebhookEndpoint.events,
                                       WebhookEndpoint.created_seq)
                                .where(WebhookEndpoint.is_active.is_(True))).all()
    rows = []
    for endpoint_id, subscribed, created_seq in endpoints:
        wanted = set(json.loads(subscribed))
        for event in events:
            if event.type in wanted and event.seq > created_seq:
                payload = event_payload(event, base_url=base_url)
                rows.append({"endpoint_id": endpoint_id, "ledger_seq": event.seq,
                             "event_id": payload["id"], "event_type": event.type,
                             "payload": body_text(payload), "status": "pending",
                             "attempts": 0, "next_attempt_at": now, "created_at": now})
    if not rows:
        return 0
    table = WebhookDelivery.__table__
    new = 0
    for start in range(0, len(rows), INSERT_CHUNK):  # under SQLite's bound-parameter limit
        stmt = (_insert(session)(table).values(rows[start:start + INSERT_CHUNK])
                .on_conflict_do_nothing(index_elements=[table.c.endpoint_id,
                                                        table.c.ledger_seq]))
        new += session.execute(stmt, execution_options={"preserve_rowcount": True}
                               ).rowcount or 0
    return new


@dataclass(frozen=True)
class QueueBatch:
    entries: int
    queued: int
    more: bool  # the batch was full: call again


def queue_from_ledger(session: Session, *, base_url: str, now: datetime,
                      limit: int = 500) -> QueueBatch:
    """One outbox batch: read entries past the cursor, queue their deliveries and move
    the cursor, all in the caller's transaction (the caller commits)."""
    entries, upto = unread_entries(session, CURSOR, LEDGER_KINDS, limit=limit)
    queued = queue_events(session, load_events(session, entries), base_url=base_url, now=now)
    advance(session, CURSOR, upto, now=now)
    return QueueBatch(len(entries), queued, len(entries) >= limit)


def queue_test(session: Session, endpoint: WebhookEndpoint, *, base_url: str,
               actor_id: int | None, now: datetime) -> WebhookDelivery:
    """Queue a ``webhook.test`` event for one endpoint (sent by the next tick)."""
    if not endpoint.is_active:
        raise EndpointInputError.one(_l("This endpoint is deactivated."))
    entry = ledger.append(session, kind="webhook.test_requested",
                          subject=f"webhook_endpoint:{endpoint.id}", actor_id=actor_id,
                          payload={"endpoint_id": endpoint.id})
    payload = test_payload(seq=entry.seq, hash=entry.hash, at=entry.at, base_url=base_url,
                           endpoint_name=endpoint.name)
    delivery = WebhookDelivery(endpoint_id=endpoint.id, ledger_seq=entry.seq,
                               event_id=payload["id"], event_type=TEST_EVENT_TYPE,
                               payload=body_text(payload), status="pending", attempts=0,
                               next_attempt_at=now, created_at=now)
    session.add(delivery)
    session.flush()
    return delivery


def _active_endpoint_ids(session: Session) -> Select:
    return select(WebhookEndpoint.id).where(WebhookEndpoint.is_active.is_(True))


def retry_delivery(session: Session, delivery_id: int, *, actor_id: int | None,
                   now: datetime) -> bool:
    """Send a failed delivery again at the next tick (its endpoint must be active);
    False when it is not failed. The delivery keeps its attempt count, so a retry that
    fails again is final at once: an admin asked for one more try, not a new schedule."""
    row = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "failed",
               WebhookDelivery.endpoint_id.in_(_active_endpoint_ids(session)))
        .values(status="pending", next_attempt_at=now, claimed_until=None)
        .returning(WebhookDelivery.endpoint_id, WebhookDelivery.ledger_seq,
                   WebhookDelivery.attempts, WebhookDelivery.last_status_code)
        .execution_options(synchronize_session=False)).first()
    if row is None:
        return False
    ledger.append(session, kind="webhook.retry_requested", subject=f"webhook_delivery:{delivery_id}",
                  actor_id=actor_id, payload={
                      "delivery_ids": [delivery_id], "endpoint_id": row.endpoint_id,
                      "ledger_seqs": [row.ledger_seq], "attempts_before": row.attempts,
                      "last_status_code": row.last_status_code})
    return True


def retry_failed(session: Session, endpoint_id: int, *, actor_id: int | None,
                 now: datetime) -> int:
    """Every failed delivery of an active endpoint back to pending; how many."""
    rows = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == "failed",
               WebhookDelivery.endpoint_id.in_(_active_endpoint_ids(session)))
        .values(status="pending", next_attempt_at=now, claimed_until=None)
        .returning(WebhookDelivery.id, WebhookDelivery.ledger_seq)
        .execution_options(synchronize_session=False)).all()
    if rows:
        ledger.append(session, kind="webhook.retry_requested",
                      subject=f"webhook_endpoint:{endpoint_id}", actor_id=actor_id, payload={
                          "delivery_ids": sorted(r.id for r in rows),
                          "endpoint_id": endpoint_id,
                          "ledger_seqs": sorted(r.ledger_seq for r in rows)})
    return len(rows)


# --- reading ---------------------------------------------------------------------------

def deliveries_page(session: Session, *, status: str | None, endpoint_id: int | None,
                    page: int, per_page: int = PER_PAGE) -> Page:
    """Deliveries newest first, narrowed to one status and/or one endpoint."""
    stmt = select(WebhookDelivery).order_by(WebhookDelivery.id.desc())
    if status in DELIVERY_STATUSES:
        stmt = stmt.where(WebhookDelivery.status == status)
    if endpoint_id is not None:
        stmt = stmt.where(WebhookDelivery.endpoint_id == endpoint_id)
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    page = max(1, min(page, max(1, -(-total // per_page))))
    items = list(session.scalars(stmt.limit(per_page).offset((page - 1) * per_page)))
    return Page(items=items, page=page, per_page=per_page, total=total)


def endpoint_counts(session: Session) -> dict[int, dict[str, int]]:
    """endpoint id -> {status: number of deliveries}."""
    out: dict[int, dict[str, int]] = {}
    for endpoint_id, status, count in session.execute(
            select(WebhookDelivery.endpoint_id, WebhookDelivery.status, func.count())
            .group_by(WebhookDelivery.endpoint_id, WebhookDelivery.status)):
        out.setdefault(endpoint_id, {})[status] = count
    return out
