"""``perform(job_id)``: run one job, the same way whichever worker calls it — the RQ
work horse (its job function is this module's ``perform``), ``lms worker`` polling the
table, or the web process's own worker thread.

It claims the job (or returns: someone else has it, or it is finished), runs the
registered function in an app context of its own, and commits "done" together with
whatever the function left in its session. An exception puts the job back in the queue
while it has attempts left (a ``JobFailed`` fails it at once); anything that is not an
``Exception`` — the process being stopped — leaves the job "running" with a heartbeat
that goes stale, so the next worker to start takes it over.
"""

from __future__ import annotations

import logging
import os
import weakref

from flask import Flask, current_app, has_app_context
from sqlalchemy.engine import Engine

from lms.extensions import db
from lms.jobs import store
from lms.jobs.models import BackgroundJob
from lms.jobs.registry import JobContext, JobFailed, LeaseLost, handler_for

__all__ = ["perform", "run_claimed"]

log = logging.getLogger("lms.jobs")

# The process whose connections an engine's pool holds; a forked RQ work horse must not
# talk over its parent's sockets, so it drops the inherited pool (without closing it).
_POOL_PID: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()
_FALLBACK_APP: Flask | None = None


def mark_pool_owner(engine: Engine) -> None:
    """Call in a worker before it forks work horses."""
    _POOL_PID[engine] = os.getpid()


def _own_pool(engine: Engine) -> None:
    pid = os.getpid()
    owner = _POOL_PID.get(engine)
    if owner is not None and owner != pid:
        engine.dispose(close=False)
    _POOL_PID[engine] = pid


def _app() -> Flask:
    """The current app; outside one (RQ's own ``rq worker`` command) the app from the
    environment, built once per process."""
    global _FALLBACK_APP
    if has_app_context():
        return current_app._get_current_object()  # type: ignore[attr-defined]
    if _FALLBACK_APP is None:
        from lms.app import create_app  # only here: the jobs package sits below the app

        _FALLBACK_APP = create_app()
    return _FALLBACK_APP


def perform(job_id: int, *, requeue: bool = True) -> str:
    """Run job ``job_id`` if it can be claimed. Returns what happened: "done", "queued"
    (failed, will be retried), "failed", "exhausted", "unavailable" or "lost".
    ``requeue``: after a failure with attempts left, send the job to RQ again (with
    Redis; the table's pollers find it by themselves)."""
    app = _app()
    with app.app_context():
        _own_pool(db.engine)
        return run_claimed(app, int(job_id), requeue=requeue)


def run_claimed(app: Flask, job_id: int, *, requeue: bool = True) -> str:
    settings = store.JobSettings.from_app(app)
    worker = store.new_worker_token()
    outcome = store.claim(db.engine, job_id, worker, settings=settings)
    if outcome != store.CLAIMED:
        if outcome == store.EXHAUSTED:
            log.warning("job %s failed: no attempts left", job_id)
        return outcome
    session = db.session
    job = session.get(BackgroundJob, job_id)
    assert job is not None  # we just claimed it
    func = handler_for(job.kind)
    workdir = (store.fresh_job_dir(settings, job_id) if job.attempts == 1
               else store.job_dir(settings, job_id))
    store.make_job_dir(workdir)
    engine = db.engine

    def report(done: int, total: int, message: str) -> None:
        store.progress(engine, job_id, worker, done, total, message)

    def alive() -> None:
        store.heartbeat(engine, job_id, worker)

    ctx = JobContext(job_id=job.id, kind=job.kind, params=job.parameters,
                     requested_by=job.requested_by, attempt=job.attempts, workdir=workdir,
                     session=session, _progress=report, _heartbeat=alive)
    session.commit()  # end the read transaction: the function starts clean
    log.info("job %s (%s) attempt %s started by %s", job_id, ctx.kind, ctx.attempt, worker)
    try:
        if func is None:
            raise JobFailed(f"no job function is registered for {ctx.kind!r}")
        func(ctx)
        store.finish(session, job_id, worker, ctx.result)
        session.commit()
    except LeaseLost:
        session.rollback()
        log.warning("job %s: taken over by another worker; this attempt stops", job_id)
        return "lost"
    except Exception as exc:
        session.rollback()
        log.exception("job %s (%s) attempt %s failed", job_id, ctx.kind, ctx.attempt)
        status = store.fail_or_retry(engine, job_id, worker, _describe(exc),
                                     settings=settings, permanent=isinstance(exc, JobFailed))
        if status == "queued" and requeue:
            from lms.jobs.backends import requeue_to_rq

            try:
                requeue_to_rq(app, job_id)
            except Exception:  # the sweep at the next worker start or tick re-enqueues
                log.exception("job %s: could not be queued again", job_id)
        return status or "lost"
    for action in ctx.after_done:
        try:
            action()
        except Exception:
            log.exception("job %s: clean-up after it was done failed", job_id)
    log.info("job %s done", job_id)
    return "done"


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, JobFailed):
        return text or "failed"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

