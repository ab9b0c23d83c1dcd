"""Creating and changing assignment rules (HR), and what HR sees before saving one.

A rule is validated in full before anything is written, and each change is one ledger
entry ("assignment.rule_created" / "assignment.rule_updated") with what changed.
Changing a rule never touches assignments it already made: they are evidence of what
was required at the time; the changed rule applies from its next evaluation.
Nothing here commits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import case, delete, func, select
from sqlalchemy.orm import Session

from courses.models import Course
from lms import ledger
from lms.compliance.engine import departments_with_subtrees, local_date, rule_audience
from lms.compliance.manual import LIVE_STATUSES, overdue_condition
from lms.compliance.models import (
    APPLIES_TO,
    MAX_DUE_WORKING_DAYS,
    MAX_RECUR_MONTHS,
    Assignment,
    AssignmentRule,
    RuleDepartment,
    RulePosition,
)
from lms.dbtypes import utcnow
from lms.field_errors import ErrorCollector, FieldErrors
from lms.people.models import (
    EMPLOYEE_STATUSES,
    ROLES,
    Department,
    Employee,
    EmployeeTag,
    Position,
)
from lms.people.services import tag_error_message
from lms.people.tags import TagError, normalise_tags, valid_tags

__all__ = [
    "RuleCounts",
    "RuleError",
    "RuleInput",
    "create_rule",
    "input_of",
    "preview_count",
    "rule_counts",
    "rule_links",
    "tag_counts",
    "update_rule",
]

MAX_NAME = 200


class RuleError(FieldErrors):
    """A rule refused; messages keyed by form field."""


@dataclass
class RuleInput:
    """Everything HR sets on a rule (empty department/position/role lists mean "any")."""

    name: str
    course_id: int | None
    department_ids: list[int] = field(default_factory=list)
    include_subdepartments: bool = True
    position_ids: list[int] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)  # raw pieces; any of them (none: any)
    statuses: list[str] = field(default_factory=lambda: ["active"])
    hired_from: date | None = None
    hired_to: date | None = None
    applies_to: str = "everyone"
    due_working_days: int | None = 10
    retrain_on_new_version: bool = True
    is_active: bool = True
    recur_months: int | None = None  # recertify N months after each completion


def _ordered(values: list[str], allowed: tuple[str, ...]) -> list[str]:
    return [v for v in allowed if v in set(values)]


def _validate(session: Session, data: RuleInput, rule: AssignmentRule | None) -> RuleInput:
    """Check everything at once; return the input normalised (trimmed, de-duplicated)."""
    errors = ErrorCollector(RuleError)
    name = (data.name or "").strip()
    if not name:
        errors.add("name", _l("Enter a name for the rule."))
    elif len(name) > MAX_NAME:
        errors.add("name", _l("Keep the name to %(n)d characters or fewer.", n=MAX_NAME))
    else:
        other = session.scalar(select(AssignmentRule.id).where(AssignmentRule.name == name))
        if other is not None and (rule is None or other != rule.id):
            errors.add("name", _l("A rule named %(name)s exists already.", name=name))
    if data.course_id is None or session.get(Course, data.course_id) is None:
        errors.add("course_id", _l("Choose a course."))
    department_ids = sorted(set(data.department_ids))
    if department_ids and session.scalar(select(func.count()).select_from(Department).where(
            Department.id.in_(department_ids))) != len(department_ids):
        errors.add("department_ids", _l("Choose departments from the list."))
    position_ids = sorted(set(data.position_ids))
    if position_ids and session.scalar(select(func.count()).select_from(Position).where(
            Position.id.in_(position_ids))) != len(position_ids):
        errors.add("position_ids", _l("Choose positions from the list."))
    if set(data.roles) - set(ROLES):
        errors.add("roles", _l("Choose roles from the list."))
    tags: list[str] = []
    try:
        tags = normalise_tags(data.tags)
    except TagError as exc:
        errors.add("tags", tag_error_message(exc))
    if set(data.statuses) - set(EMPLOYEE_STATUSES):
        errors.add("statuses", _l("Choose employee statuses from the list."))
    elif not data.statuses:
        errors.add("statuses", _l("Choose at least one employee status (usually Active)."))
    if data.hired_from and data.hired_to and data.hired_from > data.hired_to:
        errors.add("hired_to", _l("The end of the hire-date range (%(to)s) is before its "
                                  "start (%(start)s).", to=data.hired_to.isoformat(),
                                  start=data.hired_from.isoformat()))
    if data.applies_to not in APPLIES_TO:
        errors.add("applies_to", _l("Choose whom the rule applies to."))
    days = data.due_working_days
    if days is None or not 1 <= days <= MAX_DUE_WORKING_DAYS:
        errors.add("due_working_days", _l("Enter between 1 and %(max)d working days.",
                                          max=MAX_DUE_WORKING_DAYS))
    if data.recur_months is not None and not 1 <= data.recur_months <= MAX_RECUR_MONTHS:
        errors.add("recur_months", _l("Enter between 1 and %(max)d months, or leave it empty "
                                      "for no recertification.", max=MAX_RECUR_MONTHS))
    errors.raise_if_any()
    return RuleInput(
        name=name, course_id=data.course_id, department_ids=department_ids,
        include_subdepartments=bool(data.include_subdepartments), position_ids=position_ids,
        roles=_ordered(data.roles, ROLES), tags=tags,
        statuses=_ordered(data.statuses, EMPLOYEE_STATUSES),
        hired_from=data.hired_from, hired_to=data.hired_to, applies_to=data.applies_to,
        due_working_days=days, retrain_on_new_version=bool(data.retrain_on_new_version),
        is_active=bool(data.is_active), recur_months=data.recur_months)


def _apply(rule: AssignmentRule, data: RuleInput) -> None:
    rule.name = data.name
    assert data.course_id is not None
    rule.course_id = data.course_id
    rule.include_subdepartments = data.include_subdepartments
    rule.roles = json.dumps(data.roles)
    rule.tags = json.dumps(data.tags, ensure_ascii=False)
    rule.statuses = json.dumps(data.statuses)
    rule.hired_from, rule.hired_to = data.hired_from, data.hired_to
    rule.applies_to = data.applies_to
    assert data.due_working_days is not None
    rule.due_working_days = data.due_working_days
    rule.retrain_on_new_version = data.retrain_on_new_version
    rule.is_active = data.is_active
    rule.recur_months = data.recur_months


def _set_links(session: Session, rule: AssignmentRule, data: RuleInput) -> None:
    session.execute(delete(RuleDepartment).where(RuleDepartment.rule_id == rule.id,
                                                 RuleDepartment.department_id.not_in(
                                                     data.department_ids)))
    session.execute(delete(RulePosition).where(RulePosition.rule_id == rule.id,
                                               RulePosition.position_id.not_in(
                                                   data.position_ids)))
    have_d, have_p = rule_links(session, [rule.id]).get(rule.id, ([], []))
    kept_d, kept_p = {d.id for d in have_d}, {p.id for p in have_p}
    session.add_all(RuleDepartment(rule_id=rule.id, department_id=d)
                    for d in data.department_ids if d not in kept_d)
    session.add_all(RulePosition(rule_id=rule.id, position_id=p)
                    for p in data.position_ids if p not in kept_p)
    session.flush()


def _snapshot(session: Session, rule: AssignmentRule) -> dict[str, Any]:
    """The rule as the ledger records it (codes, not ids, so it reads without the DB)."""
    departments, positions = rule_links(session, [rule.id]).get(rule.id, ([], []))
    course = session.get(Course, rule.course_id)
    return {
        "name": rule.name, "course_code": course.code if course else None,
        "departments": sorted(d.code for d in departments),
        "include_subdepartments": rule.include_subdepartments,
        "positions": sorted(p.code for p in positions),
        "roles": json.loads(rule.roles), "tags": json.loads(rule.tags or "[]"),
        "statuses": json.loads(rule.statuses),
        "hired_from": rule.hired_from.isoformat() if rule.hired_from else None,
        "hired_to": rule.hired_to.isoformat() if rule.hired_to else None,
        "applies_to": rule.applies_to, "due_working_days": rule.due_working_days,
        "retrain_on_new_version": rule.retrain_on_new_version, "is_active": rule.is_active,
        "recur_months": rule.recur_months,
        "effective_from": rule.effective_from.isoformat(),
    }


def create_rule(session: Session, data: RuleInput, *, actor_id: int, now: datetime
                ) -> AssignmentRule:
    """A new rule, effective from today's local date (the start for "new hires")."""
    data = _validate(session, data, None)
    rule = AssignmentRule(effective_from=local_date(now), created_by_id=actor_id,
                          created_at=now, updated_at=now)
    _apply(rule, data)
    session.add(rule)
    session.flush()
    _set_links(session, rule, data)
    ledger.append(session, kind="assignment.rule_created", subject=f"rule:{rule.id}",
                  actor_id=actor_id, payload=_snapshot(session, rule))
    return rule


