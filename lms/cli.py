"""Command-line entry points: ``flask --app wsgi lms|ledger|workdays ...``."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import func, select

from lms.auth.passwords import hash_password, password_problem, password_problem_message
from lms.extensions import db
from lms.ledger import append, verify
from lms.people.models import ROLES, User
from lms.workday_overrides import load_calendar
from lms.workdays import UnknownYearError, parse_iso_date

lms_cli = AppGroup("lms", help="Compliance Academy administration.")
ledger_cli = AppGroup("ledger", help="The hash-chained evidence ledger.")
workdays_cli = AppGroup("workdays", help="Chinese working-day arithmetic.")


@lms_cli.command("demo")
def demo_command() -> None:
    """Load the demo company once (re-running keeps existing data) and print the logins."""
    from lms.demo import DEMO_PASSWORDS, DemoConflictError, load_demo

    try:
        created = load_demo(db.session, current_app.extensions["id_vault"])
    except DemoConflictError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo("已加载演示数据 (demo data loaded)." if created else
               "演示数据已存在，未做更改 (demo data already present, left as it is).")
    _demo_regulation()
    _demo_risk()
    click.echo("演示账号 (demo logins):")
    for username, (password, roles) in DEMO_PASSWORDS.items():
        click.echo(f"  {username:<10} {password:<18} {', '.join(roles)}")


def _demo_regulation() -> None:
    """The demo's regulation updates: the saved demo feeds ingested like a poll, and the
    workflow walked through every state (once; its own transaction)."""
    from integrations.feeds import DEMO_FEEDS
    from integrations.feeds.poll import ingest_bytes
    from lms.compliance.regulation.demo import load_regulation_demo

    def ingest(session, source, body, now, calendar):
        return ingest_bytes(session, source, body, {}, now=now, calendar=calendar)

    try:
        report = load_regulation_demo(db.session, feeds=DEMO_FEEDS, ingest=ingest)
        db.session.commit()
    except UnknownYearError as exc:
        db.session.rollback()
        click.echo(f"regulation demo: not loaded: {exc}", err=True)
        return
    click.echo(report.line())


def _demo_risk() -> None:
    """The demo's risk types mapped to the demo courses and one risk signal (once; its
    own transaction)."""
    from integrations.risk.demo import load_risk_demo
    from integrations.risk.signals import RiskSignalError
    from lms.dbtypes import utcnow

    try:
        report = load_risk_demo(db.session, now=utcnow())
        db.session.commit()
    except RiskSignalError as exc:  # e.g. the holiday calendar does not know this year
        db.session.rollback()
        click.echo(f"risk demo: not loaded: {exc}", err=True)
        return
    click.echo(report.line())


@lms_cli.command("tick")
def tick_command() -> None:
    """Run the scheduled work once (idempotent; cron it every minute). A lease in the
    database lets only one tick run at a time, on SQLite and PostgreSQL alike."""
    from datetime import timedelta

    from assessments.exam_taking import close_expired
    from integrations.housekeeping import prune_integration_logs
    from lms.compliance.engine import run_assignment_tick
    from lms.compliance.reminders import ReminderPolicy, send_reminders
    from lms.dbtypes import utcnow
    from lms.housekeeping import run_housekeeping
    from lms.notify.tick import run_notify_tick
    from lms.scheduler_lock import acquire, new_holder, release

    holder = new_holder()
    failed = False
    if not acquire(db.session, "tick", holder, timedelta(minutes=10)):
        click.echo("tick: another tick is running; nothing done")
        return
    try:
        now = utcnow()
        result = run_housekeeping(db.session, now)
        db.session.commit()
        click.echo(f"housekeeping: {result.stale_imports_deleted} stale staged imports "
                   f"deleted, {result.login_failures_pruned} old login failures pruned")
        pruned = prune_integration_logs(
            db.session, now, api_call_log_days=current_app.config["API_CALL_LOG_DAYS"])
        db.session.commit()
        click.echo(pruned.line())
        closed = close_expired(db.session, now=now)
        db.session.commit()
        click.echo(f"exams: {closed} attempts past their time limit scored on their saved "
                   "answers")
        calendar = load_calendar(db.session)
        try:
            summary = run_assignment_tick(db.session, calendar=calendar, now=now)
            db.session.commit()
            click.echo(summary.line())
        except UnknownYearError as exc:  # keep reminders and e-mail going meanwhile
            db.session.rollback()
            failed = True
            click.echo(f"assignments: not evaluated: {exc}", err=True)
        report = send_reminders(db.session, calendar=calendar, now=now,
                                policy=ReminderPolicy.from_config(current_app.config))
        db.session.commit()
        click.echo(report.line())
        failed = failed or bool(report.problems)
        failed = not _tick_feeds(calendar, now) or failed
        failed = not _tick_regulation_alerts(calendar, now) or failed
        failed = not _tick_jobs(now) or failed
        click.echo(run_notify_tick(db.session, current_app))
        failed = not _tick_webhooks(now) or failed
        failed = not _tick_xapi(now) or failed
    finally:
        db.session.rollback()
        release(db.session, "tick", holder)
    if failed:
        sys.exit(1)


def _tick_feeds(calendar, now) -> bool:
    """The tick's feed step: poll the due regulation feeds, each source in its own
    transaction (a broken feed is recorded on its row, not raised). True if it ran."""
    from integrations.feeds.fetch import FetchPolicy
    from integrations.feeds.poll import poll_due_feeds

    try:
        report = poll_due_feeds(db.session, now=now, calendar=calendar,
                                commit=db.session.commit,
                                policy=FetchPolicy.from_config(current_app.config))
    except Exception as exc:  # one failing step must not stop the others
        db.session.rollback()
        click.echo(f"feeds: failed: {exc}", err=True)
        return False
    for summary in report.summaries:
        if summary.status == "error":
            click.echo(summary.line(), err=True)
    click.echo(report.line())
    return not report.crashed


def _tick_step(name: str, run: Callable[[], str]) -> bool:
    """Run one tick step, which commits its own work and returns its report line. A
    failure is rolled back and reported, and the tick goes on: one failing step must not
    stop the others. True if it ran."""
    try:
        line = run()
    except Exception as exc:  # one failing step must not stop the others
        db.session.rollback()
        click.echo(f"{name}: failed: {exc}", err=True)
        return False
    click.echo(line)
    return True


def _tick_regulation_alerts(calendar, now) -> bool:
    """Alert trainers and HR about regulation clocks running out (its own transaction)."""
    from lms.compliance.regulation.alerts import send_regulation_alerts

    def run() -> str:
        report = send_regulation_alerts(db.session, calendar=calendar, now=now)
        db.session.commit()
        return report.line()

    return _tick_step("regulation alerts", run)


def _tick_jobs(now) -> bool:
    """Background jobs whose worker died are queued again (sent to RQ again with Redis),
    or failed when out of attempts; the files of jobs finished more than JOB_KEEP_DAYS
    ago are removed."""
    from lms.jobs.backends import prune, sweep

    def run() -> str:
        requeued, gave_up = sweep(current_app, now=now)
        pruned = prune(current_app, now=now)
        return (f"jobs: {len(requeued)} interrupted jobs queued again, {len(gave_up)} out "
                f"of attempts failed, files of {len(pruned)} old jobs removed")

    return _tick_step("jobs", run)


def _tick_webhooks(now) -> bool:
    """Training events from the ledger queued for the webhook endpoints, due deliveries
    sent (each batch its own transaction; a receiver's refusal is recorded on its
    delivery, not raised)."""
    from integrations.webhooks.tick import run_webhook_tick

    return _tick_step("webhooks", lambda: run_webhook_tick(
        db.session, current_app, now=now, commit=db.session.commit).line())


def _tick_xapi(now) -> bool:
    """(When XAPI_LRS_URL is set) statements queued from the ledger and sent to the LRS,
    each batch its own transaction."""
    from integrations.xapi.tick import run_xapi_tick

    return _tick_step("xapi", lambda: run_xapi_tick(
        db.session, current_app, now=now, commit=db.session.commit).line())


@lms_cli.command("worker")
@click.option("--burst", is_flag=True,
              help="Stop when no job is waiting (for tests and cron) instead of waiting for more.")
def worker_command(burst: bool) -> None:
    """Run background jobs: an RQ worker when REDIS_URL is set, else poll the jobs table.
    Jobs interrupted by a stopped worker are taken up again first."""
    from lms.jobs.backends import run_worker

    ran = run_worker(current_app._get_current_object(), burst=burst, echo=click.echo)
    if burst:
        click.echo(f"jobs: worker stopped, nothing left to do ({ran} jobs run)")


@lms_cli.command("create-user")
@click.option("--username", prompt="Username")
@click.option("--name", "display_name", prompt="Display name")
@click.option("--role", "roles", multiple=True, type=click.Choice(ROLES), default=("admin",),
              show_default=True, help="Repeat for several roles.")
@click.password_option("--password", prompt="Password", confirmation_prompt=True)
def create_user_command(username: str, display_name: str, roles: tuple[str, ...],
                        password: str) -> None:
    """Create a user (the first admin of a real installation). The password is prompted."""
    username = username.strip().lower()
    if db.session.scalar(select(User.id).where(func.lower(User.username) == username)):
        raise click.ClickException(f"user {username!r} already exists")
    problem = password_problem(password, username=username)
    if problem:
        raise click.ClickException(f"password refused: {password_problem_message(problem)}")
    user = User(username=username, display_name=display_name.strip() or username,
                password_hash=hash_password(password))
    user.set_roles(set(roles))
    db.session.add(user)
    db.session.flush()
    append(db.session, kind="user.created", subject=f"user:{user.id}",
           payload={"username": username, "roles": sorted(roles), "via": "cli"})
    db.session.commit()
    click.echo(f"created {username} with roles {', '.join(sorted(roles))}")


@ledger_cli.command("verify")
def ledger_verify_command() -> None:
    """Recompute the hash chain, then check every record that points into it (signature
    rows against their entries and documents); exit 1 naming the first problems."""
    from assessments.policies import Signature
    from assessments.signing import verify_signature
    from courses.media import storage

    result = verify(db.session)
    if not result.ok:
        click.echo(f"BROKEN at sequence {result.broken_seq}: {result.reason} "
                   f"({result.count} entries verified before it)", err=True)
        sys.exit(1)
    click.echo(f"OK: {result.count} entries, head {result.head_hash}")
    store, checked, broken = storage(), 0, 0
    for signature in db.session.scalars(
            select(Signature).order_by(Signature.id).execution_options(yield_per=500)):
        checked += 1
        problems = verify_signature(db.session, signature, store).problems
        if problems:
            broken += 1
            for problem in problems:
                click.echo(f"BROKEN signature {signature.verification_code} (ledger sequence "
                           f"{signature.ledger_seq}): {problem}", err=True)
    attempts, attempt_problems = _check_attempts()
    if broken:
        click.echo(f"{broken} of {checked} signature records do not match the ledger", err=True)
    if attempt_problems:
        click.echo(f"{attempt_problems} of {attempts} exam attempts do not match the ledger",
                   err=True)
    if broken or attempt_problems:
        sys.exit(1)
    click.echo(f"OK: {checked} signature records match their ledger entries and documents")
    click.echo(f"OK: {attempts} exam attempts match their ledger entries")


def _check_attempts() -> tuple[int, int]:
    """(submitted attempts checked, attempts with problems), each problem printed."""
    from assessments.exam_taking import verify_attempt
    from assessments.exams import ExamAttempt

    checked = broken = 0
    for attempt in db.session.scalars(
            select(ExamAttempt).where(ExamAttempt.submitted_at.is_not(None))
            .order_by(ExamAttempt.id).execution_options(yield_per=500)):
        checked += 1
        problems = verify_attempt(db.session, attempt)
        if problems:
            broken += 1
            for problem in problems:
                click.echo(f"BROKEN exam {problem} (ledger sequence {attempt.ledger_seq})",
                           err=True)
    return checked, broken


def _date_arg(_ctx, _param, value: str):
    try:
        return parse_iso_date(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@workdays_cli.command("add")
@click.argument("start", callback=_date_arg)
@click.argument("days", type=int)
def workdays_add_command(start, days: int) -> None:
    """Print the date DAYS Chinese working days after START (YYYY-MM-DD)."""
    try:
        click.echo(load_calendar(db.session).add_workdays(start, days).isoformat())
    except UnknownYearError as exc:
        raise click.ClickException(str(exc)) from exc


@workdays_cli.command("between")
@click.argument("start", callback=_date_arg)
@click.argument("end", callback=_date_arg)
def workdays_between_command(start, end) -> None:
    """Print the number of working days after START up to and including END."""
    try:
        click.echo(str(load_calendar(db.session).workdays_between(start, end)))
    except UnknownYearError as exc:
        raise click.ClickException(str(exc)) from exc
