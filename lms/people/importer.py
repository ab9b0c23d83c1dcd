"""Database half of HR's employee CSV import: stage an upload, validate it against the
current data, and apply all of its rows in one transaction or none.

The pure parsing and row checks live in :mod:`lms.people.csv_import`; this module only
loads the lookups it needs (in a handful of bulk queries), keeps the uploaded file
encrypted in a staging table between preview and apply, and writes employees.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import ForeignKey, Integer, LargeBinary, String, delete, insert, select, update
from sqlalchemy.orm import Mapped, Session, aliased, mapped_column, relationship

from lms import ledger
from lms.dbtypes import UTCDateTime, utcnow
from lms.extensions import db
from lms.people import csv_import
from lms.people.csv_import import EmployeeRow, ImportResult
from lms.people.models import Department, Employee, EmployeeTag, Position, User
from lms.people.services import id_number_fields
from lms.people.vault import IdNumberVault

__all__ = [
    "ApplyOutcome",
    "EmployeeImport",
    "ImportRefused",
    "Lookups",
    "RowsWritten",
    "apply_import",
    "fingerprint",
    "load_lookups",
    "stage_upload",
    "staged_text",
    "validate_text",
    "write_rows",
]

# Bound parameters per IN (...) list: well under SQLite's and PostgreSQL's limits.
_CHUNK = 500


class EmployeeImport(db.Model):
    """An uploaded employee CSV waiting for (or done with) "apply".

    ``content`` is the decoded file text encrypted with the ID-number key: the file
    holds ID numbers in clear, and PIPL wants them encrypted at rest like the
    employee records themselves. ``sha256`` is of the bytes as uploaded, so the
    ledger entry pins exactly which file was applied.
    """

    __tablename__ = "employee_imports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uploaded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"),
                                                index=True)
    filename: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    row_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    applied_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))

    uploaded_by: Mapped[User] = relationship(foreign_keys=[uploaded_by_id])
    applied_by: Mapped[User | None] = relationship(foreign_keys=[applied_by_id])


class ImportRefused(Exception):
    """Apply was refused; nothing was written. ``message`` is shown to the user."""

    def __init__(self, message: Any) -> None:  # a str or a lazy translation
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return str(self.message)


@dataclass(slots=True)
class Lookups:
    """What the pure parser needs from the database."""

    departments: dict[str, int]
    positions: dict[str, int]
    employee_nos: set[str]
    id_holders: dict[str, str]  # 18-digit ID number -> employee_no holding it
    managers: dict[str, str]  # employee_no -> current manager's employee_no


@dataclass(frozen=True, slots=True)
class ApplyOutcome:
    created: int
    updated: int
    unchanged: int


@dataclass(frozen=True, slots=True)
class RowsWritten:
    """Employee numbers by outcome, in row order (what :func:`write_rows` did)."""

    created: list[str]
    updated: list[str]
    unchanged: list[str]


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def _reporting_chains(session: Session, employee_nos: Sequence[str]) -> list[Any]:
    """(id, employee_no, manager_id) of the named employees and all their managers up the
    line (a recursive CTE; UNION stops at a loop)."""
    found: dict[int, Any] = {}
    for chunk in _chunks(employee_nos):
        chain = (select(Employee.id, Employee.employee_no, Employee.manager_id)
                 .where(Employee.employee_no.in_(chunk)).cte("chain", recursive=True))
        up = aliased(Employee)
        chain = chain.union(select(up.id, up.employee_no, up.manager_id)
                            .join(chain, up.id == chain.c.manager_id))
        for row in session.execute(select(chain.c.id, chain.c.employee_no,
                                          chain.c.manager_id)):
            found[row.id] = row
    return list(found.values())


def load_lookups(session: Session, vault: IdNumberVault, id_numbers: Iterable[str], *,
                 only: Collection[str] | None = None) -> Lookups:
    """Departments, positions, employee numbers, reporting lines, and the holders of the
    given ID numbers (found by blind index, so no stored number is decrypted).

    ``only`` (the employee numbers a few rows name, as employees or managers) limits the
    employees loaded to those and everyone above them in the reporting line: all the
    validator needs to tell new from existing and to find a management loop through a
    row, without reading the whole company for one webhook call."""
    departments = dict(session.execute(select(Department.code, Department.id)).all())
    positions: dict[str, int] = {}
    rows = session.execute(select(Position.code, Position.name, Position.id)).all()
    for _code, name, pid in rows:
        positions.setdefault(name, pid)
    for code, _name, pid in rows:
        positions[code] = pid  # a code wins over another position's identical name

    if only is None:
        employees = session.execute(
            select(Employee.id, Employee.employee_no, Employee.manager_id)
        ).all()
    else:
        employees = _reporting_chains(session, sorted(set(only)))
    no_by_id = {eid: no for eid, no, _ in employees}
    managers = {no: no_by_id[mid] for _, no, mid in employees if mid in no_by_id}

    by_index = {vault.blind_index(n): n for n in id_numbers}
    holders: dict[str, str] = {}
    for chunk in _chunks(sorted(by_index)):
        found = session.execute(
            select(Employee.id_number_index, Employee.employee_no)
            .where(Employee.id_number_index.in_(chunk))
        )
        for index, employee_no in found:
            holders[by_index[index]] = employee_no
    return Lookups(departments=departments, positions=positions,
                   employee_nos=set(no_by_id.values()), id_holders=holders, managers=managers)


def validate_text(session: Session, vault: IdNumberVault, text: str, *, today: date,
                  max_rows: int = csv_import.DEFAULT_MAX_ROWS) -> ImportResult:
    """Parse and check a decoded file against the current database.

    Raises :class:`csv_import.ImportFileError` for problems with the file as a whole.
    """
    numbers = csv_import.id_numbers_in(text, today=today, max_rows=max_rows)
    lookups = load_lookups(session, vault, numbers)
    return csv_import.parse_employee_csv(
        text,
        known_departments=lookups.departments,
        known_positions=lookups.positions,
        existing_employee_nos=lookups.employee_nos,
        existing_id_numbers=lookups.id_holders,
        existing_managers=lookups.managers,
        today=today,
        max_rows=max_rows,
    )


def fingerprint(staged: EmployeeImport, result: ImportResult) -> str:
    """What the person approving a preview saw, reduced to a hash.

    The file cannot change once staged, but the database can: a department code may
    now name another department, or an employee number that was new may now exist.
    Apply recomputes this and refuses when it differs from the preview's.
    """
    summary = [
        [r.employee_no, r.is_new, r.department_id, r.position_id] for r in result.rows
    ]
    body = json.dumps([staged.sha256, summary, len(result.warnings)], separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def stage_upload(session: Session, vault: IdNumberVault, *, data: bytes, text: str,
                 filename: str, row_count: int, uploaded_by_id: int) -> EmployeeImport:
    """Keep an upload (encrypted) for its preview and a later apply."""
    staged = EmployeeImport(
        uploaded_by_id=uploaded_by_id,
        filename=filename[:255],
        sha256=hashlib.sha256(data).hexdigest(),
        content=vault.encrypt(text),
        row_count=row_count,
    )
    session.add(staged)
    session.flush()
    return staged


def staged_text(vault: IdNumberVault, staged: EmployeeImport) -> str:
    return vault.decrypt(staged.content)


def _claim(session: Session, staged: EmployeeImport, actor_id: int) -> None:
    """Mark the import applied, or refuse if it already is.

    A conditional UPDATE rather than a read-then-write: on PostgreSQL a second,
    concurrent apply of the same import waits for this row lock and then finds
    ``applied_at`` set, so a file is never applied twice.
    """
    now = utcnow()
    claimed = session.execute(
        update(EmployeeImport)
        .where(EmployeeImport.id == staged.id, EmployeeImport.applied_at.is_(None))
        .values(applied_at=now, applied_by_id=actor_id)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        raise ImportRefused(_l("This import has already been applied; it cannot be applied twice."))
    staged.applied_at = now
    staged.applied_by_id = actor_id
    session.flush()


def _existing_by_no(session: Session, employee_nos: Sequence[str]) -> dict[str, Employee]:
    found: dict[str, Employee] = {}
    for chunk in _chunks(employee_nos):
        for emp in session.execute(select(Employee).where(Employee.employee_no.in_(chunk))).scalars():
            found[emp.employee_no] = emp
    return found


def _row_values(row: EmployeeRow) -> dict[str, object]:
    """Columns a row sets. Blank optional cells (position, e-mail, ID number) are left
    out, so they keep what an existing record holds and a partial export from another
    system never wipes data."""
    values: dict[str, object] = {
        "name": row.name,
        "department_id": row.department_id,
        "hire_date": row.hire_date,
        "status": row.status,
    }
    if row.position_id is not None:
        values["position_id"] = row.position_id
    if row.email is not None:
        values["email"] = row.email
    for attr in row.clear & {"position_id", "email"}:  # the HR API's explicit nulls
        values[attr] = None
    return values


def _update_existing(vault: IdNumberVault, emp: Employee, row: EmployeeRow) -> bool:
    """Copy a validated row onto an existing employee; returns whether anything changed."""
    changed = False
    for attr, value in _row_values(row).items():
        if getattr(emp, attr) != value:
            setattr(emp, attr, value)
            changed = True
    if row.id_number is not None:
        fields = id_number_fields(vault, row.id_number)
        if emp.id_number_index != fields["id_number_index"]:
            for attr, value in fields.items():
                setattr(emp, attr, value)
            changed = True
    return changed


def _current_tags(session: Session, employee_ids: Sequence[int]) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {eid: set() for eid in employee_ids}
    for chunk in _chunks(employee_ids):
        for eid, tag in session.execute(select(EmployeeTag.employee_id, EmployeeTag.tag)
                                        .where(EmployeeTag.employee_id.in_(chunk))):
            found[eid].add(tag)
    return found


def _replace_tags(session: Session, rows: Sequence[EmployeeRow], ids: dict[str, int],
                  existing: dict[str, Employee]) -> set[str]:
    """Give the employees of rows that carry tags (the file has a 标签 column) exactly
    those tags, in bulk statements; returns the numbers of existing employees whose tags
    changed."""
    tagged = [r for r in rows if r.tags is not None]
    current = _current_tags(session, [ids[r.employee_no] for r in tagged
                                      if r.employee_no in existing])
    replace = [r for r in tagged
               if set(r.tags or ()) != current.get(ids[r.employee_no], set())]
    stale = [ids[r.employee_no] for r in replace if r.employee_no in existing]
    for chunk in _chunks(stale):
        session.execute(delete(EmployeeTag).where(EmployeeTag.employee_id.in_(chunk))
                        .execution_options(synchronize_session=False))
    values = [{"employee_id": ids[r.employee_no], "tag": t} for r in replace for t in r.tags or ()]
    if values:
        session.execute(insert(EmployeeTag), values)
    for no in (r.employee_no for r in replace if r.employee_no in existing):
        session.expire(existing[no], ["tag_rows"])  # loaded tags are stale now
    return {r.employee_no for r in replace if r.employee_no in existing}


def apply_import(session: Session, vault: IdNumberVault, staged: EmployeeImport, *,
                 actor_id: int, today: date, expected_fingerprint: str,
                 max_rows: int = csv_import.DEFAULT_MAX_ROWS) -> ApplyOutcome:
    """Re-validate against the current database and write every row, or raise.

    Raises :class:`ImportRefused` (nothing written) when the import was applied
    before, when the data now has errors, or when the outcome would differ from
    the preview that was approved. Database constraint violations (someone took an
    employee number or ID number meanwhile) surface as ``IntegrityError``; the
    caller rolls back, so either all rows are written or none.
    """
    _claim(session, staged, actor_id)
    try:
        result = validate_text(session, vault, staged_text(vault, staged), today=today,
                               max_rows=max_rows)
    except csv_import.ImportFileError as exc:
        raise ImportRefused(str(exc)) from exc
    if not result.ok:
        raise ImportRefused(_l(
            "The data in the system changed since the preview and the file is no longer "
            "valid (%(n)d problems). Nothing was imported; see the problems below.",
            n=len(result.errors)))
    if fingerprint(staged, result) != expected_fingerprint:
        raise ImportRefused(_l(
            "The data in the system changed since you looked at the preview (for example an "
            "employee number or a department code). Nothing was imported; check the preview "
            "again before applying."))

    written = write_rows(session, vault, result.rows)
    created_nos, updated_nos = written.created, written.updated
    created, updated, unchanged = len(created_nos), len(updated_nos), len(written.unchanged)

    ledger.append(
        session,
        kind="employees.imported",
        subject=f"employee_import:{staged.id}",
        payload={
            "filename": staged.filename,
            "sha256": staged.sha256,
            "rows": len(result.rows),
            "created": created,
            "updated": updated,
            "unchanged": unchanged,
            "created_employee_nos": created_nos,
            "updated_employee_nos": updated_nos,
            "warnings": len(result.warnings),
        },
        actor_id=actor_id,
    )
    return ApplyOutcome(created=created, updated=updated, unchanged=unchanged)


def write_rows(session: Session, vault: IdNumberVault, rows: Sequence[EmployeeRow]
               ) -> RowsWritten:
    """Write validated rows: create the new employees, update the changed ones, set
    manager links and tags; nothing is written for a row equal to the record. Rows must
    come from one validation against the current database (the CSV import and the HR
    API share this). Unique-key races surface as ``IntegrityError``; the caller rolls
    back."""
    # Existing employees go through the ORM (few, and only the changed ones are
    # written); new ones and the manager links are written with bulk statements, which
    # keeps a 20,000-row file within seconds.
    existing = _existing_by_no(session, [r.employee_no for r in rows])
    created_nos: list[str] = []
    updated_nos: list[str] = []
    unchanged_nos: set[str] = set()
    new_values: list[dict[str, object]] = []
    for row in rows:
        emp = existing.get(row.employee_no)
        if emp is None:
            values = {"employee_no": row.employee_no, **_row_values(row)}
            if row.id_number is not None:
                values.update(id_number_fields(vault, row.id_number))
            new_values.append(values)
            created_nos.append(row.employee_no)
        elif _update_existing(vault, emp, row):
            updated_nos.append(row.employee_no)
        else:
            unchanged_nos.add(row.employee_no)
    session.flush()  # unique constraints of the updates are checked here

    ids = {no: emp.id for no, emp in existing.items()}
    if new_values:  # SQLAlchemy batches this into multi-row INSERT ... RETURNING
        ids.update(session.execute(
            insert(Employee).returning(Employee.employee_no, Employee.id), new_values
        ).all())

    # Managers last: a row may name a manager that appears further down the file.
    outside = sorted({r.manager_no for r in rows if r.manager_no} - ids.keys())
    for chunk in _chunks(outside):
        ids.update(session.execute(
            select(Employee.employee_no, Employee.id).where(Employee.employee_no.in_(chunk))
        ).all())
    links: list[dict[str, int | None]] = []
    for row in rows:
        current = existing[row.employee_no].manager_id if row.employee_no in existing else None
        if row.manager_no is not None:
            manager_id: int | None = ids[row.manager_no]
        elif "manager_id" in row.clear:  # the HR API's explicit null
            manager_id = None
        else:
            continue  # a blank cell keeps the current manager
        if current != manager_id:
            links.append({"id": ids[row.employee_no], "manager_id": manager_id})
            if row.employee_no in unchanged_nos:
                unchanged_nos.discard(row.employee_no)
                updated_nos.append(row.employee_no)
    if links:
        session.execute(update(Employee), links)  # ORM bulk UPDATE by primary key
    for no in sorted(_replace_tags(session, rows, ids, existing) & unchanged_nos):
        unchanged_nos.discard(no)
        updated_nos.append(no)
    return RowsWritten(created=created_nos, updated=updated_nos,
                       unchanged=[r.employee_no for r in rows if r.employee_no in unchanged_nos])
