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
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, select, update
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
    """Append one entry in the caller's transaction (the caller commits)."""
    claimed = session.execute(
        update(LedgerHead).where(LedgerHead.id == 1).values(seq=LedgerHead.seq + 1)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        raise RuntimeError("ledger_head row is missing: run the database migrations")
    seq, prev_seq_hash = session.execute(
        select(LedgerHead.seq, LedgerHead.hash).where(LedgerHead.id == 1)
    ).one()
    fields = EntryFields(seq=seq, at=utcnow(), actor_id=actor_id, kind=kind,
                         subject=subject, payload=canonical_json(payload),
                         prev_hash=prev_seq_hash)
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


def _stream(session: Session) -> Iterator[tuple[EntryFields, str]]:
    rows = session.execute(
        select(LedgerEntry).order_by(LedgerEntry.seq).execution_options(yield_per=1000)
    ).scalars()
    for entry in rows:
        yield entry.fields(), entry.hash
        session.expunge(entry)


def verify(session: Session) -> ChainCheck:
    """Recompute the whole chain in constant memory and compare it with the head row."""
    head = session.execute(select(LedgerHead.seq, LedgerHead.hash).where(LedgerHead.id == 1)).first()
    return verify_chain(_stream(session), expected_head=tuple(head) if head else None)
