"""Reports on 50,000 employees × 20 courses (a million assignments and enrolments): the
department dashboard, a full CSV export (time and peak memory), the XLSX export, the
KPI of a month for the whole company, and one evidence PDF.

    .venv/bin/python bench/reports.py [--n 50000] [--courses 20]             # SQLite
    .venv/bin/python bench/reports.py --postgres [--n 50000] [--courses 20]  # PostgreSQL
    add --explain to print the query plans of the dashboard's aggregates

PostgreSQL is used with ``--postgres`` or when DATABASE_URL names a PostgreSQL database
(else BENCH_PG_URL, default the local `test` database), in a private schema dropped
afterwards. The data is generated set-based: employees in chunks, then logins, and the
assignments and enrolments as INSERT ... SELECT over employees × courses (statuses, due
dates and completion times spread by arithmetic on the ids, through a small helper
table of days, so both databases get identical data).

Downloads go through the real views (Flask test client, streamed response consumed
chunk by chunk). Peak memory is measured twice: Python allocations with tracemalloc
(a second run, as tracing slows Python down) and the process's resident set sampled
every 20 ms during the first run, over its level before the export.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime

import sqlalchemy as sa
from _seed import (
    DIVISIONS,
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

from courses.models import Course, CourseVersion, Enrollment
from lms.app import create_app
from lms.auth.passwords import hash_password
from lms.compliance.models import Assignment
from lms.dbtypes import UTCDateTime, utcnow
from lms.extensions import db
from lms.people.models import Department, Employee, Position, User
from lms.reports import kpi, queries
from lms.reports import views as report_views
from lms.reports.periods import parse_period
from lms.workday_overrides import load_calendar

TODAY = date(2026, 10, 16)
FIRST_DUE = date(2026, 1, 5)
DUE_SPAN = 290  # due dates from 2026-01-05 over 290 days (to 2026-10-22)
PASSWORD = "bench-password-123"  # noqa: S105 - a throwaway bench database

days_meta = sa.MetaData()
bench_days = sa.Table("bench_days", days_meta, sa.Column("n", sa.Integer, primary_key=True),
                      sa.Column("day", sa.Date), sa.Column("at", UTCDateTime()))


def seed(n: int, n_courses: int) -> dict[str, int]:
    """Migrate and fill the database set-based; return row counts."""
    migrate_quietly()
    session = db.session
    _root, leaves = department_tree(session)
    positions = [Position(code=f"P{i}", name=name) for i, name in
                 enumerate(("店长", "收银员", "理货员", "仓管员"))]
    session.add_all(positions)
    session.flush()
    now = utcnow()
    bulk_employees(session, n, now, lambda i: {
        "department_id": leaves[i % len(leaves)].id,
        "position_id": positions[0 if i < len(leaves) else 1 + i % 3].id,
        "status": "left" if i % 97 == 0 else "active"})
    e = Employee.__table__.c
    # each store's first employee manages the rest of the store
    b = Employee.__table__.alias("b")
    first = sa.select(sa.func.min(b.c.id)).where(b.c.department_id == e.department_id)
    session.execute(sa.update(Employee.__table__).values(manager_id=first.scalar_subquery())
                    .where(e.id != first.scalar_subquery()))
    logins_for_all(session, now)
    hr = User(username="bench-hr", display_name="人事", password_hash=hash_password(PASSWORD))
    hr.set_roles({"hr"})
    session.add(hr)
    for i in range(n_courses):
        published_course(session, f"BENCH-{i:02d}", f"风险防控课程{i:02d}", now)
    session.flush()
    bench_days.create(session.connection())
    session.execute(bench_days.insert(), [
        {"n": k, "day": FIRST_DUE + timedelta(days=k),
         "at": datetime.combine(FIRST_DUE + timedelta(days=k), dtime(2, 0), tzinfo=UTC)}
        for k in range(DUE_SPAN + 20)])
    _assignments(session, now)
    session.commit()
    return {"employees": n, "assignments": count(Assignment), "enrolments": count(Enrollment)}


def _assignments(session, now: datetime) -> None:
    """Employees × courses: 70 % completed (a sixth of them late), 20 % open (most of
    them past due by October), 5 % suspended, 5 % waived; all enrolled."""
    e, c = Employee.__table__.c, Course.__table__.c
    v = CourseVersion.__table__.c
    due = bench_days.alias("due")
    done = bench_days.alias("done")
    spread = (e.id * 7 + c.id * 13) % DUE_SPAN
    bucket = (e.id * 31 + c.id * 17) % 20
    shift = (e.id + c.id) % 12  # completion 0..11 days after (due - 9): some late
    status = sa.case((bucket < 14, "completed"), (bucket < 18, "open"),
                     (bucket < 19, "suspended"), else_="waived")
    stamp = sa.literal(now, UTCDateTime())
    rows = (sa.select(User.__table__.c.id, e.id, c.id, v.id, sa.literal("manual"),
                      sa.literal(1), due.c.day, due.c.day, status, stamp, sa.literal(""),
                      sa.literal(0), stamp,
                      sa.case((bucket < 14, done.c.at), else_=sa.null()),
                      sa.case((bucket == 18, stamp), else_=sa.null()),
                      sa.case((bucket == 19, stamp), else_=sa.null()))
            .select_from(Employee.__table__)
            .join(User.__table__, User.__table__.c.employee_id == e.id)
            .join(Course.__table__, sa.true())
            .join(CourseVersion.__table__, v.course_id == c.id)
            .join(due, due.c.n == spread + 9)
            .join(done, done.c.n == spread + shift))
    session.execute(sa.insert(Assignment.__table__).from_select(
        ["user_id", "employee_id", "course_id", "version_id", "source", "cycle",
         "trigger_date", "due_date", "status", "assigned_at", "reason", "extensions",
         "updated_at", "completed_at", "suspended_at", "waived_at"], rows))
    a = Assignment.__table__.c
    columns = ["user_id", "version_id", "source", "created_at", "completed_at"]
    values = [a.user_id, a.version_id, sa.literal("assigned"), a.assigned_at, a.completed_at]
    if "cycle" in Enrollment.__table__.c:  # enrolment rounds (recertification)
        columns.append("cycle")
        values.append(a.cycle)
    session.execute(sa.insert(Enrollment.__table__).from_select(
        columns, sa.select(*values).where(sa.true())))


def count(model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model)) or 0


class RssSampler:
    """The resident set size's peak above its level at start, sampled every 20 ms."""

    def __init__(self) -> None:
        self.base = self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def download(client, url: str) -> tuple[int, int]:
    """GET a download and consume it chunk by chunk: (bytes, chunks)."""
    resp = client.get(url, buffered=False)
    assert resp.status_code == 200, (url, resp.status_code)
    size = chunks = 0
    for chunk in resp.response:
        size += len(chunk)
        chunks += 1
    resp.close()
    return size, chunks


