"""Background jobs (lms.jobs): one worker at a time per job, progress and heartbeats,
a worker that dies mid-job and the next one that finishes it without redoing what was
done, the attempts cap, and the same job run by RQ on the real Redis of this machine
(a forked work horse) as by the table-polling worker.

The jobs here are test kinds that write numbered files into their job directory and
skip the ones already there, as a resumable job does; ``writes.log`` records every
write, so "nothing was done twice" is a fact on disk.
"""

from __future__ import annotations

import os
import signal
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update

from lms.dbtypes import utcnow
from lms.extensions import db
from lms.jobs import JobContext, JobFailed, LeaseLost, backends, register, store
from lms.jobs.models import BackgroundJob
from lms.jobs.runner import perform

# --- test job kinds ------------------------------------------------------------------------


def count_job(ctx: JobContext) -> None:
    """Write item-1 … item-N (skipping those on disk); with ``crash_after`` the first
    attempt dies like a killed process (SystemExit is no Exception) after that many."""
    n = int(ctx.params["n"])
    crash_after = ctx.params.get("crash_after")
    log = ctx.workdir / "writes.log"
    with (ctx.workdir / "pids.log").open("a") as fh:
        fh.write(f"{os.getpid()}\n")
    for i in range(1, n + 1):
        item = ctx.workdir / f"item-{i}"
        if item.exists():
            continue
        item.write_text(str(i))
        with log.open("a") as fh:
            fh.write(f"{i}\n")
        ctx.progress(i, n, f"item {i}")
        if crash_after and ctx.attempt == 1 and i == crash_after:
            raise SystemExit("killed")
    out = ctx.workdir / "out.txt"
    out.write_text(",".join(str(i) for i in range(1, n + 1)))
    ctx.set_result(out)


def flaky_job(ctx: JobContext) -> None:
    raise RuntimeError(f"disk full on attempt {ctx.attempt}")


def hopeless_job(ctx: JobContext) -> None:
    raise JobFailed("the department D9 no longer exists")


register("test.count", count_job)
register("test.flaky", flaky_job)
register("test.hopeless", hopeless_job)


@pytest.fixture
def jobs_app(app, tmp_path):
    """Jobs in this test's own directory, no Redis; the worker thread stopped after."""
    app.config.update(JOBS_DIR=str(tmp_path / "jobs"), REDIS_URL="")
    yield app
    assert backends.stop_inprocess(app)


def new_job(kind: str, **params) -> int:
    job = store.create(db.session, kind, params, requested_by=None)
    db.session.commit()
    return job.id


def reload(job_id: int) -> BackgroundJob:
    db.session.expire_all()
    return db.session.get(BackgroundJob, job_id)


def writes(app, job_id: int) -> list[int]:
    path = store.job_dir(store.JobSettings.from_app(app), job_id) / "writes.log"
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def go_stale(job_id: int, minutes: int = 10) -> None:
    """What time does to a dead worker's job: its heartbeat gets old."""
    db.session.execute(update(BackgroundJob).where(BackgroundJob.id == job_id)
                       .values(heartbeat_at=utcnow() - timedelta(minutes=minutes)))
    db.session.commit()


# --- claiming --------------------------------------------------------------------------------


def test_only_one_worker_holds_a_job_until_its_heartbeat_goes_stale(jobs_app):
    job_id = new_job("test.count", n=1)
    settings = store.JobSettings.from_app(jobs_app)
    now = utcnow()
    assert store.claim(db.engine, job_id, "A", settings=settings, now=now) == store.CLAIMED
    assert store.claim(db.engine, job_id, "B", settings=settings, now=now) == store.UNAVAILABLE
    with pytest.raises(LeaseLost):
        store.progress(db.engine, job_id, "B", 1, 2)
    store.progress(db.engine, job_id, "A", 1, 2, "half", now=now)
    later = now + settings.lease + timedelta(seconds=1)  # A went silent
    assert store.claim(db.engine, job_id, "B", settings=settings, now=later) == store.CLAIMED
    with pytest.raises(LeaseLost):  # A comes back: it may not report (nor finish)
        store.progress(db.engine, job_id, "A", 2, 2)
    job = reload(job_id)
    assert (job.status, job.attempts, job.worker) == ("running", 2, "B")
    assert (job.progress_done, job.progress_total, job.message) == (1, 2, "half")


# --- a job through the table-polling worker --------------------------------------------------


