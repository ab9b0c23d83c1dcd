"""`lms tick` housekeeping: personal data in stale uploads does not linger."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from lms.auth.models import LoginFailure
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.people.importer import EmployeeImport


def _staged(user, *, age: timedelta, applied: bool) -> EmployeeImport:
    now = utcnow()
    row = EmployeeImport(uploaded_by_id=user.id, filename="员工.csv", sha256="0" * 64,
                         content=b"cipher", row_count=1, created_at=now - age,
                         applied_at=now if applied else None,
                         applied_by_id=user.id if applied else None)
    db.session.add(row)
    return row


def test_tick_deletes_stale_unapplied_imports_and_old_failures_once(app, people):
    hr = people.user("hr1", "hr")
    stale = _staged(hr, age=timedelta(hours=30), applied=False)
    fresh = _staged(hr, age=timedelta(hours=2), applied=False)
    applied = _staged(hr, age=timedelta(days=40), applied=True)
    db.session.add_all([
        LoginFailure(username="x", ip="1.2.3.4", at=utcnow() - timedelta(days=200)),
        LoginFailure(username="x", ip="1.2.3.4", at=utcnow() - timedelta(days=1)),
    ])
    db.session.commit()
    stale_id, fresh_id, applied_id = stale.id, fresh.id, applied.id

    runner = app.test_cli_runner()
    first = runner.invoke(args=["lms", "tick"])
    assert first.exit_code == 0, first.output
    assert "1 stale staged imports deleted" in first.output
    assert "1 old login failures pruned" in first.output
    remaining = set(db.session.scalars(select(EmployeeImport.id)))
    assert remaining == {fresh_id, applied_id} and stale_id not in remaining
    assert db.session.scalar(select(func.count()).select_from(LoginFailure)) == 1

    second = runner.invoke(args=["lms", "tick"])
    assert "0 stale staged imports deleted" in second.output
    assert "0 old login failures pruned" in second.output
