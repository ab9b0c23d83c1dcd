"""Administration as plain functions: users and roles, the work calendar.

Every function takes the SQLAlchemy session and explicit arguments, writes the change
and its ledger entry in the caller's transaction and never commits, so the view (or a
CLI command) that owns the unit of work commits both or neither. Bad input raises
``AdminInputError`` naming the form field it belongs to, before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import chinese_calendar
from flask_babel import gettext as _
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lms.auth.passwords import hash_password, password_problem, password_problem_message
from lms.auth.sessions import revoke_user_sessions
from lms.dbtypes import utcnow
from lms.ledger import append
from lms.people.models import ROLES, Employee, User
from lms.workday_overrides import CalendarYear, WorkdayOverride
from lms.workdays import WorkCalendar

# Years an admin may declare: wide enough for any plan, narrow enough to catch typos.
MIN_YEAR, MAX_YEAR = 2000, 2100


class AdminInputError(ValueError):
    """A refused administrative change; ``field`` names the form field to blame."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# --- users -------------------------------------------------------------------------


def _username_taken(session: Session, username: str) -> bool:
    return session.scalar(
        select(User.id).where(func.lower(User.username) == username.lower())
    ) is not None


def _checked_roles(roles: Iterable[str]) -> set[str]:
    chosen = set(roles)
    if not chosen:
        raise AdminInputError("roles", _("Choose at least one role."))
    unknown = chosen - set(ROLES)
    if unknown:
        raise AdminInputError("roles", _("Unknown role: %(role)s", role=", ".join(sorted(unknown))))
    return chosen


def _checked_password(password: str, username: str, field: str = "password") -> str:
    problem = password_problem(password, username=username)
    if problem:
        raise AdminInputError(field, password_problem_message(problem))
    return password


def _employee_to_link(session: Session, employee_no: str | None, user: User | None
                      ) -> Employee | None:
    """The employee named by ``employee_no`` (blank: none), refusing one linked to another
    login: one person, one account, or their training records would be ambiguous."""
    employee_no = (employee_no or "").strip()
    if not employee_no:
        return None
    employee = session.execute(
        select(Employee).where(Employee.employee_no == employee_no)
    ).scalar_one_or_none()
    if employee is None:
        raise AdminInputError("employee_no",
                              _("No employee has the number %(no)s.", no=employee_no))
    linked = session.execute(
        select(User.username).where(User.employee_id == employee.id)
    ).scalar_one_or_none()
    if linked is not None and (user is None or linked != user.username):
        raise AdminInputError(
            "employee_no",
            _("Employee %(no)s is already linked to the user %(user)s.",
              no=employee_no, user=linked),
        )
    return employee


def create_user(session: Session, *, username: str, display_name: str, email: str | None,
                employee_no: str | None, roles: Iterable[str], password: str,
                actor_id: int | None) -> User:
    """Create a login with its roles and initial password; ledger ``user.created``."""
    username = username.strip().lower()
    if not username:
        raise AdminInputError("username", _("Enter a username."))
    if _username_taken(session, username):
        raise AdminInputError("username",
                              _("The username %(name)s is already taken.", name=username))
    chosen = _checked_roles(roles)
    employee = _employee_to_link(session, employee_no, None)
    _checked_password(password, username)
    user = User(username=username, display_name=display_name.strip() or username,
                email=(email or "").strip() or None, employee=employee,
                password_hash=hash_password(password), password_changed_at=utcnow())
    user.set_roles(chosen)
    session.add(user)
    session.flush()
    append(session, kind="user.created", subject=f"user:{user.id}", actor_id=actor_id,
           payload={"username": username, "display_name": user.display_name,
                    "roles": sorted(chosen),
                    "employee_no": employee.employee_no if employee else None,
                    "via": "admin"})
    return user


