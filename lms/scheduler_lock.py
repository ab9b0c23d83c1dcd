"""A named lease in the database, so that two ``lms tick`` runs at once (two cron hosts,
or a slow run overlapping the next minute) do no double work.

``acquire`` is one atomic statement: insert the lock row, or take it over only when its
lease has expired (INSERT ... ON CONFLICT DO UPDATE ... WHERE expires_at <= now). Both
SQLite and PostgreSQL serialise it on the row, so exactly one caller wins. The statement
runs and commits on a connection of its own: the lock must be visible to other
processes at once, and the caller's unit of work is left alone (call it while the
caller's session holds no write transaction, or SQLite would make it wait).

A crashed holder blocks others only until its lease expires; pick ``ttl`` longer than
the work normally takes.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import String, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from lms.dbtypes import UTCDateTime, utcnow
from lms.extensions import db

__all__ = ["SchedulerLock", "acquire", "new_holder", "release"]


class SchedulerLock(db.Model):
    __tablename__ = "scheduler_locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


def new_holder() -> str:
    """A holder name unique to this run, readable in the table (host, pid, random)."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def acquire(session: Session, name: str, holder: str, ttl: timedelta,
            *, now: datetime | None = None) -> bool:
    """Take the lock ``name`` for ``ttl``; False when someone else holds an unexpired
    lease. The same holder may call again to extend its lease."""
    now = now or utcnow()
    table = SchedulerLock.__table__
    engine = session.get_bind()
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table).values(name=name, holder=holder, expires_at=now + ttl)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.name],
        set_={"holder": stmt.excluded.holder, "expires_at": stmt.excluded.expires_at},
        where=(table.c.expires_at <= bindparam("now", now, type_=UTCDateTime()))
        | (table.c.holder == holder),
    )
    with engine.begin() as conn:
        return conn.execute(stmt, execution_options={"preserve_rowcount": True}).rowcount == 1


def release(session: Session, name: str, holder: str, *, now: datetime | None = None) -> bool:
    """End our lease now (expire it, keeping the row); False if we no longer held it."""
    now = now or utcnow()
    table = SchedulerLock.__table__
    with session.get_bind().begin() as conn:
        return conn.execute(
            update(table).where(table.c.name == name, table.c.holder == holder,
                                table.c.expires_at > now)
            .values(expires_at=now)
        ).rowcount == 1
