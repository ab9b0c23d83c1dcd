"""Concurrent appenders on real connections: the chain never forks, skips or repeats.

Each worker thread pushes its own app context, so Flask-SQLAlchemy gives it its own
session and its own pooled connection. Runs on SQLite (file database in WAL mode with the
app's busy_timeout) and on PostgreSQL (``DATABASE_URL``).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

from sqlalchemy import func, select

from lms.extensions import db
from lms.ledger import LedgerEntry, LedgerHead, append, verify

THREADS = 8
PER_THREAD = 25


def run_together(app, workers: list[Callable[[], object]], timeout: float = 120) -> list:
    """Run each worker in its own thread and app context, released together by a barrier.

    Every thread removes its session (returning its connection to the pool) however it
    ends; the first failure in any thread is re-raised here, in the test's thread.
    """
    barrier = threading.Barrier(len(workers))

    def run(work: Callable[[], object]) -> object:
        with app.app_context():
            try:
                barrier.wait(timeout=30)
                return work()
            except BaseException:
                barrier.abort()  # never leave the others waiting for a dead thread
                db.session.rollback()
                raise
            finally:
                db.session.remove()

    # The test's own session must hold no transaction (SQLite: no lock) while they run.
    db.session.commit()
    pool = ThreadPoolExecutor(max_workers=len(workers))
    futures = [pool.submit(run, work) for work in workers]
    _, hung = wait(futures, timeout=timeout)
    pool.shutdown(wait=not hung, cancel_futures=True)
    assert not hung, f"{len(hung)} worker thread(s) still running after {timeout}s"
    errors = [f.exception() for f in futures if f.exception() is not None]
    # Re-raise the cause, not the broken barrier it left the other workers with.
    errors.sort(key=lambda exc: isinstance(exc, threading.BrokenBarrierError))
    if errors:
        raise errors[0]
    db.session.expire_all()
    return [f.result() for f in futures]


def all_entries() -> list[LedgerEntry]:
    return list(db.session.scalars(select(LedgerEntry).order_by(LedgerEntry.seq)))


def test_eight_threads_appending_at_once_build_one_gapless_chain(app, people):
    actor_id = people.user("auditor1", "auditor").id  # plain int: threads share no objects

    def appender(worker: int) -> Callable[[], list[int]]:
        def work() -> list[int]:
            seqs = []
            for i in range(PER_THREAD):
                entry = append(db.session, kind="test.concurrent", subject=f"worker:{worker}",
                               payload={"worker": worker, "i": i}, actor_id=actor_id)
                db.session.commit()
                seqs.append(entry.seq)
            return seqs
        return work

    results = run_together(app, [appender(w) for w in range(THREADS)])

    total = THREADS * PER_THREAD
    entries = all_entries()
    assert [e.seq for e in entries] == list(range(1, total + 1))
    assert len({e.prev_hash for e in entries}) == total
    assert len({e.hash for e in entries}) == total
    # Each worker got 25 distinct numbers, in the order it committed them.
    for worker, seqs in enumerate(results):
        assert len(seqs) == PER_THREAD and seqs == sorted(seqs)
        mine = [e for e in entries if e.subject == f"worker:{worker}"]
        assert [e.seq for e in mine] == seqs
        assert [json.loads(e.payload)["i"] for e in mine] == list(range(PER_THREAD))
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.hash
    head = db.session.execute(select(LedgerHead.seq, LedgerHead.hash)).one()
    assert tuple(head) == (total, entries[-1].hash)
    check = verify(db.session)
    assert check.ok, check
    assert check.count == total


def test_second_open_transaction_waits_for_the_first_instead_of_forking(app):
    first_appended = threading.Event()
    times: dict[str, float] = {}

    def first() -> int:
        entry = append(db.session, kind="test.first", subject="slow", payload={"n": 1})
        seq = entry.seq
        first_appended.set()
        time.sleep(1.0)  # hold the transaction open
        times["first_commits"] = time.monotonic()
        db.session.commit()
        return seq

    def second() -> int:
        assert first_appended.wait(timeout=30)
        times["second_starts"] = time.monotonic()
        entry = append(db.session, kind="test.second", subject="fast", payload={"n": 2})
        times["second_appended"] = time.monotonic()
        seq = entry.seq
        db.session.commit()
        return seq

    first_seq, second_seq = run_together(app, [first, second])

    assert (first_seq, second_seq) == (1, 2)
    # The second append could only claim its number once the first had committed.
    assert times["second_appended"] >= times["first_commits"]
    assert times["second_appended"] - times["second_starts"] >= 0.5
    one, two = all_entries()
    assert (one.kind, two.kind) == ("test.first", "test.second")
    assert one.prev_hash == "0" * 64
    assert two.prev_hash == one.hash
    assert verify(db.session).ok


def test_rolled_back_concurrent_append_leaves_no_gap(app):
    """A transaction that appends and then rolls back gives its number back."""
    first_appended = threading.Event()

    def doomed() -> None:
        append(db.session, kind="test.doomed", subject="x", payload={})
        first_appended.set()
        time.sleep(0.5)
        db.session.rollback()

    def survivor() -> int:
        assert first_appended.wait(timeout=30)
        entry = append(db.session, kind="test.kept", subject="y", payload={})
        db.session.commit()
        return entry.seq

    _, kept_seq = run_together(app, [doomed, survivor])

    assert kept_seq == 1
    assert [(e.seq, e.kind) for e in all_entries()] == [(1, "test.kept")]
    assert verify(db.session).ok


def test_verify_running_while_others_append_never_reports_a_false_break(app):
    """An auditor's check during working hours must not cry wolf over a fresh append."""
    appenders_done = threading.Event()
    remaining = [4]
    lock = threading.Lock()

    def appender(worker: int) -> Callable[[], None]:
        def work() -> None:
            try:
                for i in range(PER_THREAD):
                    append(db.session, kind="test.busy", subject=f"worker:{worker}",
                           payload={"i": i})
                    db.session.commit()
            finally:
                with lock:
                    remaining[0] -= 1
                    if remaining[0] == 0:
                        appenders_done.set()
        return work

    def verifier() -> int:
        runs = 0
        while True:
            done = appenders_done.is_set()
            check = verify(db.session)
            db.session.rollback()
            assert check.ok, check
            runs += 1
            if done:
                return runs

    *_, runs = run_together(app, [appender(w) for w in range(4)] + [verifier])

    assert runs >= 1
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == 4 * PER_THREAD
    assert verify(db.session).ok
