"""Scheduled housekeeping run by ``flask --app wsgi lms tick``.

PIPL asks us to keep personal data no longer than needed: a staged employee CSV holds
ID numbers in (encrypted) full, so one that was never applied is deleted after a day.
Old failed-login records are pruned once they no longer serve throttling or a security
review. Each step is idempotent, so running the tick twice does nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from lms.auth.models import LoginFailure
from lms.people.importer import EmployeeImport

STAGED_IMPORT_TTL = timedelta(hours=24)
LOGIN_FAILURE_TTL = timedelta(days=180)


@dataclass(frozen=True)
class HousekeepingResult:
    stale_imports_deleted: int
    login_failures_pruned: int


def run_housekeeping(session: Session, now: datetime) -> HousekeepingResult:
    """Delete stale staged imports and old login failures (the caller commits)."""
    imports = session.execute(
        delete(EmployeeImport).where(EmployeeImport.applied_at.is_(None),
                                     EmployeeImport.created_at < now - STAGED_IMPORT_TTL)
    ).rowcount
    failures = session.execute(
        delete(LoginFailure).where(LoginFailure.at < now - LOGIN_FAILURE_TTL)
    ).rowcount
    return HousekeepingResult(imports or 0, failures or 0)
