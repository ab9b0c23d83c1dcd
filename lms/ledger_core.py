"""Pure hashing rules of the evidence ledger (no Flask, no database).

Each entry's hash is SHA-256 over the previous entry's hash and the canonical JSON of
every other field, so editing any field of any entry, or removing one, breaks the chain
from that point on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> str:
    """One byte-exact text for a JSON value: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def format_time(at: datetime) -> str:
    """The hashed form of a timestamp: UTC, microseconds, ``Z`` suffix."""
    if at.tzinfo is None:
        raise ValueError("ledger times must be timezone-aware")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class EntryFields:
    """Everything an entry holds except its own hash."""

    seq: int
    at: datetime
    actor_id: int | None
    kind: str
    subject: str
    payload: str  # canonical JSON text, hashed as stored
    prev_hash: str


def hashed_text(fields: EntryFields) -> str:
    """The exact text an entry's hash is taken over (its UTF-8 bytes are hashed).

    Public so the auditor pages can show it: anyone can recompute a hash from it with
    any SHA-256 tool, without trusting this code.
    """
    body = canonical_json(
        {
            "seq": fields.seq,
            "at": format_time(fields.at),
            "actor_id": fields.actor_id,
            "kind": fields.kind,
            "subject": fields.subject,
            "payload": fields.payload,
        }
    )
    return f"{fields.prev_hash}\n{body}"


def entry_hash(fields: EntryFields) -> str:
    return hashlib.sha256(hashed_text(fields).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    count: int
    head_hash: str
    broken_seq: int | None = None
    reason: str = ""


def verify_chain(
    entries: Iterable[tuple[EntryFields, str]],
    expected_head: tuple[int, str] | None = None,
) -> ChainCheck:
    """Walk ``(fields, stored_hash)`` pairs in sequence order and report the first break.

    ``expected_head`` is the (seq, hash) the database's head record claims; comparing it
    catches a deleted tail, which the chain alone cannot show.
    """
    prev_hash = GENESIS_HASH
    expected_seq = 1
    count = 0
    for fields, stored in entries:
        if fields.seq != expected_seq:
            return ChainCheck(False, count, prev_hash, expected_seq,
                              f"sequence {expected_seq} is missing (found {fields.seq})")
        if fields.prev_hash != prev_hash:
            return ChainCheck(False, count, prev_hash, fields.seq,
                              "previous-hash link does not match the entry before it")
        if entry_hash(fields) != stored:
            return ChainCheck(False, count, prev_hash, fields.seq,
                              "content does not match its hash (entry was altered)")
        prev_hash = stored
        expected_seq += 1
        count += 1
    if expected_head is not None and expected_head != (count, prev_hash):
        head_seq, _ = expected_head
        return ChainCheck(False, count, prev_hash, min(head_seq, count + 1),
                          f"head record says {head_seq} entries but the chain has {count}")
    return ChainCheck(True, count, prev_hash)
