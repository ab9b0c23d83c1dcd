"""Background jobs: work too long for a request (a department's evidence ZIP), run by
a worker and followed in the page through the job row's progress.

``models`` is the table (a job's whole state), ``registry`` the job kinds and the
context a job function gets, ``store`` the conditional state changes (claim, progress,
finish, retry, requeue), ``runner.perform(job_id)`` runs one job — the same code under
RQ (``REDIS_URL``), ``lms worker`` polling the table, or the web process's own worker
thread — and ``backends`` picks among those. Core infrastructure: nothing here imports
the features that register jobs.
"""

from lms.jobs.registry import JobContext, JobFailed, LeaseLost, register

__all__ = ["JobContext", "JobFailed", "LeaseLost", "register"]
