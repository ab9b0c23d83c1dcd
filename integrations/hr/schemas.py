"""Request and response bodies of the HR endpoints (pydantic; they are also the OpenAPI
schemas). The rows mirror the employee CSV import's columns; everything the import
checks against the database (departments, positions, managers, duplicates, ID numbers,
dates) is checked by the import's own validator in ``integrations.hr.sync``, so these
models hold only the shape: types, required fields, lengths, the status vocabulary."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from integrations.api import ApiModel
from lms.people.csv_import import STATUS_LABELS, parse_status

MAX_BATCH = 1000

# Codes and the Chinese labels HR systems export (在职, 自离 …), as the CSV import takes
# them; answers always carry the code.
STATUS_INPUTS = (*STATUS_LABELS, *STATUS_LABELS.values())
_RE_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
EMPLOYEE_NO = re.compile(r"[A-Za-z0-9_-]{1,32}")
_EMPLOYEE_NO = r"^[A-Za-z0-9_-]{1,32}$"
# One line of text without control characters (a NUL would fail in PostgreSQL as a 500).
_TEXT = r"^[^\x00-\x1f\x7f]*$"


def _iso_date(value: Any) -> Any:
    """Dates as ``YYYY-MM-DD`` text only (pydantic alone would read 20240301 as seconds)."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _RE_ISO_DATE.fullmatch(value):
        raise ValueError("use a date as YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError("not a real date") from None


def _status_code(value: str) -> str:
    return parse_status(value) or value


EmployeeNo = Annotated[str, Field(pattern=_EMPLOYEE_NO, description="工号")]
IsoDate = Annotated[date, BeforeValidator(_iso_date)]
StatusIn = Annotated[Literal[*STATUS_INPUTS], AfterValidator(_status_code),
                     Field(description="A status code, or its Chinese label: "
                           + ", ".join(f"{c} ({label})" for c, label in STATUS_LABELS.items()))]


class EmployeeIn(ApiModel):
    """One employee as the HR record has them. An omitted optional field keeps what the
    record holds; an explicit null clears ``position``, ``manager``, ``email`` and
    ``tags`` (an ID number is never removed through the API: null keeps it)."""

    employee_no: EmployeeNo
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=_TEXT)]
    department: Annotated[str, Field(min_length=1, max_length=32, pattern=_TEXT,
                                     description="Department code (部门编码)")]
    position: Annotated[str, Field(min_length=1, max_length=128, pattern=_TEXT,
                                   description="Position code or name (岗位)")] | None = None
    status: StatusIn
    hire_date: IsoDate
    manager: Annotated[str, Field(pattern=_EMPLOYEE_NO,
                                  description="The manager's employee_no")] | None = None
    email: Annotated[str, Field(max_length=254, pattern=_TEXT)] | None = None
    id_number: Annotated[str, Field(max_length=32, pattern=_TEXT,
                                    description="身份证号; stored encrypted, never "
                                    "returned")] | None = None
    tags: list[Annotated[str, Field(max_length=200, pattern=_TEXT)]] | None = Field(
        default=None, description="Replace the employee's tags; [] or null clears them")

    def record(self) -> dict[str, str]:
        """The row as the import's validator reads it (keys of ``csv_import.FIELDS``)."""
        out = {"employee_no": self.employee_no, "name": self.name,
               "department_code": self.department, "position": self.position or "",
               "manager_no": self.manager or "", "hire_date": self.hire_date.isoformat(),
               "status": self.status, "id_number": self.id_number or "",
               "email": self.email or ""}
        if "tags" in self.model_fields_set:
            out["tags"] = "\n".join(self.tags or [])
        return out

    def cleared(self) -> frozenset[str]:
        """Employee columns this row sets to NULL (explicit nulls)."""
        given = self.model_fields_set
        return frozenset(column for name, column in (("position", "position_id"),
                                                     ("email", "email"),
                                                     ("manager", "manager_id"))
                         if name in given and getattr(self, name) is None)


class BatchIn(ApiModel):
    employees: Annotated[list[EmployeeIn], Field(min_length=1, max_length=MAX_BATCH)]


class WebhookIn(ApiModel):
    event: Literal["employee.changed"]
    employee: EmployeeIn


class RowResult(ApiModel):
    employee_no: str
    result: Literal["created", "updated", "unchanged"]


class RowWarning(ApiModel):
    field: str
    message: str


class AssignmentEffects(ApiModel):
    """What the assignment engine did for the changed employees right away."""

    assigned: int = 0  # new assignments (rules, re-training, recertification)
    suspended: int = 0
    resumed: int = 0
    deferred: str | None = Field(default=None, description="Why the engine did not run "
                                 "now (the next scheduled tick does it)")


class SyncResult(ApiModel):
    created: int
    updated: int
    unchanged: int
    rows: list[RowResult]
    warnings: list[RowWarning] = Field(default_factory=list)
    ledger_seq: int | None = Field(description="The hr.sync_applied entry; null when "
                                   "nothing changed")
    assignments: AssignmentEffects


# --- the training record ---------------------------------------------------------------

class CodeName(ApiModel):
    code: str
    name: str


class EmployeeOut(ApiModel):
    employee_no: str
    name: str
    department: CodeName
    position: CodeName | None
    status: str
    status_label: str
    hire_date: date


class LedgerRef(ApiModel):
    seq: int
    hash: str


class CourseRef(ApiModel):
    code: str
    title: str
    title_en: str


class VersionRef(ApiModel):
    number: int
    content_hash: str | None


class AssignmentOut(ApiModel):
    source: str
    status: str
    cycle: int
    assigned_at: datetime
    due_date: date
    completed_at: datetime | None
    completed_date: date | None = Field(description="Local (Asia/Shanghai) date")
    overdue: bool


class ExamOut(ApiModel):
    lesson: str
    pass_score: int | None
    attempts: int
    best_score: int | None
    passed: bool


class SignatureOut(ApiModel):
    policy_title: str
    policy_version: int
    document_sha256: str
    signed_at: datetime
    verification_code: str
    record: LedgerRef


class RoundOut(ApiModel):
    """One round of one course version: the enrolment (if learning began) and the
    assignments it fulfils."""

    course: CourseRef
    version: VersionRef
    cycle: int | None
    enrolled_at: datetime | None
    completed_at: datetime | None
    completion_record: LedgerRef | None
    assignments: list[AssignmentOut]
    exams: list[ExamOut]
    signatures: list[SignatureOut]


class TrainingRecord(ApiModel):
    employee: EmployeeOut
    as_of: date = Field(description="Local date that 'overdue' is judged on")
    generated_at: datetime
    rounds: list[RoundOut]