def test_worker_runs_a_job_with_progress_and_result(jobs_app):
    job_id = new_job("test.count", n=3)
    result = jobs_app.test_cli_runner().invoke(args=["lms", "worker", "--burst"])
    assert result.exit_code == 0, result.output
    assert "polling the background_jobs table" in result.output
    assert "(1 jobs run)" in result.output
    job = reload(job_id)
    assert (job.status, job.progress_done, job.progress_total, job.attempts) == ("done", 3, 3, 1)
    assert job.result_path == "out.txt" and job.result_bytes == 5
    assert job.finished_at is not None and job.worker is None
    assert writes(jobs_app, job_id) == [1, 2, 3]


def test_a_job_whose_worker_died_is_finished_by_the_next_worker_without_redoing_work(
        jobs_app):
    job_id = new_job("test.count", n=5, crash_after=2)
    with pytest.raises(SystemExit):
        perform(job_id)  # the worker process "dies" after item 2
    job = reload(job_id)
    assert (job.status, job.progress_done, job.attempts) == ("running", 2, 1)

    # a new worker starting now leaves it alone: its heartbeat is fresh (the worker may
    # just be slow)
    runner = jobs_app.test_cli_runner()
    assert runner.invoke(args=["lms", "worker", "--burst"]).exit_code == 0
    assert reload(job_id).status == "running"

    go_stale(job_id)
    result = runner.invoke(args=["lms", "worker", "--burst"])
    assert result.exit_code == 0, result.output
    assert f"1 interrupted jobs queued again: [{job_id}]" in result.output
    job = reload(job_id)
    assert (job.status, job.attempts, job.progress_done) == ("done", 2, 5)
    assert writes(jobs_app, job_id) == [1, 2, 3, 4, 5]  # 1 and 2 were not written again


def test_tick_requeues_a_job_whose_worker_died(jobs_app):
    job_id = new_job("test.count", n=3, crash_after=1)
    with pytest.raises(SystemExit):
        perform(job_id)
    go_stale(job_id)
    result = jobs_app.test_cli_runner().invoke(args=["lms", "tick"])
    assert "jobs: 1 interrupted jobs queued again, 0 out of attempts failed" in result.output
    job = reload(job_id)
    assert (job.status, job.worker) == ("queued", None)


def test_tick_removes_the_files_of_jobs_finished_long_ago(jobs_app):
    old, recent = new_job("test.count", n=1), new_job("test.count", n=1)
    runner = jobs_app.test_cli_runner()
    assert runner.invoke(args=["lms", "worker", "--burst"]).exit_code == 0
    db.session.execute(update(BackgroundJob).where(BackgroundJob.id == old)
                       .values(finished_at=utcnow() - timedelta(days=8)))
    db.session.commit()
    result = runner.invoke(args=["lms", "tick"])
    assert "files of 1 old jobs removed" in result.output, result.output
    settings = store.JobSettings.from_app(jobs_app)
    assert not store.job_dir(settings, old).exists()
    assert (store.job_dir(settings, recent) / "out.txt").exists()
    assert reload(old).status == "done"  # the row stays


def test_a_long_step_keeps_the_job_alive_with_heartbeats(jobs_app):
    job_id = new_job("test.count", n=1)
    settings = store.JobSettings.from_app(jobs_app)
    start = utcnow() - timedelta(minutes=5)
    assert store.claim(db.engine, job_id, "A", settings=settings, now=start) == store.CLAIMED
    store.heartbeat(db.engine, job_id, "A")  # a long step, no progress to report
    assert store.claim(db.engine, job_id, "B", settings=settings) == store.UNAVAILABLE
    assert store.requeue_stale(db.engine, settings=settings) == ([], [])
    with pytest.raises(LeaseLost):
        store.heartbeat(db.engine, job_id, "B")


def test_a_failing_job_is_tried_three_times_then_failed_with_its_error(jobs_app, client,
                                                                       people):
    job_id = new_job("test.flaky")
    result = jobs_app.test_cli_runner().invoke(args=["lms", "worker", "--burst"])
    assert result.exit_code == 0, result.output
    job = reload(job_id)
    assert (job.status, job.attempts) == ("failed", 3)
    assert job.error == "RuntimeError: disk full on attempt 3"
    assert job.finished_at is not None


def test_a_permanent_failure_is_not_retried(jobs_app):
    job_id = new_job("test.hopeless")
    assert perform(job_id) == "failed"
    job = reload(job_id)
    assert (job.status, job.attempts, job.error) == (
        "failed", 1, "the department D9 no longer exists")
    assert perform(job_id) == store.UNAVAILABLE  # finished is finished


