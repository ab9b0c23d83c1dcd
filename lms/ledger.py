"""The evidence ledger: an append-only, hash-chained record of everything that proves
training (completions, exams, signatures, ID reveals, HR changes).

``append`` runs inside the caller's transaction, so an entry exists exactly when the
change it records is committed. Appenders serialise on the single ``ledger_head`` row:
its UPDATE takes a row lock on PostgreSQL and the write lock on SQLite, so two
concurrent appends can never chain onto the same predecessor. UPDATE and DELETE on
``ledger_entries`` are refused by database triggers (see the migrations).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from lms.dbtypes import UTCDateTime, utcnow
from lms.extensions import db
from lms.ledger_core import (
    GENESIS_HASH,
    ChainCheck,
    EntryFields,
    canonical_json,
    entry_hash,
    verify_chain,
)

__all__ = ["GENESIS_HASH", "LedgerEntry", "LedgerHead", "append", "verify"]


class LedgerEntry(db.Model):
    __tablename__ = "ledger_entries"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(128), index=True)
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)

    def fields(self) -> EntryFields:
        return EntryFields(self.seq, self.at, self.actor_id, self.kind, self.subject,
                           self.payload, self.prev_hash)


class LedgerHead(db.Model):
    """The single row naming the last entry; the lock appenders queue on."""

    __tablename__ = "ledger_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


def append(
    session: Session,
    *,
    kind: str,
    subject: str,
    payload: dict[str, Any],
    actor_id: int | None = None,
) -> LedgerEntry:
    """Append one entry in the caller's transaction (the caller commits).

    Three statements: claim the next sequence (the UPDATE takes the head-row lock and
    RETURNING hands back the new number with the predecessor's hash), insert the entry,
    move the head's hash.
    """
    claimed = session.execute(
        update(LedgerHead).where(LedgerHead.id == 1).values(seq=LedgerHead.seq + 1)
        .returning(LedgerHead.seq, LedgerHead.hash)
        .execution_options(synchronize_session=False)
    ).first()
    if claimed is None:
        raise RuntimeError("ledger_head row is missing: run the database migrations")
    seq, prev_hash = claimed
    fields = EntryFields(seq=seq, at=utcnow(), actor_id=actor_id, kind=kind,
                         subject=subject, payload=canonical_json(payload),
                         prev_hash=prev_hash)
    entry = LedgerEntry(seq=fields.seq, at=fields.at, actor_id=actor_id, kind=kind,
                        subject=subject, payload=fields.payload, prev_hash=fields.prev_hash,
                        hash=entry_hash(fields))
    session.add(entry)
    session.flush()
    session.execute(
        update(LedgerHead).where(LedgerHead.id == 1).values(hash=entry.hash)
        .execution_options(synchronize_session=False)
    )
    return entry


def _stream(session: Session, upto: int) -> Iterator[tuple[EntryFields, str]]:
    """Entries 1..``upto`` in order, in constant memory; the cursor is closed even when
    the walk stops early at a break (an open cursor would pin an old snapshot)."""
    result = session.execute(
        select(LedgerEntry).where(LedgerEntry.seq <= upto).order_by(LedgerEntry.seq)
        .execution_options(yield_per=1000)
    )
    try:
        for entry in result.scalars():
            yield entry.fields(), entry.hash
            session.expunge(entry)
    finally:
        result.close()


def _head(session: Session) -> tuple[int, str] | None:
    row = session.execute(select(LedgerHead.seq, LedgerHead.hash).where(LedgerHead.id == 1)).first()
    return (row.seq, row.hash) if row else None


def verify(session: Session) -> ChainCheck:
    """Recompute the whole chain in constant memory and compare it with the head row.

    The head is read first and only entries up to it are walked: each statement may see
    a newer snapshot (PostgreSQL READ COMMITTED, SQLite outside a transaction), and an
    append committed meanwhile must not look like a chain longer than its head. Entries
    found beyond the head are a break only if a fresh read of the head still does not
    cover them (a row inserted without going through ``append``).
    """
    head = _head(session)
    with closing(_stream(session, upto=head[0] if head else 2**31 - 1)) as stream:
        check = verify_chain(stream, expected_head=head)
    if not check.ok:
        return check
    if head is None:  # the row appenders lock was deleted: a cut tail could not be seen
        return ChainCheck(False, check.count, check.head_hash, check.count + 1,
                          "the ledger head record is missing")
    beyond = session.scalar(select(func.min(LedgerEntry.seq)).where(LedgerEntry.seq > head[0]))
    if beyond is not None:
        fresh = _head(session)
        if fresh is None or fresh[0] < beyond:
            return ChainCheck(False, check.count, check.head_hash, beyond,
                              f"entry {beyond} lies beyond the head record, which ends at "
                              f"{fresh[0] if fresh else head[0]}")
    return check