def update_profile(session: Session, user: User, *, display_name: str, email: str | None,
                   employee_no: str | None, actor_id: int | None) -> bool:
    """Change name, e-mail and employee link; ledger ``user.updated`` if anything changed."""
    employee = _employee_to_link(session, employee_no, user)
    new = {"display_name": display_name.strip() or user.username,
           "email": (email or "").strip() or None,
           "employee_no": employee.employee_no if employee else None}
    old = {"display_name": user.display_name, "email": user.email,
           "employee_no": user.employee.employee_no if user.employee else None}
    if new == old:
        return False
    user.display_name = new["display_name"]
    user.email = new["email"]
    user.employee = employee
    session.flush()
    changed = sorted(k for k in new if new[k] != old[k])
    append(session, kind="user.updated", subject=f"user:{user.id}", actor_id=actor_id,
           payload={"username": user.username,
                    "old": {k: old[k] for k in changed}, "new": {k: new[k] for k in changed}})
    return True


def change_roles(session: Session, user: User, roles: Iterable[str], *, actor: User) -> bool:
    """Replace a user's roles; an admin may not take the admin role from themself (they
    could lock everybody out). Ledger ``user.roles_changed`` with old and new roles."""
    chosen = _checked_roles(roles)
    old = set(user.roles)
    if chosen == old:
        return False
    if user.id == actor.id and "admin" in old and "admin" not in chosen:
        raise AdminInputError("roles", _("You cannot remove your own administrator role."))
    user.set_roles(chosen)
    session.flush()
    append(session, kind="user.roles_changed", subject=f"user:{user.id}", actor_id=actor.id,
           payload={"username": user.username, "old": sorted(old), "new": sorted(chosen)})
    return True


def set_enabled(session: Session, user: User, enabled: bool, *, actor: User) -> int:
    """Enable or disable a login. Disabling revokes every live session at once, so a
    cookie already in a browser stops working on its next request. Returns the number
    of sessions revoked. Ledger ``user.disabled`` / ``user.enabled``."""
    if not enabled and user.id == actor.id:
        raise AdminInputError("enabled", _("You cannot disable your own account."))
    if bool(user.is_enabled) == enabled:
        return 0
    user.is_enabled = enabled
    revoked = 0 if enabled else revoke_user_sessions(session, user.id, reason="disabled")
    session.flush()
    payload: dict[str, object] = {"username": user.username}
    if not enabled:
        payload["sessions_revoked"] = revoked
    append(session, kind="user.enabled" if enabled else "user.disabled",
           subject=f"user:{user.id}", actor_id=actor.id, payload=payload)
    return revoked


def reset_password(session: Session, user: User, password: str, *, actor: User) -> int:
    """Set a new password chosen by an admin and end all the user's sessions (whoever held
    the old password is out). Returns sessions revoked. Ledger ``user.password_reset``."""
    _checked_password(password, user.username, field="new_password")
    user.password_hash = hash_password(password)
    user.password_changed_at = utcnow()
    revoked = revoke_user_sessions(session, user.id, reason="password_reset")
    append(session, kind="user.password_reset", subject=f"user:{user.id}", actor_id=actor.id,
           payload={"username": user.username, "sessions_revoked": revoked})
    return revoked


# --- work calendar -----------------------------------------------------------------


def add_override(session: Session, *, day: date, is_workday: bool, note: str,
                 actor_id: int | None) -> WorkdayOverride:
    """Mark one date as a working day or a holiday, over the statutory calendar."""
    note = note.strip()
    if not note:
        raise AdminInputError("note", _("Enter a note saying why this day is changed."))
    if session.get(WorkdayOverride, day) is not None:
        raise AdminInputError(
            "day", _("%(day)s already has an override; delete it first to change it.",
                     day=day.isoformat()))
    row = WorkdayOverride(day=day, is_workday=is_workday, note=note, created_by_id=actor_id,
                          created_at=utcnow())
    session.add(row)
    session.flush()
    append(session, kind="calendar.override_added", subject=f"calendar:{day.isoformat()}",
           actor_id=actor_id,
           payload={"day": day.isoformat(), "is_workday": is_workday, "note": note})
    return row


