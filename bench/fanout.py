"""One assignment rule fanned out to 50,000 employees: the set-based engine against a naive
per-row ORM loop, in the same run.

    .venv/bin/python bench/fanout.py [--n 50000]             # SQLite (fresh temporary files)
    .venv/bin/python bench/fanout.py --postgres [--n 50000]  # PostgreSQL

PostgreSQL is used with ``--postgres`` or when DATABASE_URL names a PostgreSQL database
(else BENCH_PG_URL, default the local `test` database); the run works in private schemas
dropped afterwards. Two identical databases are seeded with bulk inserts (N employees in
one department tree, each with a login, one published course, one rule on the tree's
root with sub-departments). On the first, ``engine.evaluate_rule`` assigns and enrols
everyone (INSERT ... SELECT) and is then run again (idempotent: nothing inserted). On the
second, the baseline adds an Assignment and an Enrollment per person with the ORM,
flushing each row, and commits once. Both times, rows per second and the ratio are printed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SECRET_KEY", "bench-" + "x" * 40)
os.environ.setdefault("ID_NUMBER_KEY", Fernet.generate_key().decode())

from flask import Flask  # noqa: E402
from flask_migrate import upgrade  # noqa: E402

from courses.models import Course, CourseVersion, Enrollment, Lesson  # noqa: E402
from lms.app import create_app  # noqa: E402
from lms.auth.passwords import hash_password  # noqa: E402
from lms.compliance.engine import (  # noqa: E402
    evaluate_rule,
    latest_published_version,
    local_date,
    rule_audience,
)
from lms.compliance.models import Assignment, AssignmentRule, RuleDepartment  # noqa: E402
from lms.config import normalize_database_url  # noqa: E402
from lms.dbtypes import UTCDateTime, utcnow  # noqa: E402
from lms.extensions import db  # noqa: E402
from lms.people.models import Department, Employee, User, UserRole  # noqa: E402
from lms.workday_overrides import load_calendar  # noqa: E402

PG = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
# Monday 2026-09-28 10:00 Beijing time; due dates land after National Day.
NOW = datetime(2026, 9, 28, 2, 0, tzinfo=UTC)
DIVISIONS, STORES = 20, 5  # root -> 20 divisions -> 5 stores each: 121 departments
CHUNK = 5000


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def seed(n: int) -> int:
    """Migrate and fill the current app's database in bulk; return the rule id."""
    logging.disable(logging.INFO)  # migrations/env.py re-reads alembic's logging config
    try:
        upgrade()
    finally:
        logging.disable(logging.NOTSET)
    session = db.session
    root = Department(code="BENCH", name="压测集团")
    session.add(root)
    session.flush()
    leaves = []
    for d in range(DIVISIONS):
        division = Department(code=f"BENCH-{d:02d}", name=f"事业部{d:02d}", parent_id=root.id)
        session.add(division)
        session.flush()
        for s in range(STORES):
            store = Department(code=f"BENCH-{d:02d}-{s}", name=f"门店{d:02d}-{s}",
                               parent_id=division.id)
            session.add(store)
            leaves.append(store)
    session.flush()
    now = utcnow()
    for start in range(0, n, CHUNK):
        session.execute(sa.insert(Employee.__table__), [
            {"employee_no": f"B{i:06d}", "name": f"员工{i}",
             "department_id": leaves[i % len(leaves)].id, "hire_date": date(2024, 1, 1),
             "status": "active", "created_at": now, "updated_at": now}
            for i in range(start, min(n, start + CHUNK))])
    e = Employee.__table__.c
    session.execute(sa.insert(User.__table__).from_select(
        ["username", "display_name", "password_hash", "is_enabled", "employee_id",
         "created_at", "password_changed_at"],
        sa.select(sa.literal("u") + e.employee_no, e.name,
                  sa.literal(hash_password("bench-password-123")), sa.true(), e.id,
                  sa.literal(now, UTCDateTime()),
                  sa.literal(now, UTCDateTime()))))
    session.execute(sa.insert(UserRole.__table__).from_select(
        ["user_id", "role"], sa.select(User.__table__.c.id, sa.literal("trainee"))))
    course = Course(code="BENCH-RISK-01", title_zh="入职身份核验", risk_topic="other")
    version = CourseVersion(course=course, number=1, status="draft")
    session.add_all([course, version])
    session.flush()
    session.add(Lesson(version=version, position=1, kind="document", title="阅读",
                       body="劳动合同应当以书面形式订立。"))
    session.flush()
    version.status, version.content_hash, version.published_at = "published", "b" * 64, now
    rule = AssignmentRule(name="全员入职培训", course_id=course.id, due_working_days=10,
                          effective_from=date(2026, 1, 1))
    session.add(rule)
    session.flush()
    session.add(RuleDepartment(rule_id=rule.id, department_id=root.id))
    session.commit()
    return rule.id


