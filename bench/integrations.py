"""The integrations API on a company of N employees, through the real HTTP layer (Flask
test client: token check, rate-limit count, validation, call log):

- a cheap authenticated call (GET /api/v1/token) against an unauthenticated one
  (GET /api/v1/openapi.json is not logged either) — what auth + rate limit + log cost;
- an HR batch upsert of 1,000 new employees, the same batch again (all unchanged, no
  write), and 1,000 position changes (the engine runs for the changed people);
- one signed HR webhook change, at N employees and at 1,000 (it loads the lookups of
  the whole company, like the CSV import: the ratio shows how that grows);
- one risk signal on the whole company (every active person gets an assignment).

    .venv/bin/python bench/integrations.py [--n 50000]             # SQLite
    .venv/bin/python bench/integrations.py --postgres [--n 50000]  # PostgreSQL
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime

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

from integrations.risk.models import RiskType, RiskTypeCourse
from integrations.signing import sign
from integrations.tokens import issue_token
from lms.app import create_app
from lms.compliance.models import Assignment, AssignmentRule, RuleDepartment, RulePosition
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.people.models import Position

SECRET = "bench-webhook-secret-0123456789"  # noqa: S105 - a throwaway bench database


def seed(n: int) -> dict[str, object]:
    migrate_quietly()
    session = db.session
    root, leaves = department_tree(session)
    positions = [Position(code=f"P{i}", name=name)
                 for i, name in enumerate(("店长", "收银员", "理货员"))]
    session.add_all(positions)
    session.flush()
    now = utcnow()
    bulk_employees(session, n, now, lambda i: {"department_id": leaves[i % len(leaves)].id,
                                               "position_id": positions[1].id})
    logins_for_all(session, now)
    course = published_course(session, "BENCH-STORE", "门店经理风险防控", now)
    rule = AssignmentRule(name="店长必修", course_id=course.id, due_working_days=10,
                          effective_from=now.date())
    session.add(rule)
    session.flush()
    session.add(RuleDepartment(rule_id=rule.id, department_id=root.id))
    session.add(RulePosition(rule_id=rule.id, position_id=positions[0].id))
    risk_course = published_course(session, "BENCH-SI", "社会保险缴纳", now)
    risk = RiskType(code="social_insurance_gap", name_zh="社保缴纳缺口",
                    name_en="Social insurance gap")
    session.add(risk)
    session.flush()
    session.add(RiskTypeCourse(risk_type_id=risk.id, course_id=risk_course.id,
                               due_working_days=10))
    token = issue_token(session, name="bench", actor_id=None,
                        scopes=["hr:write", "hr:read", "risk:write"])
    session.commit()
    return {"token": token.secret, "leaf": leaves[0].code}


def rows(start: int, count: int, leaf: str, position: str) -> list[dict[str, object]]:
    return [{"employee_no": f"N{i:06d}", "name": f"新员工{i}", "department": leaf,
             "position": position, "status": "在职", "hire_date": "2026-11-30"}
            for i in range(start, start + count)]


def median_ms(fn, times: int = 100) -> float:
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def webhook(client, leaf: str, no: str, status: str) -> float:
    body = json.dumps({"event": "employee.changed", "employee": {
        "employee_no": no, "name": "赵新人", "department": leaf, "status": status,
        "hire_date": "2026-11-30"}}, ensure_ascii=False).encode()
    ts = int(datetime.now(UTC).timestamp())
    start = time.perf_counter()
    resp = client.post("/api/v1/hr/webhook", data=body, content_type="application/json",
                       headers={"X-Timestamp": str(ts),
                                "X-Signature": sign(SECRET.encode(), ts, body)})
    elapsed = time.perf_counter() - start
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return elapsed


def webhooks(client, leaf: str) -> float:
    """Median of ten signed changes (the first of a process pays for warming up)."""
    return statistics.median(webhook(client, leaf, f"N{i:06d}", "自离") for i in range(10))


def run(url: str, n: int) -> dict[str, float]:
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "HR_WEBHOOK_SECRET": SECRET,
                      "API_RATE_LIMIT_PER_MINUTE": 10**9})
    res: dict[str, float] = {}
    with app.app_context():
        res["seed"], seeded = timed(lambda: seed(n))
        client = app.test_client()
        auth = {"Authorization": f"Bearer {seeded['token']}"}
        leaf = str(seeded["leaf"])
        res["doc_ms"] = median_ms(lambda: client.get("/api/v1/openapi.json"), 20)
        res["whoami_ms"] = median_ms(lambda: client.get("/api/v1/token", headers=auth))

        def batch(payload):
            resp = client.post("/api/v1/hr/employees/batch", json={"employees": payload},
                               headers=auth)
            assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
            return resp.get_json()

        res["batch_new"], out = timed(lambda: batch(rows(0, 1000, leaf, "P1")))
        assert out["created"] == 1000, out
        res["batch_same"], out = timed(lambda: batch(rows(0, 1000, leaf, "P1")))
        assert out["unchanged"] == 1000, out
        res["batch_moved"], out = timed(lambda: batch(rows(0, 1000, leaf, "P0")))
        assert out["updated"] == 1000, out
        res["webhook"] = webhooks(client, leaf)

        def signal():
            resp = client.post("/api/v1/risk/signals", headers=auth, json={
                "scope": {"kind": "department", "code": "BENCH"},
                "risk_type": "social_insurance_gap", "severity": "high"})
            assert resp.status_code == 201, resp.get_data(as_text=True)[:500]
            return resp.get_json()

        res["signal"], out = timed(signal)
        res["signal_assigned"] = out["assigned"]
        res["assignments"] = db.session.query(Assignment).count()
        db.session.remove()
        db.engine.dispose()
    return res


def small_webhook(url: str) -> float:
    """The same webhook call on a company of 1,000 (the baseline for the ratio)."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "HR_WEBHOOK_SECRET": SECRET})
    with app.app_context():
        seeded = seed(1000)
        client = app.test_client()
        client.post("/api/v1/hr/employees/batch", json={"employees": rows(
            0, 10, str(seeded["leaf"]), "P1")},
            headers={"Authorization": f"Bearer {seeded['token']}"})
        elapsed = webhooks(client, str(seeded["leaf"]))
        db.session.remove()
        db.engine.dispose()
    return elapsed


