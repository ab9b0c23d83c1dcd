"""Login throttling from the database's record of failures.

Kept in the database rather than in process memory so it holds across gunicorn
workers and restarts with no extra service, and the failures stay on record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lms.auth.models import LoginFailure
from lms.dbtypes import utcnow


@dataclass(frozen=True)
class ThrottlePolicy:
    max_failures: int = 10
    max_failures_per_ip: int = 50
    window: timedelta = timedelta(minutes=10)


def retry_after(session: Session, policy: ThrottlePolicy, *, username: str, ip: str,
                now: datetime | None = None) -> timedelta | None:
    """How long the caller must wait before another attempt, or None if allowed."""
    now = now or utcnow()
    since = now - policy.window
    for column, value, limit in (
        (LoginFailure.username, username.lower(), policy.max_failures),
        (LoginFailure.ip, ip, policy.max_failures_per_ip),
    ):
        count, oldest = session.execute(
            select(func.count(), func.min(LoginFailure.at)).where(column == value,
                                                                LoginFailure.at > since)
        ).one()
        if count >= limit:
            oldest_at = oldest if oldest.tzinfo else oldest.replace(tzinfo=now.tzinfo)
            return max(oldest_at + policy.window - now, timedelta(seconds=1))
    return None


def record_failure(session: Session, *, username: str, ip: str) -> None:
    session.add(LoginFailure(username=username.lower()[:64], ip=ip[:64], at=utcnow()))
