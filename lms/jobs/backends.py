"""Where queued jobs are run.

With ``REDIS_URL`` set, ``enqueue`` puts the job id on an RQ queue and ``flask --app
wsgi lms worker`` runs an ``rq.Worker`` whose job function is ``runner.perform``.
Without it, the web process runs its jobs on a worker thread of its own (a daemon,
one per app and process, started on the first enqueue and ended after a quiet
minute), and ``lms worker`` polls the table. The job row is the truth either way: the
queue only says "look at job N", so a lost or doubled message costs nothing — the
claim decides who runs it.

A job whose worker died (a restart, a crash) is taken up again by the next worker to
start, by ``lms tick``, or — without Redis — by the web process when someone looks at
the job's page (``kick``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import datetime

from flask import Flask

from lms.extensions import db
from lms.jobs import runner, store

__all__ = ["enqueue", "kick", "make_rq_worker", "prune", "requeue_to_rq", "rq_queue",
           "run_now", "run_worker", "stop_inprocess", "sweep", "uses_redis"]

log = logging.getLogger("lms.jobs")

PERFORM = "lms.jobs.runner.perform"
DEFAULT_QUEUE = "lms"
IDLE_SECONDS = 60.0
POLL_SECONDS = 2.0
_lock = threading.Lock()


def uses_redis(app: Flask) -> bool:
    return bool(app.config.get("REDIS_URL"))


# --- RQ ---------------------------------------------------------------------------------


def _redis(app: Flask):
    from redis import Redis

    conn = app.extensions.get("jobs.redis")
    if conn is None:
        conn = Redis.from_url(app.config["REDIS_URL"])
        app.extensions["jobs.redis"] = conn
    return conn


def rq_queue(app: Flask):
    from rq import Queue

    return Queue(app.config.get("RQ_QUEUE") or DEFAULT_QUEUE, connection=_redis(app))


def rq_job_id(app: Flask, job_id: int) -> str:
    """The RQ message id of a job: one per job and queue (a second enqueue of a job
    replaces its message rather than adding one)."""
    return f"{app.config.get('RQ_QUEUE') or DEFAULT_QUEUE}-job-{int(job_id)}"


def _in_rq(app: Flask, job_id: int) -> bool:
    """Whether RQ still holds a live message for the job (waiting or being worked on)."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    try:
        status = Job.fetch(rq_job_id(app, job_id), connection=_redis(app)).get_status()
    except NoSuchJobError:
        return False
    return str(getattr(status, "value", status)) in {"queued", "started", "deferred",
                                                     "scheduled"}


def _rq_enqueue(app: Flask, job_id: int, *, replace: bool = False) -> None:
    """Put the job on the queue; ``replace``: first drop the message a dead worker left
    ("started" forever in RQ's registry), so the new one is not taken for it."""
    if replace:
        from rq.exceptions import NoSuchJobError
        from rq.job import Job

        with contextlib.suppress(NoSuchJobError):
            Job.fetch(rq_job_id(app, job_id), connection=_redis(app)).delete()
    rq_queue(app).enqueue(
        PERFORM, int(job_id), job_id=rq_job_id(app, job_id),
        job_timeout=int(app.config.get("JOB_TIMEOUT_SECONDS", 6 * 3600)),
        result_ttl=24 * 3600, failure_ttl=7 * 24 * 3600,
        description=f"lms background job {job_id}")


def make_rq_worker(app: Flask, *, name: str | None = None):
    """An ``rq.Worker`` on the app's queue. Its work horses are forked from this
    process: they drop the inherited database pool before they touch the database."""
    from rq import Worker

    runner.mark_pool_owner(db.engine)
    return Worker([rq_queue(app)], connection=_redis(app), name=name)


# --- in-process worker ------------------------------------------------------------------


class InProcessWorker(threading.Thread):
    """Runs the app's claimable jobs one after the other, then waits to be woken; ends
    after ``IDLE_SECONDS`` without work (the next enqueue starts another)."""

    def __init__(self, app: Flask) -> None:
        super().__init__(name="lms-jobs", daemon=True)
        self.app = app
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.finished = False

    def run(self) -> None:
        idle_since = time.monotonic()
        while not self.stopping.is_set():
            try:
                worked = _run_next(self.app)
            except Exception:  # the database went away for a moment: try again later
                log.exception("in-process job worker: could not run the next job")
                worked = False
            if worked:
                idle_since = time.monotonic()
                continue
            with _lock:
                if (time.monotonic() - idle_since > IDLE_SECONDS and not self.wake.is_set()) \
                        or self.stopping.is_set():
                    self.finished = True
                    return
            if self.wake.wait(POLL_SECONDS):
                self.wake.clear()
        self.finished = True


