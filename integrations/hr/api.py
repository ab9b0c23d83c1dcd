"""/api/v1/hr: the HR system keeps our employee records in step (a batch upsert and a
signed webhook for single changes) and files each employee's training record.

Decisions (also in the OpenAPI descriptions):

- Rows mirror the employee CSV import and pass its validator: statuses as codes or the
  Chinese labels (在职, 自离 …); a malformed body answers 400 naming the field path
  (``employees[2].hire_date``), rows the database refuses (unknown department, position
  or manager, a duplicate employee_no in the batch, an ID number held by someone else)
  422 naming every ``employees[i].field`` at once; nothing is written unless every row
  is valid. At most ``MAX_BATCH`` rows per call (more: 400 on ``employees``).
- An omitted optional field keeps the stored value, an explicit null clears it
  (position, manager, email, tags; an ID number is never removed through the API).
- A sync that changes nothing writes nothing (no ledger entry): the same batch twice
  answers "unchanged" for every row the second time.
- The webhook answers 503 ``webhook_not_configured`` while ``HR_WEBHOOK_SECRET`` is
  unset (a server setting, not the caller's fault), 401 ``missing_signature``,
  ``bad_timestamp``, ``stale_timestamp`` (over 300 s off) or ``bad_signature``, and 409
  ``replayed`` for a signature it accepted before.
- The training record takes the ``hr:read`` scope. ID numbers never appear in any
  answer.
"""

from __future__ import annotations

from datetime import datetime

from flask import current_app, request
from sqlalchemy.exc import IntegrityError

from integrations.api import ApiError, endpoint, not_found
from integrations.hr import webhook
from integrations.hr.models import record_receipt
from integrations.hr.record import training_record
from integrations.hr.schemas import (
    EMPLOYEE_NO,
    MAX_BATCH,
    BatchIn,
    RowResult,
    RowWarning,
    SyncResult,
    TrainingRecord,
    WebhookIn,
)
from integrations.hr.sync import SyncOutcome, sync_employees
from integrations.tokens import ApiToken
from lms.compliance.engine import local_date
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.people.vault import IdNumberVault

TAG = "hr"
MIN_SECRET_BYTES = 16


def clock() -> datetime:
    """The server's time (UTC); tests replace it to stand on a given day."""
    return utcnow()


def _vault() -> IdNumberVault:
    return current_app.extensions["id_vault"]


def _answer(outcome: SyncOutcome) -> SyncResult:
    return SyncResult(
        created=outcome.count("created"), updated=outcome.count("updated"),
        unchanged=outcome.count("unchanged"),
        rows=[RowResult(employee_no=no, result=r) for no, r in outcome.results],
        warnings=[RowWarning(field=f, message=m) for f, m in outcome.warnings],
        ledger_seq=outcome.ledger_seq, assignments=outcome.assignments)


def _sync(rows, *, via: str, token: ApiToken | None, prefix: str | None) -> SyncResult:
    """Apply and commit once; a unique key taken meanwhile is a 409 with nothing written."""
    now = clock()
    try:
        outcome = sync_employees(
            db.session, _vault(), rows, via=via, now=now, today=local_date(now),
            token_id=token.id if token else None, token_name=token.name if token else None,
            prefix=prefix)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ApiError(409, "Nothing was applied: while the sync ran, another change took an "
                            "employee_no or ID number used here. Send it again.") from None
    return _answer(outcome)


@endpoint("/hr/employees/batch", method="POST", tag=TAG, scope="hr:write", body=BatchIn,
          response=SyncResult, errors=(409, 413, 422),
          summary=f"Create or update up to {MAX_BATCH} employees by employee_no, all or none")
def hr_batch(body: BatchIn, token: ApiToken) -> SyncResult:
    """Every row is validated against the database first (422 lists every problem as
    ``employees[i].field``), then all rows are written in one transaction. Each row is
    reported created, updated or unchanged; a batch that changes nothing writes nothing.
    Changes append one ``hr.sync_applied`` ledger entry (counts and a SHA-256 of the
    rows) and run the assignment engine for the changed people at once: position changes
    and rehires get their rules' courses, leavers (e.g. 自离) have open assignments
    suspended. Statuses may be sent as codes or Chinese labels; an omitted optional field
    keeps the stored value, null clears it (never an ID number)."""
    return _sync(body.employees, via="batch", token=token, prefix=None)


def _verify_webhook() -> None:
    """Authenticate the raw request before its body is parsed; keep its receipt."""
    secret = (current_app.config.get("HR_WEBHOOK_SECRET") or "").encode("utf-8")
    if len(secret) < MIN_SECRET_BYTES:
        raise ApiError(503, "The HR webhook is not configured on this server: set "
                            f"HR_WEBHOOK_SECRET (at least {MIN_SECRET_BYTES} bytes).",
                       code="webhook_not_configured")
    timestamp = request.headers.get("X-Timestamp")
    now = clock()
    try:
        signature = webhook.verify(secret, timestamp=timestamp,
                                   signature=request.headers.get("X-Signature"),
                                   body=request.get_data(), now=now.timestamp())
    except webhook.WebhookRefused as exc:
        raise ApiError(401, exc.message, code=exc.code) from None
    if not record_receipt(db.session, signature_sha256=webhook.signature_digest(signature),
                          timestamp=int(timestamp or 0), now=now):
        raise ApiError(409, "This call was accepted before (same signature); a call is "
                            "applied once. Sign each new call afresh.", code="replayed")


@endpoint("/hr/webhook", method="POST", tag=TAG, auth="hmac", verify=_verify_webhook,
          body=WebhookIn, response=SyncResult, errors=(409, 413, 422, 503),
          summary="One employee changed in the HR system (HMAC-signed)")
def hr_webhook(body: WebhookIn) -> SyncResult:
    """Signed with ``HR_WEBHOOK_SECRET``: ``X-Signature: sha256=<hex HMAC-SHA256(secret,
    "<X-Timestamp>." + raw body)>``, ``X-Timestamp`` in unix seconds within 300 s of the
    server's clock. Each signature is accepted once (409 ``replayed``). The employee is
    applied exactly as one row of the batch endpoint (errors name ``employee.field``)."""
    return _sync([body.employee], via="webhook", token=None, prefix="employee")


@endpoint("/hr/employees/<employee_no>/training-record", tag=TAG, scope="hr:read",
          response=TrainingRecord, errors=(404,),
          summary="An employee's training record for the HR capability file")
def hr_training_record(employee_no: str, token: ApiToken) -> TrainingRecord:
    """Per round of each course version: the assignments (source, status, due date,
    completion, overdue), exam results (attempts, best score, passed), policy signatures
    (title, version, document SHA-256, time, ledger entry) and the ledger entry (seq and
    hash) of the course completion. No ID number."""
    known = EMPLOYEE_NO.fullmatch(employee_no) is not None  # never a NUL into the query
    record = training_record(db.session, employee_no, now=clock()) if known else None
    if record is None:
        raise not_found("Employee")
    return record
