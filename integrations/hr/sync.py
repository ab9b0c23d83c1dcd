"""Upserting employees from the HR system (the batch endpoint and the webhook).

The rows go through the employee CSV import's own validator and writer
(``lms.people.csv_import.validate_records``, ``lms.people.importer.write_rows``), so the
API accepts exactly what the import accepts and writes it the same way: every row is
checked against the database first and all problems are refused together, naming
``employees[i].field``; then every row is written, in the caller's transaction.

A sync that changed anything appends one ``hr.sync_applied`` ledger entry and runs the
assignment engine for the changed people at once (new hires and position changes get
their rules' courses, 自离 and other leavers have open assignments suspended), as the
next tick would; a sync that changed nothing writes nothing at all. Nothing here commits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from integrations.hr.schemas import AssignmentEffects, EmployeeIn
from lms import ledger
from lms.compliance.engine import evaluate_rule, sync_statuses
from lms.compliance.models import AssignmentRule
from lms.field_errors import FieldErrors
from lms.people import csv_import, idnumber
from lms.people.importer import load_lookups, write_rows
from lms.people.models import Employee
from lms.people.vault import IdNumberVault
from lms.workday_overrides import load_calendar
from lms.workdays import UnknownYearError, WorkCalendar

__all__ = ["API_FIELD_NAMES", "HrSyncRefused", "SyncOutcome", "run_engine", "sync_employees"]

# The import's canonical fields as the API names them.
API_FIELD_NAMES = {"employee_no": "employee_no", "name": "name", "department_code": "department",
                   "position": "position", "manager_no": "manager", "hire_date": "hire_date",
                   "status": "status", "id_number": "id_number", "email": "email",
                   "tags": "tags"}


class HrSyncRefused(FieldErrors):
    """Rows refused (422); keys are field paths such as ``employees[2].department``."""


@dataclass
class SyncOutcome:
    results: list[tuple[str, str]]  # (employee_no, created|updated|unchanged), row order
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (field path, message)
    ledger_seq: int | None = None
    assignments: AssignmentEffects = field(default_factory=AssignmentEffects)

    def count(self, result: str) -> int:
        return sum(1 for _no, r in self.results if r == result)


def batch_path(prefix: str | None) -> Callable[[int, str], str]:
    """How a row's field is named in errors: ``employees[2].hire_date`` for a batch,
    ``employee.hire_date`` for the webhook's single row (``prefix``)."""
    if prefix is not None:
        return lambda _i, name: f"{prefix}.{name}" if name else prefix
    return lambda i, name: f"employees[{i}].{name}" if name else f"employees[{i}]"


def _id_numbers(rows: Sequence[EmployeeIn], today: date) -> set[str]:
    """The valid ID numbers of the rows in 18-digit form (to find their holders)."""
    found = set()
    for row in rows:
        if row.id_number:
            number = idnumber.to_18_digits(idnumber.normalize(row.id_number), today=today)
            if number is not None:
                found.add(number)
    return found


def digest(vault: IdNumberVault, rows: Sequence[EmployeeIn]) -> str:
    """SHA-256 of the rows as given (omitted fields left out), each ID number replaced by
    its keyed blind index: it pins what was applied without a hash of an ID number,
    which would be guessable."""
    canonical = []
    for row in rows:
        data: dict[str, Any] = row.model_dump(mode="json", exclude_unset=True)
        if data.get("id_number"):
            number = idnumber.normalize(data.pop("id_number"))
            data["id_number_index"] = vault.blind_index(
                idnumber.to_18_digits(number) or number)
        canonical.append(data)
    text = json.dumps(canonical, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sync_employees(session: Session, vault: IdNumberVault, rows: Sequence[EmployeeIn], *,
                   via: str, now: datetime, today: date, token_id: int | None = None,
                   token_name: str | None = None, prefix: str | None = None,
                   calendar: WorkCalendar | None = None) -> SyncOutcome:
    """Validate every row, then write them all (or raise :class:`HrSyncRefused` having
    written nothing). ``via`` is "batch" or "webhook"; ``prefix`` names the single row
    of a webhook in errors. Constraint races surface as ``IntegrityError``."""
    path = batch_path(prefix)
    named = [n for row in rows for n in (row.employee_no, row.manager) if isinstance(n, str)]
    lookups = load_lookups(session, vault, _id_numbers(rows, today), only=named)
    managers = dict(lookups.managers)
    for row in rows:  # a row clearing its manager no longer closes a loop through them
        if "manager_id" in row.cleared():
            managers.pop(row.employee_no, None)
    result = csv_import.validate_records(
        [row.record() for row in rows], field_names=API_FIELD_NAMES,
        row_ref=lambda i: f" {path(i, '')} ", batch_noun="本批次",
        known_departments=lookups.departments, known_positions=lookups.positions,
        existing_employee_nos=lookups.employee_nos, existing_id_numbers=lookups.id_holders,
        existing_managers=managers, today=today)
    if result.errors:
        errors: dict[str, list[str]] = {}
        for error in result.errors:
            errors.setdefault(path(error.row, error.field), []).append(error.message)
        raise HrSyncRefused(errors)

    written = write_rows(session, vault, [replace(r, clear=rows[r.row].cleared())
                                          for r in result.rows])
    outcome_of = {**{no: "created" for no in written.created},
                  **{no: "updated" for no in written.updated}}
    outcome = SyncOutcome(
        results=[(row.employee_no, outcome_of.get(row.employee_no, "unchanged"))
                 for row in rows],
        warnings=[(path(w.row, w.field), w.message) for w in result.warnings])
    changed = written.created + written.updated
    if not changed:
        return outcome
    session.flush()
    entry = ledger.append(session, kind="hr.sync_applied", subject=f"hr_sync:{via}",
                          actor_id=None, payload={
                              "via": via, "token_id": token_id, "token_name": token_name,
                              "rows": len(rows), "created": len(written.created),
                              "updated": len(written.updated),
                              "unchanged": len(written.unchanged),
                              "created_employee_nos": written.created,
                              "updated_employee_nos": written.updated,
                              "warnings": len(result.warnings),
                              "sha256": digest(vault, rows),
                          })
    outcome.ledger_seq = entry.seq
    ids = list(session.scalars(select(Employee.id).where(Employee.employee_no.in_(changed))))
    outcome.assignments = run_engine(session, ids, now=now, calendar=calendar)
    return outcome


def run_engine(session: Session, employee_ids: list[int], *, now: datetime,
               calendar: WorkCalendar | None = None) -> AssignmentEffects:
    """The assignment engine for the changed people: every active rule evaluated for
    them alone, then open assignments of leavers suspended (and of returners resumed).
    Without a holiday calendar for the year a due date falls in, nothing is assigned now
    (a savepoint undoes the partial run) and the tick does it once HR adds the year."""
    effects = AssignmentEffects()
    try:
        with session.begin_nested():
            calendar = calendar or load_calendar(session)
            rules = session.scalars(select(AssignmentRule).where(
                AssignmentRule.is_active.is_(True)).order_by(AssignmentRule.id)).all()
            for rule in rules:
                run = evaluate_rule(session, rule, calendar=calendar, now=now,
                                    employee_ids=employee_ids)
                effects.assigned += run.assigned + run.retrained + run.recurring
            statuses = sync_statuses(session, calendar=calendar, now=now)
            effects.suspended, effects.resumed = statuses.suspended, statuses.resumed
    except UnknownYearError as exc:
        return AssignmentEffects(deferred=str(exc))
    return effects
