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
import os
import tempfile
from datetime import UTC, date, datetime

import sqlalchemy as sa
from _seed import (
    PG,
    bulk_employees,
    department_tree,
    logins_for_all,
    migrate_quietly,
    pg_schemas,
    published_course,
    timed,
)
from flask import Flask

from courses.models import Enrollment
from lms.app import create_app
from lms.compliance.engine import (
    evaluate_rule,
    latest_published_version,
    local_date,
    rule_audience,
)
from lms.compliance.models import Assignment, AssignmentRule, RuleDepartment
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.workday_overrides import load_calendar

# Monday 2026-09-28 10:00 Beijing time; due dates land after National Day.
NOW = datetime(2026, 9, 28, 2, 0, tzinfo=UTC)


def seed(n: int) -> int:
    """Migrate and fill the current app's database in bulk; return the rule id."""
    migrate_quietly()
    session = db.session
    root, leaves = department_tree(session)
    now = utcnow()
    bulk_employees(session, n, now, lambda i: {"department_id": leaves[i % len(leaves)].id})
    logins_for_all(session, now)
    course = published_course(session, "BENCH-RISK-01", "入职身份核验", now)
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
