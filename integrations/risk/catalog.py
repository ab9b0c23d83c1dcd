"""The admin's catalogue: risk types and the courses each one calls for.

Every change is a ledger entry (a mapping decides who is assigned what when a signal
comes, so it is evidence of the company's intent); nothing here commits. A risk type's
code is what integrators send and is fixed once created.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from courses.models import Course
from integrations.risk.models import CODE_PATTERN, RiskType, RiskTypeCourse
from lms import ledger
from lms.compliance.models import MAX_DUE_WORKING_DAYS
from lms.field_errors import ErrorCollector, FieldErrors

__all__ = ["RiskTypeError", "RiskTypeInput", "create_risk_type", "remove_mapping",
           "set_mapping", "update_risk_type"]

MAX_NAME = 100
MAX_DESCRIPTION = 2000
_CODE = re.compile(CODE_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RiskTypeError(FieldErrors):
    """A risk type or mapping refused; messages keyed by form field."""


@dataclass(frozen=True)
class RiskTypeInput:
    code: str
    name_zh: str
    name_en: str
    description: str = ""


def _check_names(errors: ErrorCollector, data: RiskTypeInput) -> None:
    for name, value in (("name_zh", data.name_zh), ("name_en", data.name_en)):
        if not value.strip():
            errors.add(name, _l("Enter a name."))
        elif len(value.strip()) > MAX_NAME:
            errors.add(name, _l("Keep the name to %(n)d characters or fewer.", n=MAX_NAME))
        elif _CONTROL.search(value):
            errors.add(name, _l("Enter the name on one line, without control characters."))
    if "\x00" in data.description:
        errors.add("description", _l("The description holds a NUL character; remove it."))
    elif len(data.description) > MAX_DESCRIPTION:
        errors.add("description", _l("Keep the description to %(n)d characters or fewer.",
                                     n=MAX_DESCRIPTION))


def create_risk_type(session: Session, data: RiskTypeInput, *, actor_id: int | None,
                     now: datetime) -> RiskType:
    errors = ErrorCollector(RiskTypeError)
    code = data.code.strip()
    if not _CODE.fullmatch(code):
        errors.add("code", _l("Use 2 to 32 lower-case letters, digits and underscores, "
                              "starting with a letter (e.g. identity_fraud)."))
    elif session.scalar(select(exists().where(RiskType.code == code))):
        errors.add("code", _l("The code %(code)s is taken.", code=code))
    _check_names(errors, data)
    errors.raise_if_any()
    risk_type = RiskType(code=code, name_zh=data.name_zh.strip(), name_en=data.name_en.strip(),
                         description=data.description.strip(), created_by_id=actor_id,
                         created_at=now, updated_at=now)
    session.add(risk_type)
    session.flush()
    ledger.append(session, kind="risk.type_created", subject=f"risk_type:{risk_type.id}",
                  actor_id=actor_id, payload={"code": code, "name_zh": risk_type.name_zh,
                                              "name_en": risk_type.name_en})
    return risk_type


def update_risk_type(session: Session, risk_type: RiskType, data: RiskTypeInput, *,
                     actor_id: int | None, now: datetime) -> bool:
    """Change the names and description (not the code); False when nothing changed."""
    errors = ErrorCollector(RiskTypeError)
    _check_names(errors, data)
    errors.raise_if_any()
    new = {"name_zh": data.name_zh.strip(), "name_en": data.name_en.strip(),
           "description": data.description.strip()}
    old = {name: getattr(risk_type, name) for name in new}
    if new == old:
        return False
    for name, value in new.items():
        setattr(risk_type, name, value)
    risk_type.updated_at = now
    ledger.append(session, kind="risk.type_updated", subject=f"risk_type:{risk_type.id}",
                  actor_id=actor_id, payload={
                      "code": risk_type.code,
                      "changes": {k: {"old": old[k], "new": new[k]}
                                  for k in new if old[k] != new[k]}})
    return True


def set_mapping(session: Session, risk_type: RiskType, *, course_id: int | None,
                due_working_days: int | None, actor_id: int | None,
                now: datetime) -> RiskTypeCourse:
    """Map a course to the risk type, or change the due days of an existing mapping."""
    errors = ErrorCollector(RiskTypeError)
    course = session.get(Course, course_id) if course_id is not None else None
    if course is None:
        errors.add("course_id", _l("Choose a course."))
    if due_working_days is None or not 1 <= due_working_days <= MAX_DUE_WORKING_DAYS:
        errors.add("due_working_days", _l("Enter between 1 and %(max)d working days.",
                                          max=MAX_DUE_WORKING_DAYS))
    errors.raise_if_any()
    assert course is not None and due_working_days is not None
    mapping = session.get(RiskTypeCourse, (risk_type.id, course.id))
    old_days = mapping.due_working_days if mapping else None
    if mapping is None:
        mapping = RiskTypeCourse(course_id=course.id, due_working_days=due_working_days,
                                 created_at=now)
        risk_type.courses.append(mapping)
    elif old_days == due_working_days:
        return mapping
    mapping.due_working_days = due_working_days
    session.flush()
    ledger.append(session, kind="risk.mapping_set", subject=f"risk_type:{risk_type.id}",
                  actor_id=actor_id, payload={"code": risk_type.code, "course": course.code,
                                              "due_working_days": {"old": old_days,
                                                                   "new": due_working_days}})
    return mapping


def remove_mapping(session: Session, risk_type: RiskType, course_id: int, *,
                   actor_id: int | None) -> bool:
    """Unmap a course (signals already received keep their assignments); False when it
    was not mapped."""
    mapping = session.get(RiskTypeCourse, (risk_type.id, course_id))
    if mapping is None:
        return False
    code = mapping.course.code
    risk_type.courses.remove(mapping)  # delete-orphan: the row goes
    session.flush()
    ledger.append(session, kind="risk.mapping_removed", subject=f"risk_type:{risk_type.id}",
                  actor_id=actor_id, payload={"code": risk_type.code, "course": code})
    return True