def test_a_job_that_keeps_killing_its_worker_fails_after_three_attempts(jobs_app):
    job_id = new_job("test.count", n=3, crash_after=1)
    db.session.execute(update(BackgroundJob).where(BackgroundJob.id == job_id)
                       .values(attempts=2, status="running", worker="gone",
                               heartbeat_at=utcnow() - timedelta(minutes=10),
                               error="MemoryError"))
    db.session.commit()
    # attempt 3 of 3 died too
    assert store.claim(db.engine, job_id, "w3", settings=store.JobSettings.from_app(jobs_app)
                       ) == store.CLAIMED
    go_stale(job_id)
    result = jobs_app.test_cli_runner().invoke(args=["lms", "worker", "--burst"])
    assert f"1 interrupted jobs out of attempts, failed: [{job_id}]" in result.output
    job = reload(job_id)
    assert (job.status, job.attempts) == ("failed", 3)
    assert job.error.startswith("stopped after 3 attempts")
    assert "MemoryError" in job.error


def test_an_unknown_kind_fails_at_once(jobs_app):
    job_id = new_job("test.nobody-registered-this")
    assert perform(job_id) == "failed"
    assert "no job function is registered" in reload(job_id).error


# --- the web process's own worker thread ------------------------------------------------------


def test_enqueue_without_redis_runs_the_job_on_a_thread_of_this_process(jobs_app):
    import time

    job_id = new_job("test.count", n=2)
    backends.enqueue(jobs_app, job_id)
    deadline = time.monotonic() + 30
    while reload(job_id).status != "done":
        assert time.monotonic() < deadline, reload(job_id).status
        time.sleep(0.05)
    assert writes(jobs_app, job_id) == [1, 2]
    thread = jobs_app.extensions["jobs.thread"]
    assert thread.daemon and thread.name == "lms-jobs"


# --- RQ on the real Redis -------------------------------------------------------------------


@pytest.fixture
def rq_app(jobs_app):
    """REDIS_URL set, on a queue of this test's own whose keys are deleted afterwards;
    the signal handlers an RQ worker installs are put back."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    jobs_app.config.update(REDIS_URL="redis://127.0.0.1:6379/0",
                           RQ_QUEUE=f"lms-test-{uuid.uuid4().hex[:10]}")
    queue = backends.rq_queue(jobs_app)
    queue.connection.ping()
    yield jobs_app
    queue.delete(delete_jobs=True)
    keys = list(queue.connection.scan_iter(match=f"*{queue.name}*"))
    if keys:
        queue.connection.delete(*keys)
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def pids(app, job_id: int) -> list[int]:
    path = store.job_dir(store.JobSettings.from_app(app), job_id) / "pids.log"
    return [int(x) for x in path.read_text().split()]


def rq_worker(app):
    return backends.make_rq_worker(app, name=f"lms-test-{uuid.uuid4().hex[:8]}")


def test_rq_worker_runs_the_job_in_a_forked_work_horse(rq_app):
    job_id = new_job("test.count", n=3)
    backends.enqueue(rq_app, job_id)
    queue = backends.rq_queue(rq_app)
    assert queue.job_ids == [backends.rq_job_id(rq_app, job_id)]
    assert rq_worker(rq_app).work(burst=True)
    job = reload(job_id)
    assert (job.status, job.progress_done, job.attempts) == ("done", 3, 1)
    assert writes(rq_app, job_id) == [1, 2, 3]
    assert pids(rq_app, job_id) != [os.getpid()]  # a work horse did it
    assert queue.job_ids == []


def test_a_work_horse_that_dies_mid_job_is_resumed_by_the_next_rq_worker(rq_app):
    job_id = new_job("test.count", n=4, crash_after=2)
    backends.enqueue(rq_app, job_id)
    rq_worker(rq_app).work(burst=True)  # its horse dies after item 2
    job = reload(job_id)
    assert (job.status, job.attempts, job.progress_done) == ("running", 1, 2)
    assert backends.rq_queue(rq_app).job_ids == []  # RQ gave the message up

    go_stale(job_id)
    result = rq_app.test_cli_runner().invoke(args=["lms", "worker", "--burst"])
    assert result.exit_code == 0, result.output
    assert f"1 interrupted jobs queued again: [{job_id}]" in result.output
    assert "RQ worker" in result.output
    job = reload(job_id)
    assert (job.status, job.attempts) == ("done", 2)
    assert writes(rq_app, job_id) == [1, 2, 3, 4]
    assert len(set(pids(rq_app, job_id))) == 2 and os.getpid() not in pids(rq_app, job_id)


def test_a_failed_attempt_goes_back_on_the_rq_queue_until_the_cap(rq_app):
    job_id = new_job("test.flaky")
    backends.enqueue(rq_app, job_id)
    assert rq_worker(rq_app).work(burst=True)
    job = reload(job_id)
    assert (job.status, job.attempts, job.error) == (
        "failed", 3, "RuntimeError: disk full on attempt 3")
