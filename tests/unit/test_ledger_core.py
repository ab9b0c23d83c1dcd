"""The ledger's pure hashing rules: what makes an edit or a deletion detectable."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lms.ledger_core import (
    GENESIS_HASH,
    EntryFields,
    canonical_json,
    entry_hash,
    format_time,
    hashed_text,
    verify_chain,
)

T0 = datetime(2024, 3, 1, 2, 3, 4, 5, tzinfo=UTC)


def build_chain(payloads: list[dict]) -> list[tuple[EntryFields, str]]:
    """A well-formed chain, one entry per payload, as ``append`` would write it."""
    chain: list[tuple[EntryFields, str]] = []
    prev = GENESIS_HASH
    for i, payload in enumerate(payloads, start=1):
        fields = EntryFields(
            seq=i,
            at=T0 + timedelta(seconds=i, microseconds=i),
            actor_id=(i % 3) or None,
            kind=("exam.submitted", "course.completed", "policy.signed")[i % 3],
            subject=f"employee:{100 + i}",
            payload=canonical_json(payload),
            prev_hash=prev,
        )
        prev = entry_hash(fields)
        chain.append((fields, prev))
    return chain


def chain_of(n: int) -> list[tuple[EntryFields, str]]:
    return build_chain([{"n": i, "姓名": f"员工{i}", "score": 60 + i % 40} for i in range(n)])


def flip_char(text: str, index: int = -1) -> str:
    """Change exactly one character (hex digits stay hex)."""
    i = index % len(text)
    replacement = "0" if text[i] != "0" else "1"
    return text[:i] + replacement + text[i + 1:]


# One single-field edit per field: each yields a value that differs from the original.
EDITS = {
    "seq": lambda f: dataclasses.replace(f, seq=f.seq + 1000),
    "at": lambda f: dataclasses.replace(f, at=f.at + timedelta(microseconds=1)),
    "actor_id": lambda f: dataclasses.replace(f, actor_id=(f.actor_id or 0) + 1),
    "kind": lambda f: dataclasses.replace(f, kind=flip_char(f.kind)),
    "subject": lambda f: dataclasses.replace(f, subject=flip_char(f.subject)),
    "payload": lambda f: dataclasses.replace(f, payload=flip_char(f.payload, 2)),
    "prev_hash": lambda f: dataclasses.replace(f, prev_hash=flip_char(f.prev_hash)),
}


# --- canonical JSON -----------------------------------------------------------------------

def test_canonical_json_ignores_key_order_and_spacing():
    a = {"b": 1, "a": {"y": [1, 2], "x": None}, "c": True}
    b = {"c": True, "a": {"x": None, "y": [1, 2]}, "b": 1}
    assert canonical_json(a) == canonical_json(b) == (
        '{"a":{"x":null,"y":[1,2]},"b":1,"c":true}'
    )


def test_canonical_json_keeps_chinese_text_as_utf8_and_is_stable():
    payload = {"姓名": "张三", "课程": "劳动合同法 第39条", "a": 1}
    text = canonical_json(payload)
    assert text == '{"a":1,"姓名":"张三","课程":"劳动合同法 第39条"}'
    assert canonical_json(json.loads(text)) == text  # re-encoding changes nothing
    assert canonical_json(dict(reversed(list(payload.items())))) == text


def test_canonical_json_refuses_nan():
    with pytest.raises(ValueError):
        canonical_json({"score": float("nan")})


def test_format_time_is_utc_with_microseconds_and_refuses_naive_times():
    shanghai = timezone(timedelta(hours=8))
    assert format_time(datetime(2024, 3, 1, 10, 3, 4, 5, tzinfo=shanghai)) == (
        "2024-03-01T02:03:04.000005Z"
    )
    with pytest.raises(ValueError):
        format_time(datetime(2024, 3, 1))


# --- entry hash ---------------------------------------------------------------------------

def test_entry_hash_matches_the_documented_recipe():
    """Pins the rule an outside auditor re-implements: SHA-256 over prev hash, LF, JSON."""
    fields = EntryFields(seq=1, at=T0, actor_id=7, kind="policy.signed",
                         subject="employee:12", payload=canonical_json({"版本": 2}),
                         prev_hash=GENESIS_HASH)
    text = (GENESIS_HASH + "\n" + '{"actor_id":7,"at":"2024-03-01T02:03:04.000005Z",'
            '"kind":"policy.signed","payload":"{\\"版本\\":2}","seq":1,'
            '"subject":"employee:12"}')
    assert hashed_text(fields) == text
    assert entry_hash(fields) == hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.mark.parametrize("field", sorted(EDITS))
def test_entry_hash_changes_when_any_single_field_changes(field):
    fields, stored = chain_of(3)[1]
    assert entry_hash(fields) == stored
    assert entry_hash(EDITS[field](fields)) != stored


def test_actor_none_and_actor_zero_hash_differently():
    fields, _ = chain_of(1)[0]
    assert entry_hash(dataclasses.replace(fields, actor_id=None)) != entry_hash(
        dataclasses.replace(fields, actor_id=0))


# --- chain verification -------------------------------------------------------------------

def test_intact_chain_of_50_verifies():
    chain = chain_of(50)
    check = verify_chain(chain, expected_head=(50, chain[-1][1]))
    assert check.ok
    assert check.count == 50
    assert check.head_hash == chain[-1][1]
    assert check.broken_seq is None


def test_empty_chain_verifies_against_the_genesis_head():
    check = verify_chain([], expected_head=(0, GENESIS_HASH))
    assert check.ok and check.count == 0 and check.head_hash == GENESIS_HASH


def test_every_single_field_edit_of_every_entry_names_that_entry():
    chain = chain_of(50)
    head = (50, chain[-1][1])
    for position in range(50):
        fields, stored = chain[position]
        tampered_versions = [(name, edit(fields), stored) for name, edit in EDITS.items()]
        tampered_versions.append(("hash", fields, flip_char(stored)))
        for name, bad_fields, bad_hash in tampered_versions:
            tampered = list(chain)
            tampered[position] = (bad_fields, bad_hash)
            check = verify_chain(tampered, expected_head=head)
            assert not check.ok, (position, name)
            assert check.broken_seq == position + 1, (position, name, check)
            assert check.count == position, (position, name)


def test_rehashing_an_edited_entry_still_breaks_the_next_link():
    """An editor who recomputes the edited entry's hash is caught by its successor."""
    chain = chain_of(10)
    fields, _ = chain[4]
    edited = dataclasses.replace(fields, payload=canonical_json({"score": 100}))
    chain[4] = (edited, entry_hash(edited))
    check = verify_chain(chain)
    assert not check.ok
    assert check.broken_seq == 6
    assert "previous-hash" in check.reason


