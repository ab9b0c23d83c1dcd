"""The evidence ledger through the app: transactions, database guards, the ``ledger
verify`` command against one-byte tampering, and the auditor pages."""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select, text
from support import ON_POSTGRES

from lms.dbtypes import UTCDateTime
from lms.extensions import db
from lms.ledger import GENESIS_HASH, LedgerEntry, LedgerHead, append, verify
from lms.people.models import User

MIDDLE = 3
CHAIN_LENGTH = 5


# --- helpers -------------------------------------------------------------------------------

def make_chain(n: int = CHAIN_LENGTH, actor_id: int | None = None) -> list[LedgerEntry]:
    """``n`` committed entries, each in its own transaction as real callers do."""
    made = []
    for i in range(1, n + 1):
        made.append(append(db.session, kind=("course.completed", "exam.submitted")[i % 2],
                           subject=f"employee:{i}", actor_id=actor_id,
                           payload={"score": 80 + i, "课程": "劳动合同法"}))
        db.session.commit()
    return made


def entry_count() -> int:
    return db.session.scalar(select(func.count()).select_from(LedgerEntry))


def head() -> tuple[int, str]:
    return tuple(db.session.execute(select(LedgerHead.seq, LedgerHead.hash)).one())


def is_postgres() -> bool:
    return db.engine.dialect.name == "postgresql"


@contextmanager
def guards_off(*events: str) -> Iterator[None]:
    """Lift the append-only guard for ``events`` (UPDATE/DELETE), as a tamperer with
    database access would, and put it back exactly as it was afterwards."""
    db.session.commit()
    if is_postgres():
        db.session.execute(text(
            "ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_no_update_delete"))
        db.session.commit()
        try:
            yield
        finally:
            db.session.rollback()
            db.session.execute(text(
                "ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_no_update_delete"))
            db.session.commit()
        return
    names = [f"ledger_entries_no_{event.lower()}" for event in events]
    saved = {name: db.session.scalar(
        text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = :n"), {"n": name}
    ) for name in names}
    assert all(saved.values()), saved
    for name in names:
        db.session.execute(text(f"DROP TRIGGER {name}"))
    db.session.commit()
    try:
        yield
    finally:
        db.session.rollback()
        for sql in saved.values():
            db.session.execute(text(sql))  # re-created from its own migration text
        db.session.commit()


