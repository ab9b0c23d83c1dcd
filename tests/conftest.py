"""Shared fixtures: a migrated database per test (SQLite file copy or a PostgreSQL schema
truncated after each test), an app, a CSRF-aware client, and people factories.

Set ``DATABASE_URL`` to a PostgreSQL URL to run the whole suite there; every run works
in a schema of its own and drops it at the end, leaving the database as it found it.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from flask.testing import FlaskClient

os.environ.setdefault("SECRET_KEY", "test-secret-key-" + "x" * 32)
os.environ.setdefault("ID_NUMBER_KEY", Fernet.generate_key().decode())

from support import ON_POSTGRES, PASSWORD, PG_URL

from lms.app import create_app
from lms.auth.passwords import hash_password
from lms.extensions import db
from lms.ledger_core import GENESIS_HASH
from lms.people.models import Department, Employee, Position, User

_PASSWORD_HASH = hash_password(PASSWORD)

TRIGGERED_TABLES = ("ledger_entries", "ledger_head", "signatures")


def pg_url_with_schema(schema: str) -> str:
    from lms.config import normalize_database_url

    base = normalize_database_url(PG_URL)
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-csearch_path={schema}')}"


class Database:
    """Where this test run's databases live, and how to get a fresh one."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.schemas: list[str] = []
        self.template: Path | None = None
        self.migrated_url: str | None = None

    def empty_url(self) -> str:
        """A brand-new, unmigrated database (for migration tests)."""
        if ON_POSTGRES:
            schema = f"lms_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
            engine = sa.create_engine(pg_url_with_schema("public").split("?")[0].replace(
                "postgresql://", "postgresql+psycopg://"))
            with engine.begin() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            engine.dispose()
            self.schemas.append(schema)
            return pg_url_with_schema(schema)
        path = self.tmp / f"empty-{uuid.uuid4().hex[:8]}.sqlite3"
        return f"sqlite:///{path}"

    @staticmethod
    def drop_orphans() -> None:
        """Drop schemas left by earlier runs that were killed (their process is gone)."""
        from lms.config import normalize_database_url

        engine = sa.create_engine(normalize_database_url(PG_URL))
        with engine.begin() as conn:
            names = conn.exec_driver_sql(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'lms_test_%%'"
            ).scalars().all()
            for name in names:
                pid = name.split("_")[2]
                if pid.isdigit() and not _alive(int(pid)):
                    conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        engine.dispose()

    def drop_all(self) -> None:
        if not self.schemas:
            return
        from lms.config import normalize_database_url

        engine = sa.create_engine(normalize_database_url(PG_URL))
        with engine.begin() as conn:
            for schema in self.schemas:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        engine.dispose()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def migrate_to_head(url: str) -> None:
    from flask_migrate import upgrade

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "TESTING": True})
    with app.app_context():
        upgrade()
        db.engine.dispose()


@pytest.fixture(scope="session")
def databases(tmp_path_factory) -> Iterator[Database]:
    dbs = Database(tmp_path_factory.mktemp("db"))
    if ON_POSTGRES:
        dbs.drop_orphans()
    url = dbs.empty_url()
    migrate_to_head(url)
    if ON_POSTGRES:
        dbs.migrated_url = url
    else:
        dbs.template = Path(url.removeprefix("sqlite:///"))
    try:
        yield dbs
    finally:
        dbs.drop_all()


def _reset_postgres(app) -> None:
    """Empty every table (the guard triggers paused inside this transaction). All tables
    are locked first, in one statement, and a deadlock with a straggling request (a
    browser test's last beacon) is retried."""
    for attempt in range(5):
        try:
            _truncate_all()
            return
        except sa.exc.OperationalError:
            if attempt == 4:
                raise
            time.sleep(0.5)


