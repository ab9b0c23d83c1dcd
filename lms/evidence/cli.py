"""``flask --app wsgi evidence pdf|verify``: export a pack from the command line, and
check a PDF.

``pdf`` writes the file first under a temporary name, commits the export's ledger
entry, then renames the file into place: a pack on disk always has its ledger entry.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
from pathlib import Path

import click
from flask.cli import AppGroup
from sqlalchemy import select

from lms.evidence.export import export_pack, recognise_pack
from lms.evidence.fonts import FontError
from lms.evidence.pack import PackScopeError
from lms.evidence.pdf import PdfRenderError
from lms.evidence.signing import SigningError
from lms.extensions import db
from lms.people.models import Employee, User

evidence_cli = AppGroup("evidence", help="Evidence packs: signed PDFs of an employee's "
                                         "training records.")

REASONS = {
    "not_pdf": "not a readable PDF",
    "unsigned": "the PDF carries no digital signature",
    "several_signatures": "the PDF carries more than one signature",
    "altered": "the file was changed after it was signed",
    "bad_signature": "the signature is not valid",
    "untrusted": "the signature was not made with this organisation's certificate",
    "modified_after_signing": "something was added to the file after it was signed",
}


@evidence_cli.command("pdf")
@click.option("--employee", "employee_no", required=True, help="Employee no. (工号).")
@click.option("--course", "course_code", default=None, help="Only this course (its code).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the PDF.")
@click.option("--by", "username", default=None,
              help="Record this login as the exporter (default: the command line).")
def pdf_command(employee_no: str, course_code: str | None, output: Path,
                username: str | None) -> None:
    """Export the evidence pack of one employee (all courses, or one) to a signed PDF."""
    employee = db.session.scalar(select(Employee).where(Employee.employee_no == employee_no))
    if employee is None:
        raise click.ClickException(f"no employee with the number {employee_no!r}")
    actor = None
    if username:
        actor = db.session.scalar(select(User).where(User.username == username))
        if actor is None:
            raise click.ClickException(f"no login named {username!r}")
        generated_by = f"{actor.display_name} ({actor.username})，命令行 command line"
    else:
        generated_by = f"命令行 command line ({getpass.getuser()}@{socket.gethostname()})"
    try:
        exported = export_pack(db.session, employee, course_code=course_code, actor=actor,
                               generated_by=generated_by)
    except (PackScopeError, FontError, PdfRenderError, SigningError) as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    output = output.resolve()
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(exported.pdf)
    except OSError as exc:
        db.session.rollback()
        raise click.ClickException(f"cannot write {output}: {exc.strerror}") from exc
    try:
        db.session.commit()
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(output)
    chain = exported.pack.chain
    click.echo(f"wrote {output} ({len(exported.pdf)} bytes), pack {exported.pack_id}, "
               f"ledger entry {exported.ledger_seq}, SHA-256 {exported.file_sha256}")
    click.echo(f"{len(exported.pack.enrolments)} enrolments, {len(exported.pack.records)} "
               "ledger records referenced")
    if not chain.ok:
        click.echo(f"WARNING: the ledger is BROKEN at sequence {chain.broken_seq}: "
                   f"{chain.reason} (the pack says so)", err=True)
    for problem in exported.pack.problems:
        click.echo(f"WARNING: {problem}", err=True)


@evidence_cli.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def verify_command(file: Path) -> None:
    """Check that FILE is an evidence pack of ours, unchanged since export (exit 0), or
    say what is wrong (exit 1)."""
    verdict = recognise_pack(db.session, file.read_bytes())
    check = verdict.check
    if not check.ok:
        click.echo(f"NOT VALID: {REASONS.get(check.status, check.status)}"
                   + (f" ({check.detail})" if check.detail else ""), err=True)
        sys.exit(1)
    click.echo(f"signature: valid, by {check.signer}, signed at {check.signed_at}, "
               "covering the whole file")
    if verdict.entry is None:
        click.echo(f"NOT RECORDED: the ledger has no export of pack {check.pack_id}", err=True)
        sys.exit(1)
    if not verdict.recorded:
        click.echo(f"NOT RECORDED: ledger entry {verdict.entry.seq} of pack {check.pack_id} "
                   "does not record this file's SHA-256 (or no longer matches its hash)",
                   err=True)
        sys.exit(1)
    click.echo(f"OK: pack {check.pack_id} exported at {verdict.entry.at} by "
               f"{verdict.exporter}, ledger entry {verdict.entry.seq}, SHA-256 "
               f"{check.file_sha256}")


@evidence_cli.command("bulk")
@click.option("--department", "department_code", default=None,
              help="Department code: everyone in it and its sub-departments.")
@click.option("--course", "course_code", default=None,
              help="Course code: everyone enrolled on or assigned the course.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the ZIP.")
@click.option("--by", "username", default=None,
              help="Record this login as the exporter (default: the command line).")
def bulk_command(department_code: str | None, course_code: str | None, output: Path,
                 username: str | None) -> None:
    """Export the packs of a department or a course to one ZIP with index.csv: the same
    background job as the web page's, run here and now."""
    import shutil

    from flask import current_app

    from courses.models import Course
    from lms.evidence.bulk import BulkScopeError, start_bulk_export
    from lms.jobs.backends import run_now
    from lms.jobs.models import BackgroundJob
    from lms.jobs.store import JobSettings, job_dir
    from lms.people.models import Department

    if bool(department_code) == bool(course_code):
        raise click.ClickException("give either --department CODE or --course CODE")
    department = course = None
    if department_code:
        department = db.session.scalar(select(Department).where(
            Department.code == department_code))
        if department is None:
            raise click.ClickException(f"no department with the code {department_code!r}")
    if course_code:
        course = db.session.scalar(select(Course).where(Course.code == course_code))
        if course is None:
            raise click.ClickException(f"no course with the code {course_code!r}")
    actor, generated_by = _exporter(username)
    try:
        job = start_bulk_export(db.session, department=department, course=course, actor=actor,
                                generated_by=generated_by)
    except BulkScopeError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    job_id = job.id
    click.echo(f"job {job_id}: {job.progress_total} employees")
    outcome = run_now(job_id)
    db.session.expire_all()
    job = db.session.get(BackgroundJob, job_id)
    if job is None or job.status != "done" or not job.result_path:
        raise click.ClickException(f"job {job_id} {outcome}: {job.error if job else ''}")
    source = job_dir(JobSettings.from_app(current_app), job_id) / job.result_path
    output = output.resolve()
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(source, tmp)
        tmp.replace(output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise click.ClickException(f"cannot write {output}: {exc.strerror}") from exc
    click.echo(f"wrote {output} ({job.result_bytes} bytes), SHA-256 {job.result_sha256}, "
               f"{job.progress_total} employees (see index.csv for any not exported)")


def _exporter(username: str | None) -> tuple[User | None, str]:
    if not username:
        return None, f"命令行 command line ({getpass.getuser()}@{socket.gethostname()})"
    actor = db.session.scalar(select(User).where(User.username == username))
    if actor is None:
        raise click.ClickException(f"no login named {username!r}")
    return actor, f"{actor.display_name} ({actor.username})，命令行 command line"
