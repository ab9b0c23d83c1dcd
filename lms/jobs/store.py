"""The job table's state changes, each one conditional so that two workers can never
both run a job, and each (but ``create`` and ``finish``) on a connection of its own
that commits at once: a claim or a heartbeat must be visible to other processes now,
whatever the job's own unit of work is doing.

Claiming is one UPDATE: ``queued`` → ``running``, or ``running`` with a heartbeat
older than the lease → ``running`` again (a worker that died mid-job), attempts + 1,
with a new claim token in ``worker``. Progress and the finish only count while the
token is still ours, so a worker that was presumed dead and comes back cannot finish
a job someone else has taken over.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import and_, func, literal, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from lms.dbtypes import UTCDateTime, utcnow
from lms.jobs.models import BackgroundJob
from lms.jobs.registry import JobResult, LeaseLost

__all__ = ["CLAIMED", "EXHAUSTED", "UNAVAILABLE", "JobSettings", "candidates", "claim",
           "create", "fail_or_retry", "finish", "heartbeat", "job_dir", "make_job_dir", "new_worker_token",
           "progress", "prune_finished", "queued_ids", "requeue_stale"]

CLAIMED, EXHAUSTED, UNAVAILABLE = "claimed", "exhausted", "unavailable"
MESSAGE_MAX = 255
ERROR_MAX = 2000


@dataclass(frozen=True)
class JobSettings:
    lease: timedelta
    max_attempts: int
    root: Path  # each job works in root/<id>/

    @classmethod
    def from_app(cls, app: Flask) -> JobSettings:
        root = app.config.get("JOBS_DIR") or os.path.join(app.instance_path, "jobs")
        return cls(lease=timedelta(seconds=int(app.config.get("JOB_LEASE_SECONDS", 120))),
                   max_attempts=int(app.config.get("JOB_MAX_ATTEMPTS", 3)),
                   root=Path(root))


def job_dir(settings: JobSettings, job_id: int) -> Path:
    return settings.root / str(int(job_id))


def fresh_job_dir(settings: JobSettings, job_id: int) -> Path:
    """The job's directory emptied: a first attempt starts from nothing (a directory left
    under the same id by an earlier database must not be taken for its checkpoints)."""
    path = job_dir(settings, job_id)
    if path.exists():
        shutil.rmtree(path)
    make_job_dir(path)
    return path


def make_job_dir(path: Path) -> None:
    """Owner-only: a job's files hold personal data (evidence packs)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.mkdir(mode=0o700, exist_ok=True)


def prune_finished(engine: Engine, *, settings: JobSettings, keep: timedelta,
                   now: datetime | None = None) -> list[int]:
    """Remove the directories (results and scratch files) of jobs finished longer than
    ``keep`` ago; the rows stay (the ledger keeps what a result was). Removed job ids."""
    now = now or utcnow()
    if not settings.root.is_dir():
        return []
    on_disk = sorted(int(p.name) for p in settings.root.iterdir()
                     if p.is_dir() and p.name.isdigit())
    if not on_disk:
        return []
    t = _t()
    with engine.connect() as conn:
        old = set(conn.execute(select(t.c.id).where(
            t.c.id.in_(on_disk), t.c.status.in_(("done", "failed")),
            t.c.finished_at < now - keep)).scalars())
        conn.rollback()
    for job_id in sorted(old):
        shutil.rmtree(job_dir(settings, job_id), ignore_errors=True)
    return sorted(old)


def new_worker_token() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _t():
    return BackgroundJob.__table__


def _at(value: datetime):
    return literal(value, UTCDateTime())


def _claimable(now: datetime, lease: timedelta):
    t = _t()
    return or_(t.c.status == "queued",
               and_(t.c.status == "running",
                    or_(t.c.heartbeat_at.is_(None), t.c.heartbeat_at < now - lease)))


def create(session: Session, kind: str, params: dict[str, Any], *,
           requested_by: int | None, now: datetime | None = None,
           total: int = 0, message: str | None = None) -> BackgroundJob:
    """A queued job row in the caller's transaction (the caller commits, then enqueues)."""
    job = BackgroundJob(kind=kind, params=json.dumps(params, ensure_ascii=False, sort_keys=True),
                        status="queued", requested_by=requested_by, created_at=now or utcnow(),
                        progress_total=total, progress_done=0, attempts=0, message=message)
    session.add(job)
    session.flush()
    return job


def claim(engine: Engine, job_id: int, worker: str, *, settings: JobSettings,
          now: datetime | None = None) -> str:
    """CLAIMED (the job is ours now), EXHAUSTED (it would have been, but it has had all
    its attempts: it is failed instead) or UNAVAILABLE (done, failed, or running with a
    live heartbeat)."""
    now = now or utcnow()
    t = _t()
    claimable = _claimable(now, settings.lease)
    with engine.begin() as conn:
        taken = conn.execute(
            update(t).where(t.c.id == job_id, claimable, t.c.attempts < settings.max_attempts)
            .values(status="running", worker=worker, attempts=t.c.attempts + 1,
                    started_at=_coalesce(t.c.started_at, now), heartbeat_at=now,
                    finished_at=None)).rowcount
        if taken == 1:
            return CLAIMED
        gave_up = conn.execute(
            update(t).where(t.c.id == job_id, claimable, t.c.attempts >= settings.max_attempts)
            .values(status="failed", worker=None, finished_at=now,
                    error=_exhausted_error(conn, job_id, settings.max_attempts))).rowcount
    return EXHAUSTED if gave_up == 1 else UNAVAILABLE


def _coalesce(column, now: datetime):
    return func.coalesce(column, _at(now))


