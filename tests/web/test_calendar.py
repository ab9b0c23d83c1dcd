"""The work calendar: overrides and declared years, seen through the CLI and the
due-date calculator."""

from __future__ import annotations

import json
from datetime import date

import pytest
from flask import Flask
from sqlalchemy import select

from lms.extensions import db
from lms.ledger import LedgerEntry
from lms.workday_overrides import CalendarYear, WorkdayOverride


@pytest.fixture
def cli(app: Flask):
    runner = app.test_cli_runner()

    def run(*args: str):
        db.session.expire_all()  # the command must see what the pages committed
        return runner.invoke(args=list(args))

    return run


@pytest.fixture
def admin(people, client):
    user = people.user("root", "admin")
    assert client.login("root").status_code == 302
    return user


def ledger_kinds() -> list[str]:
    return list(db.session.execute(select(LedgerEntry.kind).order_by(LedgerEntry.seq)).scalars())


def add_override(client, day: str, is_workday: bool, note: str = "地方假日"):
    return client.post("/admin/calendar/overrides",
                       {"day": day, "is_workday": "1" if is_workday else "0", "note": note},
                       token_from="/admin/calendar")


def due_page(client, start: str, days: int) -> str:
    resp = client.get(f"/tools/due-date?start={start}&days={days}")
    return resp.get_data(as_text=True)


def test_weekday_holiday_override_moves_due_date_in_cli_and_page(cli, client, admin):
    result = cli("workdays", "add", "2026-09-28", "7")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "2026-10-13"
    assert 'id="due">2026-10-13<' in due_page(client, "2026-09-28", 7)

    resp = add_override(client, "2026-09-29", False, "台风停工")  # a Tuesday
    assert resp.status_code == 302
    assert ledger_kinds() == ["calendar.override_added"]

    result = cli("workdays", "add", "2026-09-28", "7")
    assert result.output.strip() == "2026-10-14"
    html = due_page(client, "2026-09-28", 7)
    assert 'id="due">2026-10-14<' in html
    skipped = html.split('id="skipped"', 1)[1].split("</ul>", 1)[0]
    assert 'data-date="2026-09-29"' in skipped and "台风停工" in skipped
    assert 'data-date="2026-10-01"' in skipped and "National Day" in skipped
    assert 'data-date="2026-10-11"' in skipped  # an ordinary Sunday
    assert 'data-date="2026-10-10"' not in skipped  # the 调休 Saturday is worked

    calendar = client.get("/admin/calendar?year=2026").get_data(as_text=True)
    assert 'data-date="2026-09-29" data-workday="no" data-kind="override_holiday"' in calendar
    assert "台风停工" in calendar


def test_adjusted_saturday_counts_as_working_day(cli, client, admin):
    result = cli("workdays", "add", "2026-10-09", "1")
    assert result.output.strip() == "2026-10-10"
    assert cli("workdays", "between", "2026-10-09", "2026-10-11").output.strip() == "1"
    assert 'id="due">2026-10-10<' in due_page(client, "2026-10-09", 1)
    calendar = client.get("/admin/calendar?year=2026").get_data(as_text=True)
    assert 'data-date="2026-10-10" data-workday="yes" data-kind="adjusted"' in calendar


def test_workdays_between_prints_counts(cli, client, admin):
    assert cli("workdays", "between", "2026-09-30", "2026-10-08").output.strip() == "1"
    assert cli("workdays", "between", "2026-09-28", "2026-10-13").output.strip() == "7"
    assert cli("workdays", "between", "2026-10-13", "2026-09-28").output.strip() == "-7"
    html = client.get("/tools/due-date?from_date=2026-09-28&to_date=2026-10-13").get_data(
        as_text=True)
    assert 'id="between-count">7<' in html


@pytest.mark.parametrize("bad", ["2026-13-01", "20261001", "next monday"])
def test_cli_rejects_bad_dates_clearly(cli, bad):
    result = cli("workdays", "add", bad, "3")
    assert result.exit_code == 2
    assert "invalid date" in result.output and "YYYY-MM-DD" in result.output


def test_page_rejects_bad_input_clearly(client, admin):
    resp = client.get("/tools/due-date?start=2026-02-30&days=3")
    assert resp.status_code == 400
    assert "请按 YYYY-MM-DD 格式输入有效日期，例如 2026-10-08。" in resp.get_data(as_text=True)
    resp = client.get("/tools/due-date?start=2026-02-03&days=-4")
    assert resp.status_code == 400
    assert "请输入 0 到 1000 之间的工作日天数。" in resp.get_data(as_text=True)


