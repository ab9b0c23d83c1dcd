"""HR changes to employees, departments and positions, and the ID-number reveal.

Every function takes the session explicitly, validates completely before changing
anything, appends the ledger entry for its change in the caller's transaction, and
never commits: the view (or CLI command) owning the unit of work does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from flask_babel import lazy_gettext as _l
from sqlalchemy import Select, select
from sqlalchemy.orm import Session, aliased

from lms import ledger
from lms.auth.permissions import is_in_team
from lms.field_errors import ErrorCollector, FieldErrors
from lms.people import idnumber
from lms.people.models import EMPLOYEE_STATUSES, Department, Employee, Position
from lms.people.tags import MAX_TAG_LENGTH, TagError, normalise_tags
from lms.people.vault import IdNumberVault

__all__ = [
    "EmployeeInput",
    "ServiceError",
    "canonical_id_number",
    "create_department",
    "create_position",
    "department_subtree_query",
    "find_id_holder",
    "id_number_fields",
    "reveal_id_number",
    "save_employee",
    "set_id_number",
    "tag_error_message",
    "update_department",
    "update_position",
]


class ServiceError(FieldErrors):
    """Input refused; ``errors`` maps a form field name ("" for the whole form) to messages."""


def _Errors() -> ErrorCollector:
    return ErrorCollector(ServiceError)


# ---------------------------------------------------------------------------
# ID numbers
# ---------------------------------------------------------------------------


def canonical_id_number(raw: str) -> str:
    """The form stored and indexed: 18 digits (old 15-digit numbers upgraded), so the
    same person's old and new number collide in the unique blind index."""
    number = idnumber.normalize(raw)
    if len(number) == 18:
        return number
    return idnumber.to_18_digits(number) or number


def id_number_fields(vault: IdNumberVault, raw: str) -> dict[str, bytes | str]:
    """The three stored columns for a (valid) ID number: ciphertext, blind index, masked."""
    number = canonical_id_number(raw)
    return {
        "id_number_cipher": vault.encrypt(number),
        "id_number_index": vault.blind_index(number),
        "id_number_masked": idnumber.mask(number),
    }


def set_id_number(vault: IdNumberVault, employee: Employee, raw: str) -> None:
    """Store a (valid) ID number on an employee, encrypted and indexed."""
    for attr, value in id_number_fields(vault, raw).items():
        setattr(employee, attr, value)


def find_id_holder(session: Session, vault: IdNumberVault, raw: str, *,
                   exclude_id: int | None = None) -> Employee | None:
    """The employee already holding this ID number (other than ``exclude_id``), if any."""
    stmt = select(Employee).where(
        Employee.id_number_index == vault.blind_index(canonical_id_number(raw))
    )
    if exclude_id is not None:
        stmt = stmt.where(Employee.id != exclude_id)
    return session.execute(stmt).scalars().first()


def reveal_id_number(session: Session, vault: IdNumberVault, employee: Employee, *,
                     reason: str, actor_id: int) -> str:
    """Decrypt an employee's ID number for HR, leaving a ledger entry naming who and why."""
    reason = (reason or "").strip()
    errors = _Errors()
    if not reason:
        errors.add("reason", _l("Give the reason for revealing the ID number."))
    if employee.id_number_cipher is None:
        errors.add("", _l("No ID number is on file for this employee."))
    errors.raise_if_any()
    number = vault.decrypt(employee.id_number_cipher)
    ledger.append(
        session,
        kind="employee.id_number_revealed",
        subject=f"employee:{employee.id}",
        payload={"employee_no": employee.employee_no, "id_number": employee.id_number_masked,
                 "reason": reason},
        actor_id=actor_id,
    )
    return number


# ---------------------------------------------------------------------------
# Employees
# ---------------------------------------------------------------------------


def tag_error_message(error: TagError) -> object:
    """A refused tag list in the words of the HR forms (employee form and rule form)."""
    if error.kind == "too_long":
        return _l("The tag “%(tag)s” is longer than %(n)d characters.", tag=error.tag,
                  n=MAX_TAG_LENGTH)
    if error.kind == "control":
        return _l("The tag “%(tag)s” contains an invisible control character; type it "
                  "again.", tag=error.tag)
    return _l("Give at most %(n)d tags.", n=error.limit)


@dataclass(frozen=True, slots=True)
class EmployeeInput:
    """What the HR form says an employee record should be."""

    employee_no: str
    name: str
    department_id: int
    position_id: int | None
    manager_no: str | None
    hire_date: date
    status: str
    email: str | None
    id_number: str | None  # None or blank: keep the number on file
    tags: list[str] | None = None  # raw pieces (lms.people.tags); None: keep the tags


