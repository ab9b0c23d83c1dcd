"""The migrations are the schema: they match the models, and they keep data."""

from __future__ import annotations

import shutil
import textwrap
from datetime import date
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask_migrate import downgrade, upgrade
from sqlalchemy import func, select, text
from support import ON_POSTGRES

from lms.app import MIGRATIONS_DIR, create_app
from lms.auth.passwords import hash_password
from lms.extensions import db
from lms.ledger import append
from lms.people.models import Department, Employee, User, UserRole


@pytest.fixture
def empty_app(databases):
    app = create_app({"SQLALCHEMY_DATABASE_URI": databases.empty_url(), "TESTING": True})
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def _seed() -> None:
    hq = Department(code="HQ", name="总部")
    store = Department(code="S1", name="上海南京西路店", parent=hq)
    emp = Employee(employee_no="E1", name="王芳", department=store, hire_date=date(2020, 1, 2))
    user = User(username="wangfang", display_name="王芳", password_hash=hash_password("x" * 12),
                employee=emp)
    user.set_roles({"trainee", "manager"})
    db.session.add_all([hq, store, emp, user])
    db.session.flush()
    append(db.session, kind="test.seeded", subject="employee:1", payload={"名": "王芳"})
    db.session.commit()


def _snapshot() -> dict:
    """The seeded rows, read in a transaction that is closed again (an open one would
    hold locks that a PostgreSQL DROP TABLE in the next migration waits on)."""
    db.session.expire_all()
    snap = {
        "departments": db.session.execute(
            select(Department.code, Department.name, Department.parent_id).order_by(Department.id)
        ).all(),
        "employees": db.session.execute(select(Employee.employee_no, Employee.name)).all(),
        "roles": sorted(db.session.execute(select(UserRole.user_id, UserRole.role)).all()),
    }
    db.session.rollback()
    return snap


def test_models_and_migrations_agree(empty_app):
    upgrade()
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, db.metadata)
        conn.rollback()
    assert diff == [], f"models differ from migrations: {diff}"


def test_every_step_downgrades_and_upgrades_with_data_intact(empty_app):
    upgrade()
    _seed()
    before = _snapshot()
    script = ScriptDirectory.from_config(empty_app.extensions["migrate"].migrate.get_config())
    revisions = [r.revision for r in script.walk_revisions()]  # head first
    for rev in revisions[:-1]:  # every step above the base schema
        downgrade(revision="-1")
        upgrade()
        assert _snapshot() == before, f"data changed by downgrading/upgrading {rev}"
    assert db.session.scalar(select(func.count()).select_from(User)) == 1
    db.session.rollback()


BATCH_REVISION = '''
"""test-only: batch-alter two parent tables that have ON DELETE CASCADE children"""
import sqlalchemy as sa
from alembic import op

revision = "9999"
down_revision = "{head}"


def upgrade():
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("nickname", sa.String(32)))
    with op.batch_alter_table("departments") as batch:
        batch.add_column(sa.Column("cost_center", sa.String(16)))


def downgrade():
    with op.batch_alter_table("departments") as batch:
        batch.drop_column("cost_center")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("nickname")
'''


def test_batch_migration_of_a_parent_table_keeps_cascade_children(empty_app, tmp_path: Path):
    """SQLite rebuilds a table to alter it; with foreign keys on, dropping the old
    parent would cascade-delete user_roles and user_sessions. env.py prevents that."""
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    head = ScriptDirectory(str(directory)).get_current_head()
    (directory / "versions" / "9999_test_batch.py").write_text(
        textwrap.dedent(BATCH_REVISION).format(head=head), encoding="utf-8"
    )
    upgrade(directory=str(directory))
    downgrade(directory=str(directory), revision=head)
    upgrade(directory=str(directory), revision=head)
    _seed()
    before = _snapshot()
    upgrade(directory=str(directory))
    assert _snapshot() == before
    downgrade(directory=str(directory), revision=head)
    assert _snapshot() == before
    assert before["roles"] and len(before["roles"]) == 2


