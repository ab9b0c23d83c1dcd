"""Heartbeats per second through a real WSGI server, next to a bare Flask single-row write.

    .venv/bin/python bench/heartbeat.py [--beats 5000] [--threads 4] [--learners 40]

For SQLite (a fresh migrated file) and then PostgreSQL (a fresh schema in the local
`test` database, dropped afterwards; BENCH_PG_URL overrides), it starts
``gunicorn -w 2 'wsgi:app'`` on a free 127.0.0.1 port, logs N learners in over HTTP,
opens a playback session for each, and sends ``--beats`` honest heartbeats (positions
advancing with the wall clock, so they are credited: the normal hot path) from
``--threads`` client threads. Then it serves bench/heartbeat_bare.py the same way and
sends as many bare single-row writes. It prints both rates and their ratio, and stops.
Only 127.0.0.1 is contacted; the number of requests is bounded.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import quote, urlencode

import sqlalchemy as sa
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SECRET_KEY", "bench-" + "x" * 40)
os.environ.setdefault("ID_NUMBER_KEY", Fernet.generate_key().decode())

from flask_migrate import upgrade  # noqa: E402

from courses.models import (  # noqa: E402
    Course,
    CourseVersion,
    Enrollment,
    Lesson,
    LessonProgress,
    MediaAsset,
    WatchRejection,
)
from lms.app import create_app  # noqa: E402
from lms.auth.passwords import hash_password  # noqa: E402
from lms.config import normalize_database_url  # noqa: E402
from lms.dbtypes import utcnow  # noqa: E402
from lms.extensions import db  # noqa: E402
from lms.people.models import Department, Employee, User  # noqa: E402

PG = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
GUNICORN = str(Path(sys.executable).parent / "gunicorn")
PASSWORD = "bench-password-123"  # noqa: S105 - throwaway bench users
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
DATA_CSRF_RE = re.compile(r'data-csrf="([^"]+)"')


# --- setup ----------------------------------------------------------------------------


def prepare(url: str, learners: int) -> int:
    """Migrate, seed N learners enrolled on a one-hour video lesson; return its id."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        import logging

        logging.getLogger("alembic").setLevel(logging.WARNING)
        upgrade()
        dept = Department(code="BENCH", name="压测部")
        course = Course(code="BENCH-01", title_zh="压测课程", risk_topic="other")
        version = CourseVersion(course=course, number=1, status="draft")
        # Heartbeats never touch the file, only its duration: a row is enough.
        media = MediaAsset(storage_key="bench-none.webm", sha256="0" * 64, size_bytes=0,
                           content_type="video/webm", duration_seconds=3600.0,
                           original_filename="bench.webm")
        db.session.add_all([dept, course, version, media])
        db.session.flush()
        lesson = Lesson(version=version, position=1, kind="video", title="压测视频", media=media)
        db.session.add(lesson)
        db.session.flush()
        version.status, version.content_hash, version.published_at = "published", "b" * 64, utcnow()
        password_hash = hash_password(PASSWORD)
        for i in range(learners):
            emp = Employee(employee_no=f"B{i:05d}", name=f"学员{i}", department=dept,
                           hire_date=date(2024, 1, 1))
            user = User(username=f"learner{i}", display_name=f"学员{i}",
                        password_hash=password_hash, employee=emp)
            user.set_roles({"trainee"})
            db.session.add_all([emp, user])
            db.session.flush()
            db.session.add(Enrollment(user_id=user.id, version_id=version.id, source="manual"))
        db.session.commit()
        lesson_id = lesson.id
        with db.engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE bench_rows (id INTEGER PRIMARY KEY, seq INTEGER, "
                                 "position FLOAT, body TEXT)")
            conn.execute(sa.text("INSERT INTO bench_rows (id, seq, position, body) "
                                 "VALUES (:id, 0, 0, '[]')"),
                         [{"id": i} for i in range(learners)])
        db.session.remove()
        db.engine.dispose()
    return lesson_id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """gunicorn -w 2 on 127.0.0.1, stopped (by its own pid) on exit."""

    def __init__(self, target: str, env: dict[str, str], log: Path,
                 extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.log = log
        self.args = [GUNICORN, "-w", "2", "-b", f"127.0.0.1:{self.port}", *extra, target]
        self.env = {**os.environ, **env}
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                self.args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited; see {self.log}:\n{self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("gunicorn did not start listening")

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- HTTP client ------------------------------------------------------------------------


@dataclass
class Learner:
    index: int
    cookie: str = ""
    csrf: str = ""
    token: str = ""
    seq: int = 0
    t0: float | None = None


def _cookie(resp: http.client.HTTPResponse, old: str) -> str:
    for header in resp.headers.get_all("Set-Cookie") or []:
        if header.startswith("lms_session="):
            return header.split(";", 1)[0]
    return old


def request(conn: http.client.HTTPConnection, method: str, path: str, *,
            body: str | None = None, headers: dict[str, str] | None = None
            ) -> tuple[http.client.HTTPResponse, bytes]:
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    return resp, resp.read()


def log_in(port: int, learner: Learner, lesson_id: int) -> None:
    """Log in as a browser would, open the lesson page and start a playback session."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    resp, body = request(conn, "GET", "/login")
    learner.cookie = _cookie(resp, "")
    csrf = CSRF_RE.search(body.decode()).group(1)
    form = urlencode({"csrf_token": csrf, "username": f"learner{learner.index}",
                      "password": PASSWORD})
    resp, _ = request(conn, "POST", "/login", body=form, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": learner.cookie})
    assert resp.status == 302, f"login failed: {resp.status}"
    learner.cookie = _cookie(resp, learner.cookie)
    resp, body = request(conn, "GET", f"/learning/lessons/{lesson_id}",
                         headers={"Cookie": learner.cookie})
    assert resp.status == 200, f"lesson page: {resp.status}"
    learner.cookie = _cookie(resp, learner.cookie)
    learner.csrf = DATA_CSRF_RE.search(body.decode()).group(1)
    resp, body = request(conn, "POST", f"/learning/lessons/{lesson_id}/session", headers={
        "Cookie": learner.cookie, "X-CSRFToken": learner.csrf})
    assert resp.status == 200, f"session: {resp.status} {body[:200]!r}"
    learner.cookie = _cookie(resp, learner.cookie)
    learner.token = json.loads(body)["session"]
    conn.close()


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    errors: int = 0


def drive(port: int, learners: list[Learner], total: int, threads: int, kind: str,
          tally: Tally | None = None) -> float:
    """Send ``total`` requests from ``threads`` threads (each owning some learners, so a
    learner's beats stay in order); return the elapsed seconds."""
    tally = tally if tally is not None else Tally()
    lock = threading.Lock()
    groups = [learners[k::threads] for k in range(threads)]
    per_thread = [total // threads + (1 if k < total % threads else 0) for k in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine, lat, outcomes, errors = groups[k], [], {}, 0
        barrier.wait()
        for i in range(per_thread[k]):
            learner = mine[i % len(mine)]
            learner.seq += 1
            now = time.monotonic()
            if learner.t0 is None:
                learner.t0 = now
            position = f"{max(0.0, now - learner.t0 - 0.05):.3f}"
            if kind == "beat":
                path = "/learning/beat"
                form = {"session": learner.token, "seq": learner.seq, "position": position,
                        "event": "tick", "csrf_token": learner.csrf}
                headers = {"Cookie": learner.cookie}
            elif kind == "floor":
                path = "/bench/noop"
                form = {"session": learner.token, "seq": learner.seq, "position": position,
                        "event": "tick", "csrf_token": learner.csrf}
                headers = {"Cookie": learner.cookie}
            else:
                path = "/write"
                form = {"row": learner.index, "seq": learner.seq, "position": position}
                headers = {}
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            start = time.perf_counter()
            try:
                resp, body = request(conn, "POST", path, body=urlencode(form), headers=headers)
            except (OSError, http.client.HTTPException):
                conn.close()
                errors += 1
                continue
            lat.append(time.perf_counter() - start)
            if resp.status != 200:
                errors += 1
                continue
            if kind == "beat":
                verdict = json.loads(body).get("rejected") or "accepted"
                outcomes[verdict] = outcomes.get(verdict, 0) + 1
        conn.close()
        with lock:
            tally.latencies.extend(lat)
            tally.errors += errors
            for key, n in outcomes.items():
                tally.outcomes[key] = tally.outcomes.get(key, 0) + n

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in pool:
        t.join()
    return time.perf_counter() - start


def describe(tally: Tally) -> str:
    lat = sorted(tally.latencies)
    if not lat:
        return "no responses"
    p50 = statistics.median(lat) * 1000
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
    extra = f", outcomes {tally.outcomes}" if tally.outcomes else ""
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, errors {tally.errors}{extra}"


def run(name: str, url: str, tmp: Path, args) -> dict[str, float]:
    """Serve the app, the bare endpoint and the app floor side by side (idle servers cost
    nothing) and send them the same load in interleaved rounds, so that a change in the
    machine's load during the run affects all three alike."""
    lesson_id = prepare(url, args.learners)
    log = tmp / "gunicorn.log"
    app_env = {"DATABASE_URL": url, "MEDIA_ROOT": str(tmp / "media"), "LMS_DEBUG": "0"}
    bench_path = ("--pythonpath", str(ROOT / "bench"))
    learners = [Learner(i) for i in range(args.learners)]
    with Server("wsgi:app", app_env, log) as app_server, \
            Server("heartbeat_bare:app", {"BENCH_DB_URL": normalize_database_url(url)}, log,
                   bench_path) as bare_server, \
            Server("heartbeat_floor:app", app_env, log, bench_path) as floor_server:
        for learner in learners:
            log_in(app_server.port, learner, lesson_id)
        targets = {"beat": app_server.port, "write": bare_server.port,
                   "floor": floor_server.port}
        for kind, port in targets.items():  # warm up every worker
            drive(port, learners, args.learners * 5, args.threads, kind)
        tallies = {kind: Tally() for kind in targets}
        seconds = dict.fromkeys(targets, 0.0)
        per_round = args.beats // args.rounds
        for _round in range(args.rounds):
            for kind, port in targets.items():
                seconds[kind] += drive(port, learners, per_round, args.threads, kind,
                                       tallies[kind])
    rates = {kind: per_round * args.rounds / s for kind, s in seconds.items()}

    # What the beats did, read back from the database.
    engine = sa.create_engine(normalize_database_url(url))
    with engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.sum(LessonProgress.session_beats),
                                        sa.func.sum(LessonProgress.watched_seconds))).one()
        rejected = conn.execute(sa.select(sa.func.count()).select_from(WatchRejection)).scalar()
    engine.dispose()

    n = per_round * args.rounds
    print(f"\n{name}: {n} requests of each kind in {args.rounds} interleaved rounds, "
          f"{args.threads} client threads, {args.learners} learners, gunicorn -w 2")
    print(f"  heartbeats/s                {rates['beat']:7.0f}   ({describe(tallies['beat'])})")
    print(f"  bare Flask 1-row UPDATE/s   {rates['write']:7.0f}   ({describe(tallies['write'])})")
    print(f"  app floor (no-op POST)/s    {rates['floor']:7.0f}   ({describe(tallies['floor'])})")
    print(f"  ratio heartbeat / bare      {rates['beat'] / rates['write']:7.2f}")
    print(f"  ratio heartbeat / app floor {rates['beat'] / rates['floor']:7.2f}")
    print(f"  stored: {stored[0]} accepted beats, {stored[1]:.0f} s credited, "
          f"{rejected} rejections logged")
    return rates


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--beats", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--learners", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--skip-postgres", action="store_true")
    args = ap.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["SQLite"] = run("SQLite (WAL)", f"sqlite:///{tmp}/bench.sqlite3", Path(tmp), args)

    if not args.skip_postgres:
        schema = f"bench_hb_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(PG)
        try:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        except sa.exc.OperationalError as exc:
            print(f"\nPostgreSQL not reachable ({exc.__class__.__name__}); skipped")
        else:
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    url = f"{PG}?options={quote(f'-csearch_path={schema}')}"
                    results["PostgreSQL"] = run("PostgreSQL", url, Path(tmp), args)
            finally:
                with admin.begin() as conn:
                    conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()

    print("\nsummary        heartbeats/s  bare writes/s  ratio   app floor/s  beat/floor")
    for name, r in results.items():
        print(f"  {name:<12} {r['beat']:12.0f} {r['write']:14.0f} {r['beat'] / r['write']:6.2f} "
              f"{r['floor']:13.0f} {r['beat'] / r['floor']:11.2f}")


if __name__ == "__main__":
    main()
