"""Bulk evidence: the packs of everyone in a department (with its sub-departments) or
on a course, as one ZIP with an ``index.csv``, built by a background job.

Constant memory: each employee's pack is rendered, written to the job's directory and
dropped before the next one; the ZIP is written to a file, its members streamed from
disk. Each pack's export ledger entry is committed on its own, so the ledger holds
exactly the packs that exist.

Resumable: before committing an employee's entry the job appends a line (file, SHA-256,
pack id) to ``manifest.jsonl`` in its directory. An attempt that takes over after a
crash skips every employee whose line, file and ledger entry agree (the file's SHA-256
is the one the ledger recorded), and exports the rest — nobody is exported twice, and
a pack whose entry never got committed is simply made again.

An employee whose pack cannot be made (e.g. an unreadable record breaks the renderer)
gets a row in the index saying why; no font or no signing key fails the whole job
(every pack would fail the same way).
"""

from __future__ import annotations

import csv
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zipfile import ZIP_DEFLATED, ZIP_STORED, ZipFile

from flask_babel import lazy_gettext as _l
from sqlalchemy import select, union
from sqlalchemy.orm import Session

from courses.models import Course, CourseVersion, Enrollment
from lms import ledger
from lms.compliance.models import Assignment
from lms.dbtypes import utcnow
from lms.evidence.export import EXPORT_KIND, SHANGHAI, export_pack
from lms.evidence.fonts import FontError
from lms.evidence.pack import PackScopeError
from lms.evidence.pdf import PdfRenderError
from lms.evidence.signing import SigningError
from lms.field_errors import ErrorCollector, FieldErrors
from lms.jobs import JobContext, JobFailed, register
from lms.jobs import store as job_store
from lms.jobs.models import BackgroundJob
from lms.jobs.registry import file_sha256
from lms.ledger import LedgerEntry
from lms.people.models import Department, Employee, User
from lms.people.services import department_subtree_query

__all__ = ["BULK_EXPORT_KIND", "INDEX_HEADER", "KIND", "BulkScope", "BulkScopeError",
           "employee_ids", "register_jobs", "run_bulk", "start_bulk_export"]

KIND = "evidence.bulk"
BULK_EXPORT_KIND = "evidence.bulk_exported"
MANIFEST = "manifest.jsonl"
EMPLOYEES = "employees.json"
INDEX = "index.csv"
LOOKUP_CHUNK = 500
HEARTBEAT_SECONDS = 10.0

# Fixed bilingual headers, like the packs' labels: the index goes to courts and auditors.
INDEX_HEADER = ["工号 Employee no.", "姓名 Name", "部门 Department", "课程 Course",
                "证据包编号 Pack id", "文件名 File", "SHA-256", "字节数 Bytes",
                "账本序号 Ledger seq", "状态 Status", "问题 Problem"]
STATUS_OK = "已导出 exported"
STATUS_PROBLEM = "未导出 not exported"


class BulkScopeError(FieldErrors):
    """The scope asked for is missing, ambiguous, unknown or empty (named on its field)."""


@dataclass(frozen=True)
class BulkScope:
    kind: str  # "department" (with its sub-departments) or "course"
    id: int
    code: str
    name: str

    @property
    def course_code(self) -> str | None:
        return self.code if self.kind == "course" else None

    def params(self) -> dict[str, Any]:
        return {"scope": self.kind, "id": self.id, "code": self.code, "name": self.name}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> BulkScope:
        return cls(params["scope"], int(params["id"]), params["code"], params["name"])


def employee_ids(session: Session, scope: BulkScope) -> list[int]:
    """Everyone in the scope, by employee no.: a department's staff with its
    sub-departments' (whatever their status: leavers' evidence matters most), or
    everyone enrolled on or assigned the course."""
    if scope.kind == "department":
        where = Employee.department_id.in_(department_subtree_query(scope.id))
    else:
        enrolled = (select(User.employee_id)
                    .join(Enrollment, Enrollment.user_id == User.id)
                    .join(CourseVersion, CourseVersion.id == Enrollment.version_id)
                    .where(CourseVersion.course_id == scope.id, User.employee_id.is_not(None)))
        assigned = select(Assignment.employee_id).where(Assignment.course_id == scope.id)
        where = Employee.id.in_(union(enrolled, assigned).scalar_subquery())
    return list(session.scalars(select(Employee.id).where(where)
                                .order_by(Employee.employee_no, Employee.id)))


def start_bulk_export(session: Session, *, department: Department | None,
                      course: Course | None, actor: User | None, generated_by: str,
                      now: datetime | None = None) -> BackgroundJob:
    """Check the scope and queue the job (the caller commits, then enqueues). Raises
    ``BulkScopeError`` naming the field: no scope, both, or nobody in it."""
    errors = ErrorCollector(BulkScopeError)
    if department is None and course is None:
        errors.add("department", _l("Choose a department or a course."))
    elif department is not None and course is not None:
        errors.add("course", _l("Choose either a department or a course, not both."))
    errors.raise_if_any()
    scope = (BulkScope("department", department.id, department.code, department.name)
             if department is not None
             else BulkScope("course", course.id, course.code, course.title_zh))  # type: ignore[union-attr]
    total = len(employee_ids(session, scope))
    if total == 0:
        field = scope.kind
        errors.add(field, _l("Nobody is in this department or its sub-departments.")
                   if field == "department"
                   else _l("Nobody is enrolled on or assigned this course."))
        errors.raise_if_any()
    return job_store.create(session, KIND, {**scope.params(), "generated_by": generated_by},
                            requested_by=actor.id if actor else None, now=now, total=total)