def remove_override(session: Session, *, day: date, actor_id: int | None) -> None:
    """Delete an override (the statutory rule applies again); the ledger keeps what it was."""
    row = session.get(WorkdayOverride, day)
    if row is None:
        raise AdminInputError("day", _("%(day)s has no override.", day=day.isoformat()))
    payload = {"day": day.isoformat(), "is_workday": row.is_workday, "note": row.note}
    session.delete(row)
    session.flush()
    append(session, kind="calendar.override_removed", subject=f"calendar:{day.isoformat()}",
           actor_id=actor_id, payload=payload)


def declare_year(session: Session, *, year: int, note: str, actor_id: int | None
                 ) -> CalendarYear:
    """Declare that every holiday of ``year`` has been entered as an override, so the
    calendar may count Monday–Friday as working days there instead of refusing."""
    note = note.strip()
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise AdminInputError("year", _("Enter a year between %(lo)d and %(hi)d.",
                                        lo=MIN_YEAR, hi=MAX_YEAR))
    if not note:
        raise AdminInputError("note", _("Enter a note, e.g. the State Council notice used."))
    if WorkCalendar().is_known_year(year):
        raise AdminInputError("year", _("%(year)d is already in the statutory holiday data; "
                                        "it needs no declaration.", year=year))
    if session.get(CalendarYear, year) is not None:
        raise AdminInputError("year", _("%(year)d is already declared.", year=year))
    row = CalendarYear(year=year, note=note, declared_by_id=actor_id, declared_at=utcnow())
    session.add(row)
    session.flush()
    overrides = session.scalar(
        select(func.count()).select_from(WorkdayOverride)
        .where(WorkdayOverride.day >= date(year, 1, 1), WorkdayOverride.day <= date(year, 12, 31))
    )
    append(session, kind="calendar.year_declared", subject=f"calendar:{year}",
           actor_id=actor_id, payload={"year": year, "note": note, "overrides": overrides})
    return row


# --- describing days (pure) --------------------------------------------------------


@dataclass(frozen=True)
class DayInfo:
    """One date as the calendar sees it, with the reason, for display.

    ``kind`` is one of: ``workday``, ``weekend``, ``holiday`` (statutory), ``adjusted``
    (a statutory 调休 working weekend), ``override_workday``, ``override_holiday``.
    ``name`` is the holiday's name or the override's note.
    """

    day: date
    is_workday: bool
    kind: str
    name: str = ""


def describe_day(calendar: WorkCalendar, day: date, notes: Mapping[date, str] | None = None
                 ) -> DayInfo:
    """Why ``day`` is or is not a working day; raises UnknownYearError like the calendar."""
    working = calendar.is_workday(day)
    if day in calendar.overrides:
        return DayInfo(day, working, "override_workday" if working else "override_holiday",
                       (notes or {}).get(day, ""))
    weekend = day.weekday() >= 5
    if working:
        adjusted = chinese_calendar.workdays.get(day) if weekend else None
        return DayInfo(day, True, "adjusted" if adjusted else "workday", str(adjusted or ""))
    holiday = chinese_calendar.holidays.get(day)
    if holiday is not None:
        return DayInfo(day, False, "holiday", str(holiday))
    return DayInfo(day, False, "weekend")


def days_off_between(calendar: WorkCalendar, start: date, end: date,
                     notes: Mapping[date, str] | None = None) -> list[DayInfo]:
    """The non-working days strictly between ``start`` and ``end`` (either order),
    i.e. what a due-date count skipped."""
    lo, hi = sorted((start, end))
    out: list[DayInfo] = []
    day = lo + timedelta(days=1)
    while day < hi:
        info = describe_day(calendar, day, notes)
        if not info.is_workday:
            out.append(info)
        day += timedelta(days=1)
    return out


def override_notes(session: Session) -> dict[date, str]:
    return dict(session.execute(select(WorkdayOverride.day, WorkdayOverride.note)).all())


def shanghai_today(now: datetime | None = None) -> date:
    """Today's date in China (UTC+8, no daylight saving)."""
    return ((now or utcnow()) + timedelta(hours=8)).date()