def update_rule(session: Session, rule: AssignmentRule, data: RuleInput, *, actor_id: int,
                now: datetime) -> bool:
    """Change a rule (never its assignments); returns whether anything changed."""
    data = _validate(session, data, rule)
    before = _snapshot(session, rule)
    _apply(rule, data)
    session.flush()
    _set_links(session, rule, data)
    after = _snapshot(session, rule)
    changes = {k: {"old": before[k], "new": after[k]} for k in after if before[k] != after[k]}
    if not changes:
        return False
    rule.updated_at = now
    ledger.append(session, kind="assignment.rule_updated", subject=f"rule:{rule.id}",
                  actor_id=actor_id, payload={"name": rule.name, "changes": changes})
    return True


def input_of(session: Session, rule: AssignmentRule) -> RuleInput:
    """A saved rule as form input."""
    departments, positions = rule_links(session, [rule.id]).get(rule.id, ([], []))
    return RuleInput(
        name=rule.name, course_id=rule.course_id, department_ids=[d.id for d in departments],
        include_subdepartments=rule.include_subdepartments,
        position_ids=[p.id for p in positions], roles=json.loads(rule.roles),
        tags=json.loads(rule.tags or "[]"),
        statuses=json.loads(rule.statuses), hired_from=rule.hired_from,
        hired_to=rule.hired_to, applies_to=rule.applies_to,
        due_working_days=rule.due_working_days,
        retrain_on_new_version=rule.retrain_on_new_version, is_active=rule.is_active,
        recur_months=rule.recur_months)


