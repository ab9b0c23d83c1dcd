"""Role checks for views, and the object-level rule for seeing an employee's record."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TypeVar

from flask import abort
from flask_login import current_user, login_required
from sqlalchemy import literal, select
from sqlalchemy.orm import Session, aliased

from lms.people.models import Employee, User

F = TypeVar("F", bound=Callable)

# Roles that may see every employee's record.
HR_ROLES = ("hr", "admin")


def roles_required(*roles: str) -> Callable[[F], F]:
    """Require login and at least one of ``roles``; others get 403."""

    def decorate(view: F) -> F:
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if not current_user.has_role(*roles):
                abort(403)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorate


def report_ids_query(manager_id: int):
    """A recursive CTE selecting ids of everyone reporting to ``manager_id``, at any depth."""
    reports = select(Employee.id).where(Employee.manager_id == manager_id).cte(
        "reports", recursive=True
    )
    deeper = aliased(Employee)
    reports = reports.union(select(deeper.id).where(deeper.manager_id == reports.c.id))
    return select(reports.c.id)


def is_in_team(session: Session, manager_employee_id: int, employee_id: int) -> bool:
    """Whether ``employee_id`` reports, directly or indirectly, to the manager."""
    sub = report_ids_query(manager_employee_id).subquery()
    return session.execute(
        select(literal(1)).select_from(sub).where(sub.c.id == employee_id)
    ).first() is not None


def can_view_employee(session: Session, user: User, employee: Employee) -> bool:
    """HR and admins see everyone; a manager sees their reports; anyone sees themself."""
    if user.has_role(*HR_ROLES):
        return True
    if user.employee_id is not None and user.employee_id == employee.id:
        return True
    if user.has_role("manager") and user.employee_id is not None:
        return is_in_team(session, user.employee_id, employee.id)
    return False
