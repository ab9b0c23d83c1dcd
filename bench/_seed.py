"""What the benchmarks share: the environment, a quiet migration, a bulk-seeded
organisation (department tree, employees, logins, published courses) and private
PostgreSQL schemas. Bulk inserts only: seeding 50,000 people must not be the bench."""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SECRET_KEY", "bench-" + "x" * 40)
os.environ.setdefault("ID_NUMBER_KEY", Fernet.generate_key().decode())

from flask_migrate import upgrade  # noqa: E402

from courses.models import Course, CourseVersion, Lesson  # noqa: E402
from lms.auth.passwords import hash_password  # noqa: E402
from lms.config import normalize_database_url  # noqa: E402
from lms.dbtypes import UTCDateTime  # noqa: E402
from lms.people.models import Department, Employee, User, UserRole  # noqa: E402

PG = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DIVISIONS, STORES = 20, 5  # root -> 20 divisions -> 5 stores each: 121 departments
CHUNK = 5000
PASSWORD = "bench-password-123"  # noqa: S105 - a throwaway bench database


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def migrate_quietly() -> None:
    logging.disable(logging.INFO)  # migrations/env.py re-reads alembic's logging config
    try:
        upgrade()
    finally:
        logging.disable(logging.NOTSET)


def department_tree(session: Any) -> tuple[Department, list[Department]]:
    """BENCH -> 20 divisions -> 5 stores each; returns the root and the 100 stores."""
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
    return root, leaves


def bulk_employees(session: Any, n: int, now: Any,
                   row: Callable[[int], dict[str, Any]]) -> None:
    """Employees B000000.. in chunks; ``row(i)`` gives department, position, status."""
    for start in range(0, n, CHUNK):
        session.execute(sa.insert(Employee.__table__), [
            {"employee_no": f"B{i:06d}", "name": f"员工{i}", "hire_date": date(2024, 1, 1),
             "status": "active", "created_at": now, "updated_at": now, **row(i)}
            for i in range(start, min(n, start + CHUNK))])


def logins_for_all(session: Any, now: Any) -> None:
    """A trainee login "u<employee no>" for every employee, in two INSERT ... SELECTs."""
    e = Employee.__table__.c
    session.execute(sa.insert(User.__table__).from_select(
        ["username", "display_name", "password_hash", "is_enabled", "employee_id",
         "created_at", "password_changed_at"],
        sa.select(sa.literal("u") + e.employee_no, e.name, sa.literal(hash_password(PASSWORD)),
                  sa.true(), e.id, sa.literal(now, UTCDateTime()),
                  sa.literal(now, UTCDateTime()))))
    session.execute(sa.insert(UserRole.__table__).from_select(
        ["user_id", "role"], sa.select(User.__table__.c.id, sa.literal("trainee"))))


def published_course(session: Any, code: str, title: str, now: Any) -> Course:
    """A course with one published version holding one document lesson."""
    course = Course(code=code, title_zh=title, risk_topic="other")
    version = CourseVersion(course=course, number=1, status="draft")
    session.add_all([course, version])
    session.flush()
    session.add(Lesson(version=version, position=1, kind="document", title="阅读",
                       body="劳动合同应当以书面形式订立。"))
    session.flush()
    version.status, version.content_hash, version.published_at = "published", "b" * 64, now
    return course


def pg_url(base: str, schema: str) -> str:
    base = normalize_database_url(base)
    return f"{base}{'&' if '?' in base else '?'}options={quote(f'-csearch_path={schema}')}"


@contextmanager
def pg_schemas(base: str, count_: int) -> Iterator[list[str]]:
    """Private schemas, dropped afterwards whatever happens."""
    names = [f"bench_{uuid.uuid4().hex[:8]}" for _ in range(count_)]
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