# --- the job ----------------------------------------------------------------------------


@dataclass
class Line:
    """One employee's row of the index (and of the manifest)."""

    employee_id: int
    employee_no: str
    name: str
    department: str
    course: str
    pack_id: str = ""
    file: str = ""
    sha256: str = ""
    bytes: int = 0
    seq: int | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem and bool(self.file)

    def cells(self) -> list[Any]:
        return [self.employee_no, self.name, self.department, self.course, self.pack_id,
                self.file, self.sha256, self.bytes if self.ok else "",
                self.seq if self.seq is not None else "",
                STATUS_OK if self.ok else STATUS_PROBLEM, self.problem]


def run_bulk(ctx: JobContext) -> None:
    """The job: every pack of the scope, then the index and the ZIP, then one ledger
    entry for the ZIP (committed by the runner with the job's "done")."""
    session = ctx.session
    params = ctx.params
    scope = _still_there(session, BulkScope.from_params(params))
    generated_by = f"{params.get('generated_by') or 'background job'}，批量导出 bulk export #{ctx.job_id}"
    ids = _frozen_ids(ctx, scope)
    total = len(ids)
    lines = _checkpoints(session, ctx.workdir, ids, beat=_beat(ctx))
    finished = len(lines)
    ctx.progress(finished, total, "")
    for employee_id in ids:
        if employee_id in lines:
            continue
        line = _export_one(ctx, employee_id, scope, generated_by)
        lines[employee_id] = line
        finished += 1
        ctx.progress(finished, total, f"{line.employee_no} {line.name}")
    ctx.progress(total, total, "zip")

    index = _write_index(ctx.workdir / INDEX, (lines[i] for i in ids))
    index_sha, _size = file_sha256(index)
    zip_path = _write_zip(ctx.workdir, _zip_name(ctx, scope), index,
                          [lines[i] for i in ids if lines[i].ok],
                          beat=_beat(ctx))
    zip_sha, zip_bytes = file_sha256(zip_path)
    ok = sum(1 for i in ids if lines[i].ok)
    ledger.append(session, kind=BULK_EXPORT_KIND, subject=f"evidence_bulk:{ctx.job_id}",
                  actor_id=ctx.requested_by, payload={
                      "job_id": ctx.job_id, "scope": scope.kind, "scope_id": scope.id,
                      "scope_code": scope.code, "scope_name": scope.name,
                      "employees": total, "packs": ok, "problems": total - ok,
                      "zip_name": zip_path.name, "zip_sha256": zip_sha,
                      "zip_bytes": zip_bytes, "index_sha256": index_sha,
                      "generated_at": utcnow().isoformat(), "generated_by": generated_by,
                      "attempt": ctx.attempt})
    ctx.set_result(zip_path, sha256=zip_sha, size=zip_bytes)
    ctx.when_done(lambda: _remove_scratch(ctx.workdir, keep=zip_path.name))


def _beat(ctx: JobContext, every: float = HEARTBEAT_SECONDS) -> Callable[[], None]:
    """A heartbeat for long steps without per-employee progress (hashing the files of a
    resumed job, writing the ZIP), at most every ``every`` seconds: a live job must not
    look dead to the other workers."""
    last = time.monotonic()

    def beat() -> None:
        nonlocal last
        if time.monotonic() - last >= every:
            ctx.heartbeat()
            last = time.monotonic()

    return beat


def _still_there(session: Session, scope: BulkScope) -> BulkScope:
    model = Department if scope.kind == "department" else Course
    if session.get(model, scope.id) is None:
        raise JobFailed(f"the {scope.kind} {scope.code} no longer exists")
    return scope


def _frozen_ids(ctx: JobContext, scope: BulkScope) -> list[int]:
    """The scope's people as the first attempt found them: a resumed attempt works
    through the same list (and the same total) even if someone joined meanwhile."""
    path = ctx.workdir / EMPLOYEES
    if path.exists():
        return [int(i) for i in json.loads(path.read_text(encoding="utf-8"))]
    ids = employee_ids(ctx.session, scope)
    ctx.session.rollback()  # only reads so far: end the transaction
    _write_atomic(path, json.dumps(ids).encode())
    return ids


