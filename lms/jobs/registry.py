"""Job kinds and what a job function gets.

A module that offers a background job registers it once (``register("evidence.bulk",
run_bulk)``, at import time of a module that ``create_app`` imports), so every process
that builds the app — web, ``lms worker``, an RQ work horse — knows every kind. A job
function receives a ``JobContext`` and returns nothing; its result file, if any, is
named with ``ctx.set_result``. The runner commits the job's session once, when the
function has returned, together with the job row's "done".
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

__all__ = ["JobContext", "JobFailed", "JobResult", "LeaseLost", "handler_for", "register",
           "registered_kinds"]

JobFunction = Callable[["JobContext"], None]
_REGISTRY: dict[str, JobFunction] = {}


class JobFailed(Exception):
    """A failure that retrying cannot cure (the scope no longer exists, no CJK font): the
    job fails at once with this message instead of being tried again."""


class LeaseLost(Exception):
    """Another worker took the job over (our heartbeat went stale): stop, write nothing."""


def register(kind: str, func: JobFunction) -> None:
    """Make ``func`` the function of jobs of ``kind`` (registering it again is a no-op)."""
    known = _REGISTRY.get(kind)
    if known is not None and _name(known) != _name(func):
        raise ValueError(f"job kind {kind!r} is already registered to {_name(known)}")
    _REGISTRY[kind] = func


def _name(func: JobFunction) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


def handler_for(kind: str) -> JobFunction | None:
    return _REGISTRY.get(kind)


def registered_kinds() -> list[str]:
    return sorted(_REGISTRY)


@dataclass(frozen=True)
class JobResult:
    """A finished job's file: its name inside the job directory, size and SHA-256."""

    name: str
    size: int
    sha256: str


def file_sha256(path: Path, chunk: int = 1024 * 1024) -> tuple[str, int]:
    """(SHA-256, size) of a file, read in chunks (constant memory)."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


@dataclass
class JobContext:
    """What a job function works with.

    ``session`` is the job's unit of work (the function may commit it as it goes, e.g.
    after each item, to checkpoint). ``progress`` writes the job row's progress and
    heartbeat on a connection of its own and commits it at once; call it between units
    of work, while ``session`` holds no uncommitted writes (on SQLite the progress write
    would otherwise wait for the job's own transaction). ``workdir`` is this job's
    directory, kept across attempts: a resumed attempt finds what earlier ones wrote.
    """

    job_id: int
    kind: str
    params: dict[str, Any]
    requested_by: int | None
    attempt: int
    workdir: Path
    session: Session
    _progress: Callable[[int, int, str], None]
    _heartbeat: Callable[[], None]
    result: JobResult | None = None
    after_done: list[Callable[[], None]] = field(default_factory=list)

    def progress(self, done: int, total: int, message: str = "") -> None:
        """Record ``done`` of ``total`` (and a short message); raises ``LeaseLost`` when
        the job is no longer ours."""
        self._progress(done, total, message)

    def heartbeat(self) -> None:
        """Say "still alive" during a long step with no progress to report (same rules
        as ``progress``)."""
        self._heartbeat()

    def set_result(self, path: Path, *, sha256: str | None = None,
                   size: int | None = None) -> None:
        """Name the job's result: a file inside ``workdir``."""
        path = Path(path)
        if path.resolve().parent != self.workdir.resolve():
            raise ValueError(f"{path} is not in the job directory {self.workdir}")
        if sha256 is None or size is None:
            sha256, size = file_sha256(path)
        self.result = JobResult(path.name, size, sha256)

    def when_done(self, action: Callable[[], None]) -> None:
        """Run ``action`` after the job's "done" is committed (e.g. remove scratch files
        that the result now contains); a failure there is logged, not raised."""
        self.after_done.append(action)