def _employee_snapshot(emp: Employee) -> dict[str, str | list[str] | None]:
    """The ledger's view of an employee: codes and numbers instead of internal ids, and
    the ID number only masked."""
    return {
        "employee_no": emp.employee_no,
        "name": emp.name,
        "department": emp.department.code if emp.department else None,
        "position": emp.position.code if emp.position else None,
        "manager": emp.manager.employee_no if emp.manager else None,
        "hire_date": emp.hire_date.isoformat() if emp.hire_date else None,
        "status": emp.status,
        "email": emp.email,
        "id_number": emp.id_number_masked,
        # None rather than [] so that creating an employee without tags records no change
        "tags": emp.tags or None,
    }


def _changes(before: dict[str, str | list[str] | None], after: dict[str, str | list[str] | None]
             ) -> dict[str, list[str | list[str] | None]]:
    return {k: [before.get(k), v] for k, v in after.items() if before.get(k) != v}


def save_employee(session: Session, vault: IdNumberVault, employee: Employee | None,
                  data: EmployeeInput, *, actor_id: int) -> tuple[Employee, bool]:
    """Create (``employee`` None) or update an employee; returns it and whether it changed.

    Refuses, naming the field: a taken employee number, unknown department/position/
    manager, a manager loop, an invalid ID number, or an ID number already held by
    another employee (the impostor hired under a relative's ID).
    """
    errors = _Errors()
    own_id = employee.id if employee is not None else None

    taken = session.execute(
        select(Employee.id).where(Employee.employee_no == data.employee_no)
    ).scalar_one_or_none()
    if taken is not None and taken != own_id:
        errors.add("employee_no", _l("Employee no. %(no)s is already in use.", no=data.employee_no))

    department = session.get(Department, data.department_id)
    if department is None:
        errors.add("department_id", _l("Choose an existing department."))
    position = session.get(Position, data.position_id) if data.position_id else None
    if data.position_id and position is None:
        errors.add("position_id", _l("Choose an existing position."))
    if data.status not in EMPLOYEE_STATUSES:
        errors.add("status", _l("Choose a status from the list."))

    manager = None
    if data.manager_no:
        manager = session.execute(
            select(Employee).where(Employee.employee_no == data.manager_no)
        ).scalar_one_or_none()
        if manager is None:
            errors.add("manager_no", _l("No employee has the number %(no)s.", no=data.manager_no))
        elif own_id is not None and manager.id == own_id:
            errors.add("manager_no", _l("An employee cannot be their own manager."))
        elif own_id is not None and is_in_team(session, own_id, manager.id):
            errors.add("manager_no", _l(
                "%(no)s reports to this employee, so they cannot also be their manager "
                "(the reporting line would loop).", no=data.manager_no))

    id_number = (data.id_number or "").strip()
    if id_number:
        reason = idnumber.validate(id_number)
        if reason is not None:
            errors.add("id_number", _l("Invalid ID number: %(reason)s", reason=reason))
        else:
            holder = find_id_holder(session, vault, id_number, exclude_id=own_id)
            if holder is not None:
                errors.add("id_number", _l(
                    "This ID number already belongs to employee %(no)s. One ID number cannot "
                    "be used by two employees; verify this person's identity.",
                    no=holder.employee_no))
    tags: list[str] | None = None
    if data.tags is not None:
        try:
            tags = normalise_tags(data.tags)
        except TagError as exc:
            errors.add("tags", tag_error_message(exc))
    errors.raise_if_any()

    created = employee is None
    emp = employee if employee is not None else Employee()
    before = {} if created else _employee_snapshot(emp)
    emp.employee_no = data.employee_no
    emp.name = data.name
    emp.department = department
    emp.position = position
    emp.manager = manager
    emp.hire_date = data.hire_date
    emp.status = data.status
    emp.email = data.email or None
    if id_number and emp.id_number_index != vault.blind_index(canonical_id_number(id_number)):
        set_id_number(vault, emp, id_number)
    if tags is not None:
        emp.set_tags(tags)
    if created:
        session.add(emp)
    after = _employee_snapshot(emp)
    changes = _changes(before, after)
    if not changes:
        return emp, False
    session.flush()
    ledger.append(
        session,
        kind="employee.created" if created else "employee.updated",
        subject=f"employee:{emp.id}",
        payload={"employee_no": emp.employee_no, "changes": changes},
        actor_id=actor_id,
    )
    return emp, True


# ---------------------------------------------------------------------------
# Departments
# ---------------------------------------------------------------------------


def department_subtree_query(department_id: int) -> Select:
    """Ids of a department and all its sub-departments, at any depth (recursive CTE)."""
    tree = select(Department.id).where(Department.id == department_id).cte(
        "dept_tree", recursive=True)
    child = aliased(Department)
    tree = tree.union_all(select(child.id).where(child.parent_id == tree.c.id))
    return select(tree.c.id)