def assert_guards_in_place() -> None:
    for sql in ("UPDATE ledger_entries SET kind = kind", "DELETE FROM ledger_entries"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            db.session.execute(text(sql))
        db.session.rollback()


def flip(value: str, index: int) -> str:
    """Change exactly one character (a hex digit stays a hex digit)."""
    ch = value[index]
    return value[:index] + ("1" if ch == "0" else "0") + value[index + 1:]


def run_verify(app):
    return app.test_cli_runner().invoke(args=["ledger", "verify"])


def names_sequence(output: str, seq: int) -> bool:
    return re.search(rf"\bsequence {seq}\b", output) is not None


# --- transactions ---------------------------------------------------------------------------

def test_rolled_back_change_leaves_no_evidence_and_the_head_unchanged(app, people):
    user = people.user("wangwu", "trainee")
    user.display_name = "王五（已修改）"
    append(db.session, kind="user.renamed", subject=f"user:{user.id}",
           payload={"display_name": user.display_name}, actor_id=user.id)
    db.session.flush()
    assert entry_count() == 1  # visible inside the transaction…
    db.session.rollback()

    assert entry_count() == 0  # …gone with the change it recorded
    assert head() == (0, GENESIS_HASH)
    assert db.session.get(User, user.id).display_name == "wangwu"
    assert verify(db.session).ok


def test_committed_append_is_visible_to_other_connections_and_verifies(app, people):
    user = people.user("zhaoliu", "hr")
    entry = append(db.session, kind="user.roles_changed", subject=f"user:{user.id}",
                   payload={"roles": ["hr"]}, actor_id=user.id)
    db.session.commit()

    with db.engine.connect() as other:
        row = other.execute(text("SELECT seq, kind, hash FROM ledger_entries")).one()
        head_row = other.execute(text("SELECT seq, hash FROM ledger_head")).one()
    assert tuple(row) == (1, "user.roles_changed", entry.hash)
    assert tuple(head_row) == (1, entry.hash)
    assert entry.prev_hash == GENESIS_HASH
    check = verify(db.session)
    assert check.ok and check.count == 1 and check.head_hash == entry.hash


# --- database guards ------------------------------------------------------------------------

@pytest.mark.parametrize("sql", [
    "UPDATE ledger_entries SET payload = '{}' WHERE seq = 2",
    "UPDATE ledger_entries SET hash = hash",
    "DELETE FROM ledger_entries WHERE seq = 2",
    "DELETE FROM ledger_entries",
])
def test_database_refuses_update_and_delete_of_entries(app, sql):
    make_chain()
    with pytest.raises(sa.exc.DatabaseError, match="append-only"):
        db.session.execute(text(sql))
    db.session.rollback()
    assert entry_count() == CHAIN_LENGTH
    assert verify(db.session).ok


def test_database_refuses_deleting_the_head(app):
    make_chain(2)
    with pytest.raises(sa.exc.DatabaseError):
        db.session.execute(text("DELETE FROM ledger_head"))
    db.session.rollback()
    assert head()[0] == 2


def test_emptying_the_whole_table_is_refused(app):
    """TRUNCATE on PostgreSQL; on SQLite (no TRUNCATE) an unqualified DELETE, which
    SQLite would otherwise run as a fast truncate that skips row triggers."""
    make_chain()
    wipe_entries = "TRUNCATE ledger_entries" if ON_POSTGRES else "DELETE FROM ledger_entries"
    wipe_head = "TRUNCATE ledger_head" if ON_POSTGRES else "DELETE FROM ledger_head"
    with pytest.raises(sa.exc.DatabaseError, match="append-only"):
        db.session.execute(text(wipe_entries))
    db.session.rollback()
    with pytest.raises(sa.exc.DatabaseError):
        db.session.execute(text(wipe_head))
    db.session.rollback()
    assert entry_count() == CHAIN_LENGTH
    assert verify(db.session).ok


# --- the verify command ----------------------------------------------------------------------

def test_cli_verify_reports_count_and_head_of_an_intact_chain(app):
    entries = make_chain()
    result = run_verify(app)
    assert result.exit_code == 0, result.output
    assert f"{CHAIN_LENGTH} entries" in result.output
    assert entries[-1].hash in result.output


def test_cli_verify_of_an_empty_ledger_is_ok(app):
    result = run_verify(app)
    assert result.exit_code == 0
    assert "0 entries" in result.output and GENESIS_HASH in result.output


def _one_byte_edit(column: str, current, other_actor: int):
    """A new value for ``column`` that differs from ``current`` by as little as possible."""
    if column == "at":  # one microsecond, changing a single digit
        return current + timedelta(microseconds=-1 if current.microsecond % 10 == 9 else 1)
    if column == "actor_id":
        return other_actor
    if column == "payload":
        i = current.index("8")  # a digit of the score
        return current[:i] + "9" + current[i + 1:]
    return flip(current, len(current) // 2)


@pytest.mark.parametrize("column",
                         ["at", "actor_id", "kind", "subject", "payload", "prev_hash", "hash"])
def test_cli_verify_names_the_entry_after_a_one_byte_edit(app, people, column):
    actor = people.user("actor1", "hr")
    other = people.user("actor2", "hr")
    make_chain(actor_id=actor.id)
    assert run_verify(app).exit_code == 0

    table = LedgerEntry.__table__
    current = db.session.execute(
        select(table.c[column]).where(table.c.seq == MIDDLE)).scalar_one()
    new = _one_byte_edit(column, current, other.id)
    assert new != current
    if isinstance(new, str):
        assert len(new) == len(current)
        assert sum(a != b for a, b in zip(new, current, strict=True)) == 1
    with guards_off("UPDATE"):
        db.session.execute(
            text(f"UPDATE ledger_entries SET {column} = :value WHERE seq = :seq").bindparams(
                sa.bindparam("value", type_=UTCDateTime() if column == "at" else None)),
            {"value": new, "seq": MIDDLE},
        )
        db.session.commit()
    assert_guards_in_place()

    result = run_verify(app)
    assert result.exit_code != 0
    assert names_sequence(result.output, MIDDLE), result.output
    check = verify(db.session)
    assert not check.ok and check.broken_seq == MIDDLE and check.count == MIDDLE - 1


def test_cli_verify_detects_a_deleted_last_entry_through_the_head(app):
    make_chain()
    with guards_off("DELETE"):
        db.session.execute(text("DELETE FROM ledger_entries WHERE seq = :s"),
                           {"s": CHAIN_LENGTH})
        db.session.commit()
    assert_guards_in_place()
    assert entry_count() == CHAIN_LENGTH - 1

    result = run_verify(app)
    assert result.exit_code != 0
    assert names_sequence(result.output, CHAIN_LENGTH), result.output
    assert "head record" in result.output


def test_cli_verify_detects_a_row_inserted_behind_the_heads_back(app):
    """INSERT is allowed by the guards; a row not written by ``append`` is still caught."""
    entries = make_chain()
    db.session.execute(
        text("INSERT INTO ledger_entries (seq, at, actor_id, kind, subject, payload, "
             "prev_hash, hash) VALUES (:seq, :at, NULL, 'x', 'y', '{}', :prev, :hash)")
        .bindparams(sa.bindparam("at", type_=UTCDateTime())),
        {"seq": CHAIN_LENGTH + 1, "at": entries[-1].at, "prev": entries[-1].hash,
         "hash": "f" * 64},
    )
    db.session.commit()
    result = run_verify(app)
    assert result.exit_code != 0
    assert names_sequence(result.output, CHAIN_LENGTH + 1), result.output


def test_cli_verify_refuses_to_vouch_without_the_head_record(app):
    make_chain()
    if is_postgres():
        off = "ALTER TABLE ledger_head DISABLE TRIGGER ledger_head_no_delete"
        on = "ALTER TABLE ledger_head ENABLE TRIGGER ledger_head_no_delete"
    else:
        on = db.session.scalar(text("SELECT sql FROM sqlite_master WHERE type = 'trigger' "
                                    "AND name = 'ledger_head_no_delete'"))
        off = "DROP TRIGGER ledger_head_no_delete"
    db.session.execute(text(off))
    db.session.execute(text("DELETE FROM ledger_head"))
    db.session.execute(text(on))
    db.session.commit()

    result = run_verify(app)
    assert result.exit_code != 0
    assert "head record is missing" in result.output
    assert names_sequence(result.output, CHAIN_LENGTH + 1), result.output


# --- pages ----------------------------------------------------------------------------------

@pytest.fixture
def auditor(people, client):
    user = people.user("shenji", "auditor")
    client.login("shenji")
    return user


def rows_seqs(page_html: str) -> list[int]:
    return [int(s) for s in re.findall(r'<tr data-seq="(\d+)"', page_html)]


def test_auditor_sees_entries_newest_first_with_local_time_actor_and_short_hash(
        app, client, auditor):
    entries = make_chain(actor_id=auditor.id)
    resp = client.get("/ledger")
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    assert rows_seqs(page) == [5, 4, 3, 2, 1]
    assert "has-error" not in page  # no filter given is not an error
    last = entries[-1]
    shanghai = last.at.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S")
    assert shanghai in page
    assert f'title="{last.hash}">{last.hash[:12]}…' in page
    assert "shenji" in page and "employee:5" in page and "exam.submitted" in page
    # Head: count and full head hash.
    assert re.search(r'id="head-count">5<', page)
    assert f'id="head-hash">{last.hash}<' in page
    # Payload is pretty-printed (one key per line), Chinese kept readable.
    assert '"score": 85,\n' in html.unescape(page)
    assert "劳动合同法" in page


def test_ledger_filters_by_kind_and_exact_subject(app, client, auditor):
    make_chain(6)
    by_kind = client.get("/ledger?kind=course.completed").get_data(as_text=True)
    assert rows_seqs(by_kind) == [6, 4, 2]
    by_subject = client.get("/ledger?subject=employee:3").get_data(as_text=True)
    assert rows_seqs(by_subject) == [3]
    both = client.get("/ledger?kind=course.completed&subject=employee:3").get_data(as_text=True)
    assert rows_seqs(both) == []
    assert 'id="no-entries"' in both


def test_unknown_kind_filter_is_reported_on_its_field(app, client, auditor):
    make_chain(2)
    page = client.get("/ledger?kind=no.such.kind").get_data(as_text=True)
    assert re.search(r'has-error">\s*<label for="kind"', page)
    assert rows_seqs(page) == [2, 1]  # the bad filter is not applied


def test_ledger_pages_fifty_entries_at_a_time(app, client, auditor):
    for i in range(60):
        append(db.session, kind="bulk", subject=f"n:{i}", payload={"i": i})
    db.session.commit()
    first = client.get("/ledger").get_data(as_text=True)
    assert rows_seqs(first) == list(range(60, 10, -1))
    second = client.get("/ledger?page=2").get_data(as_text=True)
    assert rows_seqs(second) == list(range(10, 0, -1))


def test_payload_and_subject_html_is_escaped(app, client, auditor):
    append(db.session, kind="note", subject="<b>subject</b>",
           payload={"comment": "<script>alert('x')</script>"})
    db.session.commit()
    for url in ("/ledger", "/ledger/1"):
        page = client.get(url).get_data(as_text=True)
        assert "<script>alert" not in page
        assert "&lt;script&gt;alert(" in page
        assert "<b>subject</b>" not in page and "&lt;b&gt;subject&lt;/b&gt;" in page


def test_auditor_verifies_an_intact_chain_and_the_check_is_recorded(app, client, auditor):
    entries = make_chain()
    resp = client.post("/ledger/verify", token_from="/ledger")
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    assert 'data-ok="true"' in page
    assert f'id="verified-head">{entries[-1].hash}<' in page
    assert 'data-count="5"' in page

    record = db.session.scalars(select(LedgerEntry).order_by(LedgerEntry.seq.desc())).first()
    assert record.seq == CHAIN_LENGTH + 1
    assert (record.kind, record.actor_id) == ("ledger.verified", auditor.id)
    assert json.loads(record.payload) == {
        "ok": True, "count": CHAIN_LENGTH, "head_hash": entries[-1].hash,
        "broken_seq": None, "reason": "",
    }
    assert f'href="/ledger/{record.seq}"' in page
    assert verify(db.session).ok  # recording the check kept the chain intact


def test_verify_page_names_the_broken_entry_and_records_the_failure(app, client, auditor):
    make_chain()
    with guards_off("UPDATE"):
        db.session.execute(text("UPDATE ledger_entries SET subject = 'employee:X' "
                                "WHERE seq = :s"), {"s": MIDDLE})
        db.session.commit()
    page = client.post("/ledger/verify", token_from="/ledger").get_data(as_text=True)
    assert 'data-ok="false"' in page
    assert f'id="broken-seq">#{MIDDLE}<' in page
    assert "entry was altered" in page
    record = db.session.scalars(select(LedgerEntry).where(
        LedgerEntry.kind == "ledger.verified")).one()
    payload = json.loads(record.payload)
    assert (payload["ok"], payload["broken_seq"], payload["count"]) == (False, MIDDLE, MIDDLE - 1)


def test_entry_page_shows_the_text_whose_sha256_is_the_hash(app, client, auditor):
    entries = make_chain()
    resp = client.get(f"/ledger/{MIDDLE}")
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    hashed = html.unescape(re.search(r'id="hashed-text">(.*?)</pre>', page, re.S).group(1))
    assert hashlib.sha256(hashed.encode("utf-8")).hexdigest() == entries[MIDDLE - 1].hash
    assert hashed.startswith(entries[MIDDLE - 2].hash + "\n")
    assert 'id="hash-match" data-match="true"' in page
    assert f'href="/ledger/{MIDDLE - 1}" id="prev-entry"' in page
    assert f'href="/ledger/{MIDDLE + 1}" id="next-entry"' in page


def test_entry_page_shows_when_an_entry_no_longer_matches_its_hash(app, client, auditor):
    make_chain()
    with guards_off("UPDATE"):
        db.session.execute(text("UPDATE ledger_entries SET kind = 'exam.submittex' "
                                "WHERE seq = :s"), {"s": MIDDLE})
        db.session.commit()
    page = client.get(f"/ledger/{MIDDLE}").get_data(as_text=True)
    assert 'id="hash-match" data-match="false"' in page


def test_first_and_last_entries_have_one_neighbour_and_unknown_is_404(app, client, auditor):
    make_chain()
    first = client.get("/ledger/1").get_data(as_text=True)
    assert 'id="prev-entry"' not in first and 'id="next-entry"' in first
    last = client.get(f"/ledger/{CHAIN_LENGTH}").get_data(as_text=True)
    assert 'id="next-entry"' not in last and 'id="prev-entry"' in last
    assert client.get("/ledger/999").status_code == 404


def test_admin_may_use_the_ledger(app, client, people):
    people.user("root", "admin")
    make_chain(2)
    client.login("root")
    assert client.get("/ledger").status_code == 200
    assert client.get("/ledger/1").status_code == 200
    assert client.post("/ledger/verify", token_from="/ledger").status_code == 200


@pytest.mark.parametrize("role", ["trainee", "hr", "manager", "trainer"])
def test_other_roles_get_403_and_cannot_record_a_check(app, client, people, role):
    people.user("someone", role)
    make_chain(2)
    client.login("someone")
    assert client.get("/ledger").status_code == 403
    assert client.get("/ledger/1").status_code == 403
    assert client.post("/ledger/verify", token_from="/").status_code == 403
    assert entry_count() == 2


def test_anonymous_visitors_are_sent_to_log_in(app, client):
    make_chain(1)
    resp = client.get("/ledger/1")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
