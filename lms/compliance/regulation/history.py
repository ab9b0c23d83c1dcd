"""One place that writes a regulation update's history: a ``RegulationEvent`` row and
its ledger entry, always together and in the caller's transaction, so the update page's
history and the evidence ledger can never disagree."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from lms import ledger
from lms.compliance.regulation.models import RegulationEvent, RegulationUpdate
from lms.dbtypes import utcnow

__all__ = ["record_event", "subject_of"]


def subject_of(update_id: int) -> str:
    """The ledger subject of an update (``regulation:<id>``)."""
    return f"regulation:{update_id}"


def record_event(session: Session, update: RegulationUpdate, *, kind: str,
                 from_state: str | None, to_state: str, payload: dict[str, Any],
                 actor_id: int | None, note: str = "", at: datetime | None = None
                 ) -> RegulationEvent:
    """Append ledger entry ``kind`` and the matching event row (the caller commits)."""
    full = {"update_id": update.id, "from": from_state, "to": to_state, **payload}
    if note:
        full["note"] = note
    entry = ledger.append(session, kind=kind, subject=subject_of(update.id), payload=full,
                          actor_id=actor_id)
    event = RegulationEvent(update_id=update.id, from_state=from_state, to_state=to_state,
                            actor_id=actor_id, note=note, at=at or utcnow(),
                            ledger_seq=entry.seq)
    session.add(event)
    session.flush()
    return event