def test_undeclared_2027_is_an_error_not_a_guess(cli, client, admin):
    result = cli("workdays", "add", "2026-12-30", "5")
    assert result.exit_code != 0
    assert "2027" in result.output
    result = cli("workdays", "between", "2027-01-04", "2027-01-08")
    assert result.exit_code != 0 and "2027" in result.output

    resp = client.get("/tools/due-date?start=2026-12-30&days=5")
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert 'id="unknown-year"' in html and "2027" in html and 'id="due"' not in html

    html = client.get("/admin/calendar?year=2027").get_data(as_text=True)
    assert 'id="unknown-year"' in html and 'data-date="2027-' not in html


def test_declaring_2027_with_its_holidays_makes_it_work(cli, client, admin):
    assert add_override(client, "2027-01-01", False, "元旦").status_code == 302
    # Not yet declared: the override alone does not make the year known.
    assert cli("workdays", "add", "2026-12-31", "1").exit_code != 0

    resp = client.post("/admin/calendar/years", {"year": "2027", "note": "国务院办公厅通知"},
                       token_from="/admin/calendar")
    assert resp.status_code == 302
    result = cli("workdays", "add", "2026-12-31", "1")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "2027-01-04"  # Fri 1 Jan holiday, then the weekend
    assert 'id="due">2027-01-04<' in due_page(client, "2026-12-31", 1)

    html = client.get("/admin/calendar?year=2027").get_data(as_text=True)
    assert 'id="unknown-year"' not in html
    assert 'data-date="2027-01-01" data-workday="no"' in html
    assert 'data-date="2027-01-04" data-workday="yes"' in html
    assert 'data-year="2027"' in html and "国务院办公厅通知" in html

    entry = db.session.execute(
        select(LedgerEntry).where(LedgerEntry.kind == "calendar.year_declared")
    ).scalar_one()
    assert entry.actor_id == admin.id
    assert json.loads(entry.payload) == {"year": 2027, "note": "国务院办公厅通知", "overrides": 1}


def test_year_declaration_is_refused_when_pointless_or_repeated(client, admin):
    resp = client.post("/admin/calendar/years", {"year": "2026", "note": "x"},
                       token_from="/admin/calendar")
    assert resp.status_code == 400
    assert "2026 年已包含在法定节假日数据中，无需确认。" in resp.get_data(as_text=True)

    client.post("/admin/calendar/years", {"year": "2027", "note": "x"},
                token_from="/admin/calendar")
    resp = client.post("/admin/calendar/years", {"year": "2027", "note": "again"},
                       token_from="/admin/calendar")
    assert resp.status_code == 400
    assert "2027 年已确认过。" in resp.get_data(as_text=True)
    assert db.session.scalar(select(CalendarYear.note).where(CalendarYear.year == 2027)) == "x"


def test_override_needs_a_note_and_a_free_date(client, admin):
    resp = add_override(client, "2026-09-29", False, "")
    assert resp.status_code == 400
    assert "请填写备注，说明调整这一天的原因。" in resp.get_data(as_text=True)

    add_override(client, "2026-09-29", False, "台风停工")
    resp = add_override(client, "2026-09-29", True, "补班")
    assert resp.status_code == 400
    assert "2026-09-29 已有调整；如需修改，请先删除原有调整。" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(WorkdayOverride, date(2026, 9, 29)).note == "台风停工"


def test_deleting_an_override_restores_the_statutory_day(cli, client, admin):
    add_override(client, "2026-09-29", False, "台风停工")
    assert cli("workdays", "add", "2026-09-28", "7").output.strip() == "2026-10-14"

    resp = client.post("/admin/calendar/overrides/2026-09-29/delete",
                       token_from="/admin/calendar?year=2026")
    assert resp.status_code == 302
    assert cli("workdays", "add", "2026-09-28", "7").output.strip() == "2026-10-13"
    assert ledger_kinds() == ["calendar.override_added", "calendar.override_removed"]
    assert client.post("/admin/calendar/overrides/2026-09-29/delete",
                       token_from="/admin/calendar").status_code == 404


def test_due_date_page_is_for_trainers_hr_and_admins_only(client, make_client, people):
    people.user("trainee1", "trainee")
    client.login("trainee1")
    assert client.get("/tools/due-date").status_code == 403
    assert client.get("/tools/due-date?start=2026-09-28&days=7").status_code == 403

    people.user("trainer1", "trainer")
    trainer = make_client()
    trainer.login("trainer1")
    assert 'id="due">2026-10-13<' in due_page(trainer, "2026-09-28", 7)
    assert trainer.get("/admin/calendar").status_code == 403

    people.user("hr1", "hr")
    hr = make_client()
    hr.login("hr1")
    assert hr.get("/tools/due-date?start=2026-09-28&days=7").status_code == 200
