"""Bulk evidence: a store (20 people) and a whole division (100 people) exported as one
ZIP of signed PDFs plus index.csv, by the same job the web page queues, run in this
process. Time per pack, ZIP size, and the resident set's growth during each export: in
constant memory the division's growth stays near the store's although it holds five
times the packs.

    .venv/bin/python bench/bulk_evidence.py [--n 2000] [--courses 3]             # SQLite
    .venv/bin/python bench/bulk_evidence.py --postgres [--n 2000] [--courses 3]  # PostgreSQL

The data is bench/reports.py's (employees spread over 100 stores, each with N courses
assigned and most completed).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from _seed import PG, pg_schemas, timed
from reports import RssSampler, seed
from sqlalchemy import select

from lms.app import create_app
from lms.evidence.bulk import start_bulk_export
from lms.extensions import db
from lms.jobs.backends import run_now
from lms.jobs.models import BackgroundJob
from lms.people.models import Department, User


def export(code: str) -> dict[str, float]:
    session = db.session
    department = session.scalar(select(Department).where(Department.code == code))
    actor = session.scalar(select(User).where(User.username == "bench-hr"))
    job = start_bulk_export(session, department=department, course=None, actor=actor,
                            generated_by="bench")
    session.commit()
    job_id, total = job.id, job.progress_total
    with RssSampler() as sampler:
        seconds, outcome = timed(lambda: run_now(job_id))
    session.expire_all()
    job = session.get(BackgroundJob, job_id)
    assert outcome == "done" and job.status == "done", (outcome, job.status, job.error)
    return {"people": total, "seconds": seconds, "zip_mb": job.result_bytes / 2**20,
            "rss_mb": sampler.growth_mb}


def run(url: str, jobs_dir: str, n: int, n_courses: int) -> dict[str, dict[str, float]]:
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "JOBS_DIR": jobs_dir})
    with app.app_context():
        seed(n, n_courses)
        export("BENCH-19-4")  # warm-up: signing key, font, templates
        res = {"store": export("BENCH-00-0"), "division": export("BENCH-00")}
        db.session.remove()
        db.engine.dispose()
    return res


def report(title: str, n_courses: int, res: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}: bulk evidence ZIP ({n_courses} courses per person)")
    for key, label in (("store", "one store"), ("division", "one division (5 stores)")):
        r = res[key]
        print(f"  {label:<26} {int(r['people']):>4} packs  {r['seconds']:7.1f} s  "
              f"{r['seconds'] / r['people']:5.2f} s/pack  ZIP {r['zip_mb']:6.1f} MB  "
              f"resident set +{r['rss_mb']:.1f} MB")
    ratio = res["division"]["rss_mb"] / max(res["store"]["rss_mb"], 0.1)
    print(f"  {'memory growth division / store':<26} {ratio:.1f}x for "
          f"{res['division']['people'] / res['store']['people']:.0f}x the packs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="employees (default 2,000)")
    ap.add_argument("--courses", type=int, default=3, help="courses per person (default 3)")
    ap.add_argument("--postgres", action="store_true", help="run on PostgreSQL")
    args = ap.parse_args()
    env_url = os.environ.get("DATABASE_URL", "")
    with tempfile.TemporaryDirectory() as tmp:
        jobs = str(Path(tmp) / "jobs")
        if args.postgres or env_url.startswith(("postgres://", "postgresql")):
            base = env_url if env_url.startswith(("postgres://", "postgresql")) else PG
            with pg_schemas(base, 1) as urls:
                report("PostgreSQL", args.courses, run(urls[0], jobs, args.n, args.courses))
            return
        report("SQLite (WAL)", args.courses,
               run(f"sqlite:///{tmp}/bulk.sqlite3", jobs, args.n, args.courses))


if __name__ == "__main__":
    main()