def _export_one(ctx: JobContext, employee_id: int, scope: BulkScope,
                generated_by: str) -> Line:
    """Export one pack to the job directory and commit its ledger entry; a pack that
    cannot be made is a line with the reason."""
    session = ctx.session
    employee = session.get(Employee, employee_id)
    course = scope.code if scope.kind == "course" else "全部 ALL"
    if employee is None:
        return Line(employee_id, "", "", "", course,
                    problem="员工记录已不存在 the employee record no longer exists")
    line = Line(employee_id, employee.employee_no, employee.name, employee.department.name,
                course)
    actor = session.get(User, ctx.requested_by) if ctx.requested_by else None
    try:
        exported = export_pack(session, employee, course_code=scope.course_code, actor=actor,
                               generated_by=generated_by)
    except (PackScopeError, PdfRenderError) as exc:
        session.rollback()
        line.problem = str(exc)
        _append_manifest(ctx.workdir, line)
        return line
    except (FontError, SigningError) as exc:
        session.rollback()
        raise JobFailed(str(exc)) from exc
    filename = _safe_name(exported.filename)
    _write_atomic(ctx.workdir / filename, exported.pdf)
    line.pack_id, line.file, line.sha256 = exported.pack_id, filename, exported.file_sha256
    line.bytes, line.seq = len(exported.pdf), exported.ledger_seq
    del exported  # the PDF leaves memory before the next one is made
    _append_manifest(ctx.workdir, line)  # the checkpoint first, then the entry it names
    session.commit()
    session.expunge_all()
    return line


def _checkpoints(session: Session, workdir: Path, ids: list[int],
                 beat: Callable[[], None]) -> dict[int, Line]:
    """Employees an earlier attempt finished: their manifest line, their file with the
    SHA-256 of the line, and a committed export entry recording that same SHA-256."""
    wanted = set(ids)
    candidates: dict[int, Line] = {}
    for line in _read_manifest(workdir):
        beat()
        if line.employee_id not in wanted:
            continue
        if line.ok and _file_matches(workdir / line.file, line):
            candidates[line.employee_id] = line
        else:
            candidates.pop(line.employee_id, None)  # a later failed try: not done
    recorded = _recorded_sha(session, [c.pack_id for c in candidates.values()])
    session.rollback()
    return {emp: line for emp, line in candidates.items()
            if recorded.get(line.pack_id) == (line.sha256, line.seq)}


def _recorded_sha(session: Session, pack_ids: list[str]) -> dict[str, tuple[str, int]]:
    out: dict[str, tuple[str, int]] = {}
    for start in range(0, len(pack_ids), LOOKUP_CHUNK):
        subjects = [f"evidence_pack:{p}" for p in pack_ids[start:start + LOOKUP_CHUNK]]
        for subject, seq, payload in session.execute(
                select(LedgerEntry.subject, LedgerEntry.seq, LedgerEntry.payload)
                .where(LedgerEntry.kind == EXPORT_KIND, LedgerEntry.subject.in_(subjects))):
            try:
                sha = json.loads(payload).get("file_sha256")
            except ValueError:
                continue
            out[subject.removeprefix("evidence_pack:")] = (sha, seq)
    return out


def _file_matches(path: Path, line: Line) -> bool:
    if not path.is_file() or path.stat().st_size != line.bytes:
        return False
    return file_sha256(path)[0] == line.sha256


def _read_manifest(workdir: Path) -> Iterator[Line]:
    path = workdir / MANIFEST
    if not path.exists():
        return
    with path.open(encoding="utf-8") as fh:
        for raw in fh:
            try:
                yield Line(**json.loads(raw))
            except (ValueError, TypeError):
                continue  # a line cut short by the crash


def _append_manifest(workdir: Path, line: Line) -> None:
    with (workdir / MANIFEST).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(asdict(line), ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.part")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _safe_name(name: str) -> str:
    return re.sub(r"[^\w.\-]+", "_", name)


def _write_index(path: Path, lines: Iterable[Line]) -> Path:
    """UTF-8 with a BOM, so that Excel opens the Chinese names as they are."""
    tmp = path.with_name(f".{path.name}.part")
    with tmp.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(INDEX_HEADER)
        for line in lines:
            writer.writerow(line.cells())
    os.replace(tmp, path)
    return path


def _zip_name(ctx: JobContext, scope: BulkScope) -> str:
    day = utcnow().astimezone(SHANGHAI).strftime("%Y%m%d")
    return _safe_name(f"evidence-{scope.kind}-{scope.code}-{day}-job{ctx.job_id}.zip")


def _write_zip(workdir: Path, name: str, index: Path, packs: list[Line],
               beat: Callable[[], None]) -> Path:
    """The index first, then the PDFs (stored: they are compressed already), each
    streamed from its file."""
    final = workdir / name
    tmp = workdir / f".{name}.part"
    with ZipFile(tmp, "w", allowZip64=True) as zf:
        zf.write(index, INDEX, compress_type=ZIP_DEFLATED)
        for line in packs:
            zf.write(workdir / line.file, line.file, compress_type=ZIP_STORED)
            beat()
    os.replace(tmp, final)
    return final


def _remove_scratch(workdir: Path, *, keep: str) -> None:
    """After the job is done the ZIP holds everything; the loose files go."""
    for path in workdir.iterdir():
        if path.name != keep and path.is_file():
            path.unlink()


def register_jobs() -> None:
    """The job kinds of this module (``create_app`` calls this in every process)."""
    register(KIND, run_bulk)