def report(title: str, n: int, res: dict[str, float], small: float) -> None:
    print(f"\n{title}, {n:,} employees")
    print(f"  {'seed (bulk)':<58} {res['seed']:8.2f} s")
    print(f"  {'GET /api/v1/openapi.json (no auth, not logged), median':<58} "
          f"{res['doc_ms']:8.2f} ms")
    print(f"  {'GET /api/v1/token (auth + rate limit + call log), median':<58} "
          f"{res['whoami_ms']:8.2f} ms")
    print(f"  {'HR batch: 1,000 new employees':<58} {res['batch_new']:8.2f} s")
    print(f"  {'HR batch: the same 1,000 again (unchanged, nothing written)':<58} "
          f"{res['batch_same']:8.2f} s")
    print(f"  {'HR batch: 1,000 position changes (+ engine for them)':<58} "
          f"{res['batch_moved']:8.2f} s")
    print(f"  {'HR webhook: one change (median of 10)':<58} {res['webhook'] * 1000:8.1f} ms"
          f"   (at 1,000 employees: {small * 1000:.1f} ms, ratio {res['webhook'] / small:.1f}x)")
    print(f"  {'risk signal on the whole company':<58} {res['signal']:8.2f} s"
          f"   ({int(res['signal_assigned']):,} assigned, "
          f"{res['signal_assigned'] / res['signal']:,.0f}/s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50_000, help="employees (default 50,000)")
    ap.add_argument("--postgres", action="store_true", help="run on PostgreSQL")
    args = ap.parse_args()
    env_url = os.environ.get("DATABASE_URL", "")
    if args.postgres or env_url.startswith(("postgres://", "postgresql")):
        base = env_url if env_url.startswith(("postgres://", "postgresql")) else PG
        with pg_schemas(base, 2) as urls:
            res = run(urls[0], args.n)
            report("PostgreSQL", args.n, res, small_webhook(urls[1]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        res = run(f"sqlite:///{tmp}/big.sqlite3", args.n)
        report("SQLite (WAL)", args.n, res, small_webhook(f"sqlite:///{tmp}/small.sqlite3"))


if __name__ == "__main__":
    main()