def _in_subtree(session: Session, root_id: int, department_id: int) -> bool:
    tree = department_subtree_query(root_id).subquery()
    return session.execute(
        select(tree.c.id).where(tree.c.id == department_id)
    ).first() is not None


def _department_snapshot(dept: Department) -> dict[str, str | None]:
    return {"code": dept.code, "name": dept.name,
            "parent": dept.parent.code if dept.parent else None}


def _check_department(session: Session, errors: _Errors, dept: Department | None, *,
                      code: str, name: str, parent_id: int | None) -> Department | None:
    own_id = dept.id if dept is not None else None
    if not code:
        errors.add("code", _l("Enter a code."))
    if not name:
        errors.add("name", _l("Enter a name."))
    other = session.execute(select(Department).where(Department.code == code)).scalars().first()
    if code and other is not None and other.id != own_id:
        errors.add("code", _l("Code %(code)s is already used by department %(name)s.",
                              code=code, name=other.name))
    if parent_id is None:
        return None
    parent = session.get(Department, parent_id)
    if parent is None:
        errors.add("parent_id", _l("Choose an existing parent department."))
    elif own_id is not None and parent.id == own_id:
        errors.add("parent_id", _l("A department cannot be its own parent."))
    elif own_id is not None and _in_subtree(session, own_id, parent.id):
        errors.add("parent_id", _l(
            "%(name)s is a sub-department of this department; a department cannot be moved "
            "under its own sub-department.", name=parent.name))
    return parent


def create_department(session: Session, *, code: str, name: str, parent_id: int | None,
                      actor_id: int) -> Department:
    errors = _Errors()
    code, name = code.strip(), name.strip()
    parent = _check_department(session, errors, None, code=code, name=name, parent_id=parent_id)
    errors.raise_if_any()
    dept = Department(code=code, name=name, parent=parent)
    session.add(dept)
    session.flush()
    ledger.append(session, kind="department.created", subject=f"department:{dept.id}",
                  payload=_department_snapshot(dept), actor_id=actor_id)
    return dept


def update_department(session: Session, dept: Department, *, code: str, name: str,
                      parent_id: int | None, actor_id: int) -> bool:
    """Rename or move a department; returns whether anything changed."""
    errors = _Errors()
    code, name = code.strip(), name.strip()
    parent = _check_department(session, errors, dept, code=code, name=name, parent_id=parent_id)
    errors.raise_if_any()
    before = _department_snapshot(dept)
    dept.code, dept.name, dept.parent = code, name, parent
    changes = _changes(before, _department_snapshot(dept))
    if not changes:
        return False
    session.flush()
    ledger.append(session, kind="department.updated", subject=f"department:{dept.id}",
                  payload={"code": dept.code, "changes": changes}, actor_id=actor_id)
    return True


# ---------------------------------------------------------------------------
# Positions
# ---------------------------------------------------------------------------


def _check_position(session: Session, errors: _Errors, pos: Position | None, *,
                    code: str, name: str) -> None:
    own_id = pos.id if pos is not None else None
    if not code:
        errors.add("code", _l("Enter a code."))
    if not name:
        errors.add("name", _l("Enter a name."))
    by_code = session.execute(select(Position).where(Position.code == code)).scalars().first()
    if code and by_code is not None and by_code.id != own_id:
        errors.add("code", _l("Code %(code)s is already used by position %(name)s.",
                              code=code, name=by_code.name))
    by_name = session.execute(select(Position).where(Position.name == name)).scalars().first()
    if name and by_name is not None and by_name.id != own_id:
        errors.add("name", _l("The name %(name)s is already used by position %(code)s.",
                              name=name, code=by_name.code))


def create_position(session: Session, *, code: str, name: str, actor_id: int) -> Position:
    errors = _Errors()
    code, name = code.strip(), name.strip()
    _check_position(session, errors, None, code=code, name=name)
    errors.raise_if_any()
    pos = Position(code=code, name=name)
    session.add(pos)
    session.flush()
    ledger.append(session, kind="position.created", subject=f"position:{pos.id}",
                  payload={"code": code, "name": name}, actor_id=actor_id)
    return pos


def update_position(session: Session, pos: Position, *, code: str, name: str,
                    actor_id: int) -> bool:
    errors = _Errors()
    code, name = code.strip(), name.strip()
    _check_position(session, errors, pos, code=code, name=name)
    errors.raise_if_any()
    before = {"code": pos.code, "name": pos.name}
    pos.code, pos.name = code, name
    changes = _changes(before, {"code": code, "name": name})
    if not changes:
        return False
    session.flush()
    ledger.append(session, kind="position.updated", subject=f"position:{pos.id}",
                  payload={"code": code, "changes": changes}, actor_id=actor_id)
    return True