def measured_download(client, url: str) -> dict[str, float]:
    with RssSampler() as sampler:
        seconds, (size, chunks) = timed(lambda: download(client, url))
    tracemalloc.start()
    download(client, url)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"s": seconds, "mb": size / 2**20, "chunks": chunks, "rss": sampler.growth_mb,
            "py": peak / 2**20}


class Captured:
    """The SQL statements (with their parameters) the app runs inside the block, so the
    very statements the dashboard sends can be EXPLAINed."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, object]] = []

    def _record(self, _conn, _cursor, statement, parameters, _context, _many) -> None:
        self.statements.append((statement, parameters))

    def __enter__(self) -> Captured:
        sa.event.listen(db.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(db.engine, "before_cursor_execute", self._record)


def explain(statements: list[tuple[str, object]]) -> None:
    """Print the plan of each statement that reads assignments."""
    conn = db.session.connection()
    sqlite = conn.dialect.name == "sqlite"
    for statement, parameters in statements:
        if "assignments" not in statement:
            continue
        print("\n  -- " + " ".join(statement.split())[:160] + " ...")
        prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
        for row in conn.exec_driver_sql(prefix + statement, parameters).all():
            print("    " + str(row[-1] if sqlite else row[0]))


def run(url: str, n: int, n_courses: int, show_plans: bool) -> dict[str, object]:
    tmp = tempfile.mkdtemp(prefix="bench-reports-")
    app: Flask = create_app({"SQLALCHEMY_DATABASE_URI": url, "WTF_CSRF_ENABLED": False,
                             "EVIDENCE_SIGNING_DIR": f"{tmp}/signing",
                             "MEDIA_ROOT": f"{tmp}/media"})
    report_views.today = lambda: TODAY
    res: dict[str, object] = {}
    with app.app_context():
        res["seed"], res["rows"] = timed(lambda: seed(n, n_courses))
        if db.session.get_bind().dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        root = db.session.scalar(sa.select(Department.id).where(Department.code == "BENCH"))
        session = db.session
        with Captured() as captured:
            res["dept_root"], bars = timed(lambda: queries.completion_by_department(
                session, TODAY, parent_id=root))
            assert len(bars) == DIVISIONS, len(bars)
            res["dept_top"], _ = timed(lambda: queries.completion_by_department(session, TODAY))
            res["headline"], head = timed(lambda: queries.headline(session, TODAY))
            res["courses"], _ = timed(lambda: queries.completion_by_course(session, TODAY))
            res["overdue"], _ = timed(lambda: queries.overdue_list(session, TODAY))
            res["trend"], _ = timed(lambda: queries.monthly_trend(session, TODAY))
        res["head"] = head
        res["kpi_month"], rows = timed(lambda: kpi.employee_kpis(
            session, parse_period("2026-09"), today=TODAY, calendar=load_calendar(session)))
        res["kpi_people"] = len(rows)
        res["kpi_teams"], teams = timed(lambda: kpi.team_kpis(session, rows))
        res["kpi_team_count"] = len(teams)
        if show_plans:
            explain(captured.statements)
        session.remove()
    client = app.test_client()
    resp = client.post("/login", data={"username": "bench-hr", "password": PASSWORD})
    assert resp.status_code == 302, resp.status_code
    res["page"], _ = timed(lambda: client.get("/reports/"))
    res["page_dept"], _ = timed(lambda: client.get(f"/reports/?department={root + 1}"))
    res["csv"] = measured_download(client, "/reports/completion.csv")
    res["xlsx"] = measured_download(client, f"/reports/completion.xlsx?department={root + 1}")
    res["pdf"] = evidence_pdf(app)
    with app.app_context():
        db.engine.dispose()
    return res


def evidence_pdf(app: Flask) -> tuple[float, float, int] | str:
    """One employee's evidence pack (an assignment per course) rendered and signed, if the
    evidence module is installed, twice (the first run also makes the signing key and
    loads the font): (first s, second s, bytes); else why not."""
    try:
        from lms.evidence.export import export_pack
    except ImportError as exc:
        return f"not measured ({exc})"
    with app.test_request_context():
        employee = db.session.scalar(sa.select(Employee).where(Employee.employee_no == "B000123"))
        try:
            first, _pack = timed(lambda: export_pack(db.session, employee, course_code=None,
                                                     actor=None, generated_by="bench"))
            db.session.rollback()
            second, pack = timed(lambda: export_pack(db.session, employee, course_code=None,
                                                     actor=None, generated_by="bench"))
        except Exception as exc:  # report, do not hide the other figures
            return f"not measured ({type(exc).__name__}: {exc})"
        finally:
            db.session.rollback()
        return first, second, len(pack.pdf)


def report(title: str, n: int, n_courses: int, res: dict) -> None:
    rows = res["rows"]
    head = res["head"]
    print(f"\n{title}: {n:,} employees × {n_courses} courses = "
          f"{rows['assignments']:,} assignments, {rows['enrolments']:,} enrolments")
    print(f"  {'seed (set-based)':<52} {res['seed']:8.2f} s")
    print(f"  {'dashboard: departments under the root (rolled up)':<52} "
          f"{res['dept_root'] * 1000:8.0f} ms")
    print(f"  {'dashboard: top level (the whole tree in one bar)':<52} "
          f"{res['dept_top'] * 1000:8.0f} ms")
    for key, label in (("headline", "dashboard: headline counts"),
                       ("courses", "dashboard: completion per course"),
                       ("overdue", "dashboard: overdue list (20 longest)"),
                       ("trend", "dashboard: 12-month trend"),
                       ("page", "dashboard page /reports/ (HTTP, all of it)"),
                       ("page_dept", "dashboard page of one division (HTTP)")):
        print(f"  {label:<52} {res[key] * 1000:8.0f} ms")
    print(f"    (required {head.required:,}, completed {head.completed:,}, "
          f"overdue {head.overdue:,}, rate {head.rate} %)")
    print(f"  {'KPI Sept. 2026, whole company':<52} {res['kpi_month']:8.2f} s"
          f"  ({res['kpi_people']:,} people)")
    print(f"  {'KPI per manager (roll-up)':<52} {res['kpi_teams'] * 1000:8.0f} ms"
          f"  ({res['kpi_team_count']:,} managers)")
    for key, label in (("csv", "full CSV export, streamed"),
                       ("xlsx", "XLSX export, one division")):
        d = res[key]
        print(f"  {label:<52} {d['s']:8.2f} s  {d['mb']:7.1f} MB in {d['chunks']:,} chunks")
        print(f"  {'':<52} peak memory: +{d['rss']:.1f} MB resident, "
              f"{d['py']:.1f} MB Python (tracemalloc)")
    pdf = res["pdf"]
    if isinstance(pdf, tuple):
        label = f"evidence PDF, one employee ({n_courses} courses), signed"
        print(f"  {label:<52} {pdf[1]:8.2f} s"
              f"  {pdf[2] / 1024:7.0f} KB  (first run, with key and font set-up: "
              f"{pdf[0]:.2f} s)")
    else:
        print(f"  {'evidence PDF':<52} {pdf}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50_000, help="employees (default 50,000)")
    ap.add_argument("--courses", type=int, default=20, help="courses (default 20)")
    ap.add_argument("--postgres", action="store_true", help="run on PostgreSQL")
    ap.add_argument("--explain", action="store_true", help="print the query plans")
    args = ap.parse_args()
    env_url = os.environ.get("DATABASE_URL", "")
    if args.postgres or env_url.startswith(("postgres://", "postgresql")):
        base = env_url if env_url.startswith(("postgres://", "postgresql")) else PG
        with pg_schemas(base, 1) as urls:
            report("PostgreSQL", args.n, args.courses,
                   run(urls[0], args.n, args.courses, args.explain))
        return
    with tempfile.TemporaryDirectory() as tmp:
        report("SQLite (WAL)", args.n, args.courses,
               run(f"sqlite:///{tmp}/reports.sqlite3", args.n, args.courses, args.explain))


if __name__ == "__main__":
    main()
