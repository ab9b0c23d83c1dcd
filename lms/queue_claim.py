"""Leasing due rows of a delivery queue (e-mails, webhooks, xAPI statements) to one
sender, shared by ``lms.notify`` and ``integrations.outbox``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Table, or_, select, update
from sqlalchemy.orm import Session


def claim_due(session: Session, table: Table, *, now: datetime, limit: int,
              lease: timedelta, where: Sequence[ColumnElement[bool]] = ()) -> list[int]:
    """Lease up to ``limit`` due pending rows of ``table`` (a queue with ``status``,
    ``next_attempt_at`` and ``claimed_until``) and COMMIT the lease on a connection of
    its own, before anything is sent.

    Why its own transaction: holding the caller's transaction open across SMTP or HTTP
    round trips would keep SQLite's write lock (blocking every page that writes) or
    PostgreSQL row locks for the whole batch. The UPDATE re-checks the lease in its
    WHERE, so of two senders claiming at once only one gets each row (PostgreSQL
    re-evaluates the WHERE on the locked row; SQLite runs one writer at a time); on
    PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets the second take other rows instead of
    waiting, and the MATERIALIZED CTE runs once: as ``id IN (subquery)`` the planner may
    pick a nested-loop semi-join that rescans the LIMIT subquery for every outer row,
    each rescan locking (and returning) further rows, so the claim outgrew ``limit``.
    Call it with no uncommitted writes in ``session``.
    """
    engine = session.get_bind()
    free = or_(table.c.claimed_until.is_(None), table.c.claimed_until < now)
    due = (select(table.c.id)
           .where(table.c.status == "pending", table.c.next_attempt_at <= now, free, *where)
           .order_by(table.c.next_attempt_at, table.c.id).limit(limit))
    if engine.dialect.name == "postgresql":
        picked = due.with_for_update(skip_locked=True).cte("due").prefix_with("MATERIALIZED")
        match = table.c.id == picked.c.id
    else:
        match = table.c.id.in_(due.scalar_subquery())
    stmt = (update(table).where(match, table.c.status == "pending", free)
            .values(claimed_until=now + lease).returning(table.c.id))
    with engine.begin() as conn:
        return sorted(conn.execute(stmt).scalars())