def preview_count(session: Session, data: RuleInput, *, effective_from: date | None = None
                  ) -> int:
    """How many people the audience names now (enabled logins), without saving anything.

    The engine's ``rule_audience`` reads departments and positions from the link tables
    of a saved rule; for an unsaved one it is given a transient rule (no links, so those
    criteria are open) and the engine's department/position filters are added here.
    """
    probe = AssignmentRule(
        name="", course_id=data.course_id, include_subdepartments=data.include_subdepartments,
        roles=json.dumps([r for r in data.roles if r in ROLES]),
        tags=json.dumps(valid_tags(data.tags), ensure_ascii=False),
        statuses=json.dumps([s for s in data.statuses if s in EMPLOYEE_STATUSES]),
        hired_from=data.hired_from, hired_to=data.hired_to,
        applies_to=data.applies_to if data.applies_to in APPLIES_TO else "everyone",
        effective_from=effective_from or local_date(utcnow()))
    stmt = rule_audience(session, probe)
    if data.department_ids:
        if data.include_subdepartments:
            stmt = stmt.where(Employee.department_id.in_(
                departments_with_subtrees(data.department_ids)))
        else:
            stmt = stmt.where(Employee.department_id.in_(data.department_ids))
    if data.position_ids:
        stmt = stmt.where(Employee.position_id.in_(data.position_ids))
    return session.scalar(select(func.count()).select_from(stmt.subquery())) or 0


def tag_counts(session: Session, tags: list[str]) -> list[tuple[str, int]]:
    """How many employees carry each of the (raw) tags, in ONE grouped query, so HR sees
    in the preview a tag that nobody carries (usually a typo) before saving the rule."""
    wanted = valid_tags(tags)
    if not wanted:
        return []
    found = dict(session.execute(
        select(EmployeeTag.tag, func.count()).where(EmployeeTag.tag.in_(wanted))
        .group_by(EmployeeTag.tag)).all())
    return [(t, found.get(t, 0)) for t in wanted]


# --- read side of the rule list ----------------------------------------------------------


def rule_links(session: Session, rule_ids: list[int]
               ) -> dict[int, tuple[list[Department], list[Position]]]:
    """Each rule's departments and positions (two queries for any number of rules)."""
    out: dict[int, tuple[list[Department], list[Position]]] = {r: ([], []) for r in rule_ids}
    if not rule_ids:
        return out
    for rule_id, dept in session.execute(
            select(RuleDepartment.rule_id, Department)
            .join(Department, Department.id == RuleDepartment.department_id)
            .where(RuleDepartment.rule_id.in_(rule_ids)).order_by(Department.code)):
        out[rule_id][0].append(dept)
    for rule_id, pos in session.execute(
            select(RulePosition.rule_id, Position)
            .join(Position, Position.id == RulePosition.position_id)
            .where(RulePosition.rule_id.in_(rule_ids)).order_by(Position.code)):
        out[rule_id][1].append(pos)
    return out


@dataclass(frozen=True)
class RuleCounts:
    live: int = 0  # open or suspended
    completed: int = 0
    overdue: int = 0  # open and past the due date


def rule_counts(session: Session, *, today: date) -> dict[int, RuleCounts]:
    """Assignments per rule by state, in ONE aggregate query."""
    a = Assignment
    rows = session.execute(
        select(a.rule_id,
               func.count(case((a.status.in_(LIVE_STATUSES), 1))),
               func.count(case((a.status == "completed", 1))),
               func.count(case((overdue_condition(today), 1))))
        .where(a.rule_id.is_not(None)).group_by(a.rule_id)).all()
    return {rule_id: RuleCounts(live, done, overdue) for rule_id, live, done, overdue in rows}