def _exhausted_error(conn, job_id: int, attempts: int) -> str:
    last = conn.execute(select(_t().c.error).where(_t().c.id == job_id)).scalar()
    note = (f"stopped after {attempts} attempts; the last one ended without finishing "
            "(the worker was stopped or crashed)")
    return f"{note}. Last error: {last}"[:ERROR_MAX] if last else note


def progress(engine: Engine, job_id: int, worker: str, done: int, total: int,
             message: str = "", *, now: datetime | None = None) -> None:
    """Record progress and a heartbeat; ``LeaseLost`` if the job is no longer ours."""
    t = _t()
    with engine.begin() as conn:
        n = conn.execute(
            update(t).where(t.c.id == job_id, t.c.worker == worker, t.c.status == "running")
            .values(progress_done=max(0, done), progress_total=max(0, total),
                    message=(message or None) and message[:MESSAGE_MAX],
                    heartbeat_at=now or utcnow())).rowcount
    if n != 1:
        raise LeaseLost(f"job {job_id} is no longer held by {worker}")


def heartbeat(engine: Engine, job_id: int, worker: str, *, now: datetime | None = None) -> None:
    """Only say "still alive" (a long step without progress to report); ``LeaseLost``
    if the job is no longer ours."""
    t = _t()
    with engine.begin() as conn:
        n = conn.execute(
            update(t).where(t.c.id == job_id, t.c.worker == worker, t.c.status == "running")
            .values(heartbeat_at=now or utcnow())).rowcount
    if n != 1:
        raise LeaseLost(f"job {job_id} is no longer held by {worker}")


def finish(session: Session, job_id: int, worker: str, result: JobResult | None, *,
           message: str | None = None, now: datetime | None = None) -> None:
    """Mark the job done in the caller's transaction (with whatever the job function
    wrote there, e.g. its ledger entry); ``LeaseLost`` if it is no longer ours."""
    t = _t()
    now = now or utcnow()
    values: dict[str, Any] = {"status": "done", "finished_at": now, "heartbeat_at": now,
                              "worker": None, "error": None,
                              "progress_done": t.c.progress_total}
    if message is not None:
        values["message"] = message[:MESSAGE_MAX]
    if result is not None:
        values.update(result_path=result.name, result_bytes=result.size,
                      result_sha256=result.sha256)
    n = session.execute(
        update(t).where(t.c.id == job_id, t.c.worker == worker, t.c.status == "running")
        .values(**values).execution_options(synchronize_session=False)).rowcount
    if n != 1:
        raise LeaseLost(f"job {job_id} is no longer held by {worker}")


def fail_or_retry(engine: Engine, job_id: int, worker: str, error: str, *,
                  settings: JobSettings, permanent: bool, now: datetime | None = None) -> str:
    """After the job function raised: "queued" to try again (attempts left and the
    error is not permanent), else "failed"; "" if the job was no longer ours."""
    t = _t()
    now = now or utcnow()
    error = error[:ERROR_MAX]
    mine = (t.c.id == job_id, t.c.worker == worker, t.c.status == "running")
    with engine.begin() as conn:
        if not permanent:
            n = conn.execute(update(t).where(*mine, t.c.attempts < settings.max_attempts)
                             .values(status="queued", worker=None, error=error,
                                     heartbeat_at=now)).rowcount
            if n == 1:
                return "queued"
        n = conn.execute(update(t).where(*mine).values(
            status="failed", worker=None, error=error, finished_at=now,
            heartbeat_at=now)).rowcount
    return "failed" if n == 1 else ""


def requeue_stale(engine: Engine, *, settings: JobSettings,
                  now: datetime | None = None) -> tuple[list[int], list[int]]:
    """Running jobs whose heartbeat is older than the lease (their worker died): back to
    "queued", or "failed" when they have had every attempt. (requeued, failed) ids."""
    now = now or utcnow()
    t = _t()
    stale = and_(t.c.status == "running",
                 or_(t.c.heartbeat_at.is_(None), t.c.heartbeat_at < now - settings.lease))
    requeued: list[int] = []
    failed: list[int] = []
    with engine.connect() as conn:
        ids = conn.execute(select(t.c.id).where(stale).order_by(t.c.id)).scalars().all()
        conn.rollback()
    for job_id in ids:
        with engine.begin() as conn:
            if conn.execute(
                    update(t).where(t.c.id == job_id, stale,
                                    t.c.attempts < settings.max_attempts)
                    .values(status="queued", worker=None)).rowcount == 1:
                requeued.append(job_id)
            elif conn.execute(
                    update(t).where(t.c.id == job_id, stale,
                                    t.c.attempts >= settings.max_attempts)
                    .values(status="failed", worker=None, finished_at=now,
                            error=_exhausted_error(conn, job_id, settings.max_attempts))
            ).rowcount == 1:
                failed.append(job_id)
    return requeued, failed


def candidates(engine: Engine, *, settings: JobSettings, now: datetime | None = None,
               limit: int = 20) -> list[int]:
    """Jobs a polling worker may try to claim, oldest first."""
    now = now or utcnow()
    t = _t()
    with engine.connect() as conn:
        ids = conn.execute(select(t.c.id).where(_claimable(now, settings.lease))
                           .order_by(t.c.id).limit(limit)).scalars().all()
        conn.rollback()
    return list(ids)


def queued_ids(engine: Engine) -> list[int]:
    t = _t()
    with engine.connect() as conn:
        ids = conn.execute(select(t.c.id).where(t.c.status == "queued")
                           .order_by(t.c.id)).scalars().all()
        conn.rollback()
    return list(ids)