def count(model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model)) or 0


def set_based(rule_id: int) -> tuple[int, int]:
    rule = db.session.get(AssignmentRule, rule_id)
    run = evaluate_rule(db.session, rule, calendar=load_calendar(db.session), now=NOW)
    db.session.commit()
    return run.assigned, run.enrolled


def naive(rule_id: int) -> int:
    """The loop the engine replaces: the same audience query, then one Assignment and one
    Enrollment per person through the ORM, flushed row by row, one commit."""
    rule = db.session.get(AssignmentRule, rule_id)
    version = latest_published_version(db.session, rule.course_id)
    today = local_date(NOW)
    due = load_calendar(db.session).add_workdays(today, rule.due_working_days)
    people = db.session.execute(rule_audience(db.session, rule)).all()
    for employee_id, user_id, _hire_date in people:
        db.session.add(Assignment(
            user_id=user_id, employee_id=employee_id, course_id=rule.course_id,
            version_id=version.id, rule_id=rule.id, source="rule", cycle=1,
            trigger_date=today, due_date=due, status="open", assigned_at=NOW, reason="",
            extensions=0, updated_at=NOW))
        db.session.add(Enrollment(user_id=user_id, version_id=version.id, source="assigned",
                                  created_at=NOW))
        db.session.flush()
    db.session.commit()
    return len(people)


def make_app(url: str) -> Flask:
    return create_app({"SQLALCHEMY_DATABASE_URI": url})


def run(urls: tuple[str, str], n: int) -> dict[str, float]:
    fast_app, slow_app = make_app(urls[0]), make_app(urls[1])
    res: dict[str, float] = {}
    with fast_app.app_context():
        res["seed"], rule_id = timed(lambda: seed(n))
        res["set"], (assigned, enrolled) = timed(lambda: set_based(rule_id))
        assert (assigned, enrolled) == (n, n), (assigned, enrolled)
        res["rerun"], again = timed(lambda: set_based(rule_id))
        assert again == (0, 0), again
        assert (count(Assignment), count(Enrollment)) == (n, n)
        db.session.remove()
        db.engine.dispose()
    with slow_app.app_context():
        rule_id = seed(n)
        res["naive"], people = timed(lambda: naive(rule_id))
        assert people == n and (count(Assignment), count(Enrollment)) == (n, n)
        db.session.remove()
        db.engine.dispose()
    return res


def report(title: str, n: int, res: dict[str, float]) -> None:
    print(f"\n{title}, {n:,} employees (one rule, one course version)")
    print(f"  {'seed: employees + logins + roles (bulk)':<46} {res['seed']:8.2f} s")
    for key, label in (("set", "set-based evaluate_rule (+ enrolments)"),
                       ("naive", "naive ORM loop, flush per row, one commit")):
        print(f"  {label:<46} {res[key]:8.2f} s  {n / res[key]:>10,.0f} people/s"
              f"  {2 * n / res[key]:>10,.0f} rows/s")
    print(f"  {'re-run of evaluate_rule (idempotent, 0 rows)':<46} {res['rerun']:8.2f} s")
    print(f"  {'ratio naive / set-based':<46} {res['naive'] / res['set']:8.1f}x")


def pg_url(base: str, schema: str) -> str:
    base = normalize_database_url(base)
    return f"{base}{'&' if '?' in base else '?'}options={quote(f'-csearch_path={schema}')}"


@contextmanager
def pg_schemas(base: str, count_: int) -> Iterator[list[str]]:
    """Private schemas, dropped afterwards whatever happens."""
    names = [f"bench_fanout_{uuid.uuid4().hex[:8]}" for _ in range(count_)]
    admin = sa.create_engine(normalize_database_url(base).split("?")[0])
    try:
        with admin.begin() as conn:
            for name in names:
                conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
        yield [pg_url(base, name) for name in names]
    finally:
        with admin.begin() as conn:
            for name in names:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50_000, help="employees (default 50,000)")
    ap.add_argument("--postgres", action="store_true", help="run on PostgreSQL")
    args = ap.parse_args()
    env_url = os.environ.get("DATABASE_URL", "")
    if args.postgres or env_url.startswith(("postgres://", "postgresql")):
        base = env_url if env_url.startswith(("postgres://", "postgresql")) else PG
        with pg_schemas(base, 2) as urls:
            report("PostgreSQL", args.n, run((urls[0], urls[1]), args.n))
        return
    with tempfile.TemporaryDirectory() as tmp:
        urls = (f"sqlite:///{tmp}/fanout.sqlite3", f"sqlite:///{tmp}/naive.sqlite3")
        report("SQLite (WAL)", args.n, run(urls, args.n))


if __name__ == "__main__":
    main()