def _truncate_all() -> None:
    tables = [t.name for t in db.metadata.sorted_tables]
    with db.engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
        conn.exec_driver_sql(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
        for name in TRIGGERED_TABLES:
            conn.exec_driver_sql(f"ALTER TABLE {name} DISABLE TRIGGER USER")
        conn.exec_driver_sql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        conn.exec_driver_sql(
            f"INSERT INTO ledger_head (id, seq, hash) VALUES (1, 0, '{GENESIS_HASH}')"
        )
        for name in TRIGGERED_TABLES:
            conn.exec_driver_sql(f"ALTER TABLE {name} ENABLE TRIGGER USER")


@pytest.fixture
def database_url(databases: Database, tmp_path: Path) -> str:
    """A migrated, empty database for one test."""
    if ON_POSTGRES:
        return databases.migrated_url
    path = tmp_path / "test.sqlite3"
    shutil.copyfile(databases.template, path)
    return f"sqlite:///{path}"


class FreshContextClient(FlaskClient):
    """Each request runs in its own app context, as in production.

    The ``app`` fixture keeps an app context pushed for the test body; without this,
    requests would reuse it and share ``g`` (Flask-Login's cached user, Flask-WTF's
    CSRF token) and the test's database session. Afterwards the test's own session is
    expired so it reads what the request committed.
    """

    def open(self, *args, **kwargs):
        with self.application.app_context():
            response = super().open(*args, **kwargs)
        db.session.expire_all()
        return response


@pytest.fixture
def app(database_url: str, tmp_path: Path):
    app = create_app({
        "SQLALCHEMY_DATABASE_URI": database_url,
        "TESTING": True,
        "SERVER_NAME": "localhost",
        "MEDIA_ROOT": str(tmp_path / "media"),
    })
    app.test_client_class = FreshContextClient
    with app.app_context():
        yield app
        db.session.remove()
        if ON_POSTGRES:
            _reset_postgres(app)
        db.engine.dispose()


CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


class Client:
    """The Flask test client plus CSRF tokens taken from rendered pages, as a browser."""

    def __init__(self, flask_client) -> None:
        self.c = flask_client

    def csrf(self, url: str = "/login") -> str:
        html = self.c.get(url).get_data(as_text=True)
        match = CSRF_RE.search(html)
        assert match, f"no CSRF token in {url}"
        return match.group(1)

    def get(self, url: str, **kw):
        return self.c.get(url, **kw)

    def post(self, url: str, data: dict | None = None, *, token_from: str | None = None, **kw):
        """POST a form with the CSRF token a browser would have from ``token_from``."""
        data = dict(data or {})
        data.setdefault("csrf_token", self.csrf(token_from or "/login"))
        return self.c.post(url, data=data, **kw)

    def login(self, username: str, password: str = PASSWORD):
        return self.post("/login", {"username": username, "password": password})

    def logout(self):
        return self.post("/logout", token_from="/")


@pytest.fixture
def client(app) -> Client:
    return Client(app.test_client())


@pytest.fixture
def make_client(app):
    return lambda: Client(app.test_client())


class People:
    """Factories for departments, positions, employees and users (committed)."""

    def __init__(self) -> None:
        self._n = 0

    def _next(self) -> int:
        self._n += 1
        return self._n

    def department(self, name: str = "总部", parent: Department | None = None, code: str | None = None
                   ) -> Department:
        dept = Department(code=code or f"D{self._next():03d}", name=name, parent=parent)
        db.session.add(dept)
        db.session.commit()
        return dept

    def position(self, name: str = "普工", code: str | None = None) -> Position:
        pos = Position(code=code or f"P{self._next():03d}", name=name)
        db.session.add(pos)
        db.session.commit()
        return pos

    def employee(self, name: str = "张三", *, department: Department | None = None,
                 position: Position | None = None, manager: Employee | None = None,
                 status: str = "active", employee_no: str | None = None) -> Employee:
        department = department or self.department()
        emp = Employee(employee_no=employee_no or f"E{self._next():05d}", name=name,
                       department=department, position=position, manager=manager,
                       hire_date=date(2024, 3, 1), status=status)
        db.session.add(emp)
        db.session.commit()
        return emp

    def user(self, username: str, *roles: str, employee: Employee | None = None,
             enabled: bool = True) -> User:
        user = User(username=username, display_name=employee.name if employee else username,
                    password_hash=_PASSWORD_HASH, employee=employee, is_enabled=enabled)
        user.set_roles(set(roles) or {"trainee"})
        db.session.add(user)
        db.session.commit()
        return user


@pytest.fixture
def people(app) -> People:
    return People()