def test_foreign_keys_enforced_and_sqlite_in_wal_mode(empty_app):
    upgrade()
    with db.engine.connect() as conn:
        if not ON_POSTGRES:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        with pytest.raises(Exception, match=r"(?i)foreign key"):
            conn.execute(text("INSERT INTO employees (employee_no, name, department_id, hire_date,"
                              " status, created_at, updated_at) VALUES ('X', 'x', 999, "
                              "'2020-01-01', 'active', '2020-01-01', '2020-01-01')"))


def _insert(conn, table: str, **values) -> int:
    """Insert a row into the schema as it is now (reflected), filling the NOT NULL
    columns the test does not care about with plain values of their type."""
    from sqlalchemy import MetaData, Table

    t = Table(table, MetaData(), autoload_with=conn)
    row = dict(values)
    for col in t.columns:
        if col.name in row or col.primary_key or col.nullable or col.server_default is not None:
            continue
        py = col.type.python_type
        row[col.name] = {int: 1, float: 0.0, bool: False, str: "x"}.get(py) if py in (
            int, float, bool, str) else (date(2025, 1, 1) if py is date else func.now())
    return conn.execute(t.insert().values(**row).returning(t.c.id)).scalar_one()


def test_enrolment_cycles_migration_backfills_every_learning_row(empty_app):
    """0013 gives each learning row the enrolment it belonged to, and a learner's rows
    without any enrolment get one, so nothing is orphaned or lost."""
    upgrade(revision="0012")
    _seed()
    with db.engine.begin() as conn:
        user = conn.execute(text("SELECT id FROM users")).scalar_one()
        emp = conn.execute(text("SELECT id FROM employees")).scalar_one()
        course = _insert(conn, "courses", code="C1", title_zh="课程", risk_topic="other",
                         max_playback_rate=1.0)
        version = _insert(conn, "course_versions", course_id=course, number=1, status="draft")
        lesson = _insert(conn, "lessons", version_id=version, position=1, kind="document",
                         min_coverage=0.98)
        course2 = _insert(conn, "courses", code="C2", title_zh="课程二", risk_topic="other",
                          max_playback_rate=1.0)
        version2 = _insert(conn, "course_versions", course_id=course2, number=1, status="draft")
        lesson2 = _insert(conn, "lessons", version_id=version2, position=1, kind="document",
                         min_coverage=0.98)
        enrolment = _insert(conn, "enrollments", user_id=user, version_id=version,
                            source="manual")
        progress = _insert(conn, "lesson_progress", user_id=user, lesson_id=lesson)
        orphan = _insert(conn, "lesson_progress", user_id=user, lesson_id=lesson2)
        session_id = _insert(conn, "playback_sessions", token="t1", user_id=user,
                             lesson_id=lesson)
        assignment = _insert(conn, "assignments", user_id=user, employee_id=emp,
                             course_id=course, version_id=version, source="rule", cycle=1,
                             status="open")
    upgrade()
    with db.engine.connect() as conn:
        def one(sql: str, **kw):
            return conn.execute(text(sql), kw).scalar_one()
        assert one("SELECT enrollment_id FROM lesson_progress WHERE id = :i", i=progress) \
            == enrolment
        assert one("SELECT enrollment_id FROM playback_sessions WHERE id = :i", i=session_id) \
            == enrolment
        assert one("SELECT enrollment_id FROM assignments WHERE id = :i", i=assignment) \
            == enrolment
        made = one("SELECT enrollment_id FROM lesson_progress WHERE id = :i", i=orphan)
        assert one("SELECT version_id FROM enrollments WHERE id = :i", i=made) == version2
        assert one("SELECT count(*) FROM enrollments WHERE cycle = 1 "
                   "AND superseded_at IS NULL") == 2
        conn.rollback()
