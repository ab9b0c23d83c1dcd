"""The outbox: each outbound consumer (webhooks, xAPI) reads the ledger past its own
cursor and turns the training entries it finds into queued deliveries.

Nothing in the learner's request talks to the network or even knows an integration
exists: the request appends its ledger entry and commits; a later ``lms tick`` reads
it from here. Reading in ``seq`` order past a cursor misses nothing, because appenders
serialise on the ledger head row and hold its lock until they commit, so entry N+1
can only commit after entry N — the ledger becomes visible strictly in ``seq`` order,
without gaps. Each batch advances the cursor in the same transaction as the
deliveries it queued, so a crash re-reads the batch, and the unique keys of the
delivery tables make that re-read insert nothing twice.

Also here: the retry schedule shared by both senders, and the lease a sender takes on
the rows it is about to send.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Integer, String, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from lms.dbtypes import UTCDateTime, utcnow
from lms.extensions import db
from lms.ledger import LedgerEntry, LedgerHead
from lms.queue_claim import claim_due

__all__ = [
    "BACKOFF",
    "CLAIM_LEASE",
    "IntegrationCursor",
    "advance",
    "claim",
    "cursor_of",
    "next_attempt_at",
    "unread_entries",
]

# Waits after the 1st to 5th failed attempt; the 6th failure is final ("failed").
BACKOFF = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30),
           timedelta(hours=2), timedelta(hours=12))
# How long a tick owns the rows it claimed; longer than a batch can take.
CLAIM_LEASE = timedelta(minutes=15)


class IntegrationCursor(db.Model):
    """The last ledger ``seq`` an outbound consumer has turned into deliveries."""

    __tablename__ = "integration_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def next_attempt_at(attempts: int, now: datetime) -> datetime | None:
    """When to try again after ``attempts`` failed attempts; None when it is final."""
    if 1 <= attempts <= len(BACKOFF):
        return now + BACKOFF[attempts - 1]
    return None


def cursor_of(session: Session, name: str) -> int:
    return session.scalar(select(IntegrationCursor.last_seq)
                          .where(IntegrationCursor.name == name)) or 0


def unread_entries(session: Session, name: str, kinds: tuple[str, ...], *, limit: int
                   ) -> tuple[list[LedgerEntry], int]:
    """Up to ``limit`` entries of ``kinds`` past the cursor ``name``, in ``seq`` order,
    and the ``seq`` the cursor may move to once they are handled: the last entry's when
    the batch is full, else the ledger head read before the query (entries of other
    kinds up to it need no reading again)."""
    start = cursor_of(session, name)
    head = session.scalar(select(LedgerHead.seq).where(LedgerHead.id == 1)) or 0
    entries = list(session.scalars(
        select(LedgerEntry)
        .where(LedgerEntry.seq > start, LedgerEntry.seq <= head, LedgerEntry.kind.in_(kinds))
        .order_by(LedgerEntry.seq).limit(limit)))
    upto = entries[-1].seq if len(entries) >= limit else max(head, start)
    return entries, upto


def advance(session: Session, name: str, seq: int, *, now: datetime) -> None:
    """Move the cursor forward to ``seq`` (never back) in the caller's transaction."""
    table = IntegrationCursor.__table__
    insert = (postgresql.insert if session.get_bind().dialect.name == "postgresql"
              else sqlite.insert)
    stmt = insert(table).values(name=name, last_seq=seq, updated_at=now)
    session.execute(stmt.on_conflict_do_nothing(index_elements=[table.c.name]))
    session.execute(update(table).where(table.c.name == name, table.c.last_seq < seq)
                    .values(last_seq=seq, updated_at=now))


def claim(session: Session, table: Table, *, now: datetime, limit: int) -> list[int]:
    """Lease up to ``limit`` due pending rows of ``table`` to this tick (committed on a
    connection of its own, before anything is sent; see ``lms.queue_claim``)."""
    return claim_due(session, table, now=now, limit=limit, lease=CLAIM_LEASE)
