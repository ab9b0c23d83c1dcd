"""Command-line entry points an operator uses on a real installation."""

from __future__ import annotations

import json

from sqlalchemy import select

from lms.auth.passwords import verify_password
from lms.extensions import db
from lms.ledger import LedgerEntry
from lms.people.models import User


def test_create_user_prompts_for_the_password_without_echoing_it(app):
    runner = app.test_cli_runner()
    secret = "first-boss-pass-2026"
    result = runner.invoke(args=["lms", "create-user"],
                           input=f"Admin\n系统管理员\n{secret}\n{secret}\n")
    assert result.exit_code == 0, result.output
    assert secret not in result.output
    user = db.session.scalar(select(User).where(User.username == "admin"))
    assert user.display_name == "系统管理员" and user.roles == {"admin"}
    assert verify_password(user.password_hash, secret)
    entry = db.session.scalar(select(LedgerEntry).where(LedgerEntry.kind == "user.created"))
    assert json.loads(entry.payload)["username"] == "admin"


def test_create_user_refuses_a_weak_password_and_a_duplicate(app):
    runner = app.test_cli_runner()
    weak = runner.invoke(args=["lms", "create-user", "--username", "boss", "--name", "B"],
                         input="short\nshort\n")
    assert weak.exit_code != 0 and "password refused" in weak.output
    assert db.session.scalar(select(User).where(User.username == "boss")) is None
    ok = runner.invoke(args=["lms", "create-user", "--username", "boss", "--name", "B",
                             "--role", "hr", "--role", "auditor"],
                       input="long-enough-pass-1\nlong-enough-pass-1\n")
    assert ok.exit_code == 0, ok.output
    again = runner.invoke(args=["lms", "create-user", "--username", "BOSS", "--name", "B"],
                          input="long-enough-pass-1\nlong-enough-pass-1\n")
    assert again.exit_code != 0 and "already exists" in again.output
    assert db.session.scalar(select(User).where(User.username == "boss")).roles == {"hr", "auditor"}


def test_workdays_commands_print_iso_dates_and_counts(app):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["workdays", "add", "2026-09-28", "7"]).output.strip() == "2026-10-13"
    assert runner.invoke(args=["workdays", "between", "2026-09-28", "2026-10-13"]).output.strip() == "7"
    bad = runner.invoke(args=["workdays", "add", "2026-13-01", "1"])
    assert bad.exit_code != 0 and "2026-13-01" in bad.output
    unknown = runner.invoke(args=["workdays", "add", "2026-12-28", "10"])
    assert unknown.exit_code != 0 and "2027" in unknown.output