def test_missing_middle_entry_is_named():
    chain = chain_of(50)
    del chain[24]
    check = verify_chain(chain, expected_head=(50, chain[-1][1]))
    assert not check.ok
    assert check.broken_seq == 25
    assert "missing" in check.reason


def test_deleted_tail_is_caught_only_by_the_head_record():
    chain = chain_of(50)
    head = (50, chain[-1][1])
    truncated = chain[:47]
    assert verify_chain(truncated).ok  # the chain alone cannot see a cut tail
    check = verify_chain(truncated, expected_head=head)
    assert not check.ok
    assert check.broken_seq == 48
    assert "head record says 50" in check.reason


def test_head_with_a_different_hash_is_a_break():
    chain = chain_of(5)
    check = verify_chain(chain, expected_head=(5, flip_char(chain[-1][1])))
    assert not check.ok


# --- property ------------------------------------------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers(-(2**53), 2**53)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=8,
)
payloads = st.dictionaries(st.text(max_size=12), json_values, max_size=6)


@settings(max_examples=60, deadline=None)
@given(st.lists(payloads, min_size=1, max_size=8))
def test_random_payloads_round_trip_and_their_chain_verifies(batch):
    for payload in batch:
        text = canonical_json(payload)
        assert json.loads(text) == payload
        assert canonical_json(json.loads(text)) == text
    chain = build_chain(batch)
    check = verify_chain(chain, expected_head=(len(batch), chain[-1][1]))
    assert check.ok and check.count == len(batch)
