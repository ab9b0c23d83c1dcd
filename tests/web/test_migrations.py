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
