"""Sending due webhook deliveries: a leased batch, one signed POST each, the outcome
recorded on the delivery row.

A 2xx answer is "delivered". Anything else — another status, a timeout, a refused
connection — is retried after 1 min, 5 min, 30 min, 2 h and 12 h, then "failed".
Redirects are not followed (a 3xx is a failure the admin can see), and of an error
answer only its first bytes are kept, as a hint in the delivery log. When an endpoint
cannot be reached at all, its other deliveries in the batch are not tried: they wait
for the same back-off without an attempt being counted.

Delivery is at-least-once: a tick that dies after sending and before its commit lets
the lease expire and the delivery goes out again, with the same ``X-Webhook-Id`` for
the receiver to drop the duplicate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from integrations.outbox import BACKOFF, claim, next_attempt_at
from integrations.signing import sign
from integrations.webhooks.models import WebhookDelivery, WebhookEndpoint
from integrations.webhooks.service import SecretVault
from lms.dbtypes import UTCDateTime

__all__ = ["DeliveryReport", "HttpOutcome", "SendSettings", "deliver_due", "post_signed"]

USER_AGENT = "ComplianceAcademy-Webhooks/1.0"
SNIPPET_BYTES = 200


@dataclass(frozen=True)
class SendSettings:
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    user_agent: str = USER_AGENT

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SendSettings:
        """WEBHOOK_CONNECT_TIMEOUT and WEBHOOK_READ_TIMEOUT (seconds) from the config."""
        return cls(connect_timeout=float(config.get("WEBHOOK_CONNECT_TIMEOUT") or 5),
                   read_timeout=float(config.get("WEBHOOK_READ_TIMEOUT") or 10))


@dataclass(frozen=True)
class HttpOutcome:
    status_code: int | None  # None: no HTTP answer at all (the endpoint is unreachable)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _snippet(response: httpx.Response) -> str:
    data = b""
    for chunk in response.iter_raw():
        data += chunk
        if len(data) >= SNIPPET_BYTES:
            break
    return data[:SNIPPET_BYTES].decode("utf-8", "replace").strip()


def post_signed(client: httpx.Client, url: str, body: bytes, *, secret: bytes,
                event_id: str, event_type: str, settings: SendSettings,
                clock: Callable[[], float] = time.time) -> HttpOutcome:
    """POST ``body`` signed with ``secret``; never raises for network trouble."""
    timestamp = int(clock())
    headers = {"Content-Type": "application/json; charset=utf-8",
               "User-Agent": settings.user_agent, "X-Webhook-Id": event_id,
               "X-Webhook-Event": event_type, "X-Timestamp": str(timestamp),
               "X-Signature": sign(secret, timestamp, body)}
    timeout = httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout)
    try:
        with client.stream("POST", url, content=body, headers=headers,
                           timeout=timeout) as response:
            code = response.status_code
            if 200 <= code < 300:
                return HttpOutcome(code)
            reason = f"HTTP {code} {response.reason_phrase}".strip()
            if 300 <= code < 400:
                return HttpOutcome(code, f"{reason} (redirects are not followed)")
            snippet = _snippet(response)
            return HttpOutcome(code, f"{reason}: {snippet}" if snippet else reason)
    except httpx.TimeoutException:
        return HttpOutcome(None, f"no answer within {settings.read_timeout:g} s "
                                 f"(connect {settings.connect_timeout:g} s)")
    except httpx.HTTPError as exc:
        return HttpOutcome(None, f"{type(exc).__name__}: {exc}"[:500])


@dataclass
class DeliveryReport:
    claimed: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    deferred: int = 0  # not tried: their endpoint was unreachable earlier in the batch
    errors: list[str] = field(default_factory=list)


def _rows(session: Session, ids: list[int]) -> list[Any]:
    d, e = WebhookDelivery, WebhookEndpoint
    return session.execute(
        select(d.id, d.endpoint_id, d.event_id, d.event_type, d.payload, d.attempts,
               e.url, e.secret_cipher, e.is_active)
        .join(e, e.id == d.endpoint_id).where(d.id.in_(ids)).order_by(d.id)).all()


def deliver_due(session: Session, vault: SecretVault, *, now: datetime, limit: int = 50,
                settings: SendSettings | None = None,
                clock: Callable[[], float] = time.time) -> DeliveryReport:
    """Send the deliveries that are due and write their outcomes in ``session`` (the
    caller commits). The lease is committed first on its own connection (see
    ``outbox.claim``): call this with no uncommitted writes in ``session``."""
    settings = settings or SendSettings()
    report = DeliveryReport()
    ids = claim(session, WebhookDelivery.__table__, now=now, limit=limit)
    if not ids:
        return report
    rows = _rows(session, ids)
    report.claimed = len(rows)
    unreachable: dict[int, datetime] = {}  # endpoint id -> when its deliveries try again
    updates = []
    with httpx.Client(follow_redirects=False) as client:
        for row in rows:
            values = {"b_id": row.id, "b_attempts": row.attempts, "b_status": "pending",
                      "b_next": None, "b_last": None, "b_code": None, "b_error": None,
                      "b_delivered": None, "b_counted": False}
            if row.endpoint_id in unreachable:
                values["b_next"] = unreachable[row.endpoint_id]
                report.deferred += 1
                updates.append(values)
                continue
            if not row.is_active:
                outcome = HttpOutcome(None, "endpoint deactivated")
                attempts, final = row.attempts, True
            else:
                try:
                    secret = vault.decrypt(row.secret_cipher).encode("utf-8")
                except ValueError:
                    outcome = HttpOutcome(None, "the secret cannot be decrypted: was "
                                                "ID_NUMBER_KEY changed?")
                else:
                    outcome = post_signed(client, row.url, row.payload.encode("utf-8"),
                                          secret=secret, event_id=row.event_id,
                                          event_type=row.event_type, settings=settings,
                                          clock=clock)
                attempts, final = row.attempts + 1, False
            values.update(b_attempts=attempts, b_last=now, b_code=outcome.status_code,
                          b_error=outcome.error, b_counted=True)
            if outcome.ok:
                values.update(b_status="delivered", b_delivered=now)
                report.delivered += 1
            else:
                retry_at = None if final else next_attempt_at(attempts, now)
                if retry_at is None:
                    values["b_status"] = "failed"
                    report.failed += 1
                else:
                    values["b_next"] = retry_at
                    report.retrying += 1
                if outcome.status_code is None and row.is_active:
                    unreachable[row.endpoint_id] = retry_at or now + BACKOFF[0]
                if outcome.error and outcome.error not in report.errors:
                    report.errors.append(outcome.error)
            updates.append(values)
    _record(session, [u for u in updates if u["b_counted"]], counted=True)
    _record(session, [u for u in updates if not u["b_counted"]], counted=False)
    return report


def _record(session: Session, updates: list[dict[str, Any]], *, counted: bool) -> None:
    if not updates:
        return
    d = WebhookDelivery.__table__
    values: dict[str, Any] = {"claimed_until": None,
                              "next_attempt_at": bindparam("b_next", type_=UTCDateTime())}
    if counted:
        values.update(attempts=bindparam("b_attempts"), status=bindparam("b_status"),
                      last_attempt_at=bindparam("b_last", type_=UTCDateTime()),
                      last_status_code=bindparam("b_code"), last_error=bindparam("b_error"),
                      delivered_at=bindparam("b_delivered", type_=UTCDateTime()))
    keys = ({"b_id", "b_next", "b_attempts", "b_status", "b_last", "b_code", "b_error",
             "b_delivered"} if counted else {"b_id", "b_next"})
    session.execute(update(d).where(d.c.id == bindparam("b_id")).values(**values),
                    [{k: v for k, v in u.items() if k in keys} for u in updates])