def _run_next(app: Flask) -> bool:
    """Claim and run one job; False when none could be claimed."""
    settings = store.JobSettings.from_app(app)
    with app.app_context():  # perform() runs each job in a context of its own, of this app
        ids = store.candidates(db.engine, settings=settings)
        # any() stops at the first job actually run: one job per call
        return any(runner.perform(job_id) != store.UNAVAILABLE for job_id in ids)


def _start_inprocess(app: Flask) -> InProcessWorker:
    with _lock:
        worker: InProcessWorker | None = app.extensions.get("jobs.thread")
        if worker is not None and worker.is_alive() and not worker.finished:
            worker.wake.set()
            return worker
        worker = InProcessWorker(app)
        app.extensions["jobs.thread"] = worker
        worker.start()
        return worker


def stop_inprocess(app: Flask, timeout: float = 30.0) -> bool:
    """Stop the app's worker thread after its current job; True if it has stopped."""
    worker: InProcessWorker | None = app.extensions.get("jobs.thread")
    if worker is None:
        return True
    worker.stopping.set()
    worker.wake.set()
    worker.join(timeout)
    return not worker.is_alive()


# --- the entry points -------------------------------------------------------------------


def enqueue(app: Flask, job_id: int) -> None:
    """Have job ``job_id`` (committed, "queued") run. Raises when Redis cannot be
    reached; the job then stays queued until a worker's start-up sweep sends it."""
    if uses_redis(app):
        _rq_enqueue(app, job_id)
    else:
        _start_inprocess(app)


def requeue_to_rq(app: Flask, job_id: int) -> None:
    """A failed attempt with attempts left: with Redis, the message goes back on the
    queue (without it, the pollers and the worker thread see the queued row)."""
    if uses_redis(app):
        _rq_enqueue(app, job_id)


def run_now(job_id: int) -> str:
    """Run a job here and now (the command line), trying again in place while it fails
    with attempts left. Returns the final outcome of ``runner.perform``."""
    while True:  # in the caller's app context
        outcome = runner.perform(job_id, requeue=False)
        if outcome != "queued":
            return outcome


def kick(app: Flask) -> None:
    """Without Redis: make sure this process works on waiting jobs (and on jobs whose
    worker died), e.g. when someone is looking at one's progress."""
    if not uses_redis(app):
        _start_inprocess(app)


def sweep(app: Flask, *, now: datetime | None = None) -> tuple[list[int], list[int]]:
    """Requeue jobs whose worker died (and fail those out of attempts); with Redis, also
    send every queued job that RQ no longer holds. (requeued, failed) ids."""
    settings = store.JobSettings.from_app(app)
    requeued, failed = store.requeue_stale(db.engine, settings=settings, now=now)
    if uses_redis(app):
        for job_id in store.queued_ids(db.engine):
            if job_id in requeued:
                _rq_enqueue(app, job_id, replace=True)
            elif not _in_rq(app, job_id):
                _rq_enqueue(app, job_id)
    return requeued, failed


def prune(app: Flask, *, now: datetime | None = None) -> list[int]:
    """Remove the files of jobs finished more than ``JOB_KEEP_DAYS`` ago (``lms tick``)."""
    from datetime import timedelta

    keep = timedelta(days=float(app.config.get("JOB_KEEP_DAYS", 7)))
    return store.prune_finished(db.engine, settings=store.JobSettings.from_app(app),
                                keep=keep, now=now)


def run_worker(app: Flask, *, burst: bool = False, poll: float = POLL_SECONDS,
               echo=print) -> int:
    """``lms worker``: sweep, then run jobs — RQ's worker with Redis, else a loop over
    the table. ``burst``: stop when nothing is left. Returns the jobs run (DB loop)."""
    requeued, failed = sweep(app)
    if requeued:
        echo(f"jobs: {len(requeued)} interrupted jobs queued again: {requeued}")
    if failed:
        echo(f"jobs: {len(failed)} interrupted jobs out of attempts, failed: {failed}")
    if uses_redis(app):
        worker = make_rq_worker(app)
        echo(f"jobs: RQ worker {worker.name} on queue {rq_queue(app).name}")
        worker.work(burst=burst, logging_level="INFO")
        return 0
    echo("jobs: no REDIS_URL; polling the background_jobs table")
    ran = 0
    while True:
        if _run_next(app):
            ran += 1
            continue
        if burst:
            return ran
        time.sleep(poll)
