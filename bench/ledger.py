"""Ledger append and verify costs, against a plain-insert baseline in the same run.

    .venv/bin/python bench/ledger.py [--n 2000] [--threads 4]

Runs on a fresh SQLite file and, if reachable, on PostgreSQL (BENCH_PG_URL, default the
local `test` database, in a private schema dropped afterwards). Each append is its own
committed transaction, as in the app, so the figure includes the head-row lock and commit.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from urllib.parse import quote

import sqlalchemy as sa
from cryptography.fernet import Fernet

os.environ.setdefault("SECRET_KEY", "bench-" + "x" * 40)
os.environ.setdefault("ID_NUMBER_KEY", Fernet.generate_key().decode())

from flask_migrate import upgrade

from lms.app import create_app
from lms.extensions import db
from lms.ledger import append, verify

PG = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(url: str, n: int, threads: int) -> dict[str, float]:
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    results: dict[str, float] = {}
    with app.app_context():
        import logging

        logging.getLogger("alembic").setLevel(logging.WARNING)
        upgrade()
        with db.engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE bench_plain (id INTEGER PRIMARY KEY, body TEXT)")

        def baseline() -> None:
            for i in range(n):
                db.session.execute(sa.text("INSERT INTO bench_plain (id, body) VALUES (:i, :b)"),
                                   {"i": i, "b": f'{{"n":{i}}}'})
                db.session.commit()

        def sequential() -> None:
            for i in range(n):
                append(db.session, kind="bench.seq", subject=f"bench:{i}", payload={"n": i})
                db.session.commit()

        def concurrent() -> None:
            errors: list[BaseException] = []
            barrier = threading.Barrier(threads)

            def worker(k: int) -> None:
                try:
                    with app.app_context():
                        barrier.wait()
                        for i in range(n // threads):
                            append(db.session, kind="bench.par", subject=f"bench:{k}:{i}",
                                   payload={"k": k, "i": i})
                            db.session.commit()
                        db.session.remove()
                except BaseException as exc:  # re-raised below
                    errors.append(exc)

            pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
            if errors:
                raise errors[0]

        results["plain insert+commit, per row (ms)"] = timed(baseline) / n * 1000
        results["ledger append+commit, per entry (ms)"] = timed(sequential) / n * 1000
        results[f"ledger append, {threads} threads, per entry (ms)"] = timed(concurrent) / n * 1000
        check_time = []
        for _ in range(3):
            start = time.perf_counter()
            check = verify(db.session)
            check_time.append(time.perf_counter() - start)
            assert check.ok, check
        results[f"verify {check.count} entries (ms)"] = statistics.median(check_time) * 1000
        db.session.remove()
        db.engine.dispose()
    return results


def report(name: str, res: dict[str, float]) -> None:
    print(f"\n{name}")
    for key, value in res.items():
        print(f"  {key:<48} {value:10.3f}")
    keys = list(res)
    print(f"  {'ratio ledger append / plain insert':<48} {res[keys[1]] / res[keys[0]]:10.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report(f"SQLite (WAL), n={args.n}", run(f"sqlite:///{tmp}/bench.sqlite3", args.n, args.threads))
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except sa.exc.OperationalError as exc:
        print(f"\nPostgreSQL not reachable ({exc.__class__.__name__}); skipped")
        return
    try:
        url = f"{PG}?options={quote(f'-csearch_path={schema}')}"
        report(f"PostgreSQL, n={args.n}", run(url, args.n, args.threads))
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


if __name__ == "__main__":
    main()
