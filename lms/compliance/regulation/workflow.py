"""The life of a regulation update: new → triaged | not_relevant → material_ready →
pushed → closed.

Every transition starts with ONE guarded statement, ``UPDATE ... SET state = <to>
WHERE id = ? AND state = <from>``: of two people acting on the same update at the same
moment exactly one matches a row (the other's UPDATE waits for the first to commit and
then matches nothing), and the loser is refused with the state the update is really
in. Then the work of the step, then the ``RegulationEvent`` row and its ledger entry
(``lms.compliance.regulation.history``), all in the caller's transaction: a refusal
anywhere rolls back everything. Nothing here commits.

The audience is an ``AssignmentRule`` owned by the update, written through HR's rule
service (``lms.compliance.rules``) so it is validated, previewed and recorded like any
rule. A rule needs a course, so triage also creates the update's own course
``REG-<id>`` (topic = the update's topic, an empty draft); the rule is created
INACTIVE and points at it. "Material ready" either fills that course with the briefing
(a document lesson, plus a policy to e-sign when asked) and publishes it, or points the
rule at an existing course with a published version. Pushing switches the rule on and
evaluates it once (``engine.evaluate_rule``): assignments and enrolments for exactly
the audience, due in N working days, shown in "My learning" like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from assessments.signing import (
    add_policy_lesson,
    add_text_version,
    create_document,
)
from assessments.signing import publish_version as publish_policy_version
from courses.authoring import (
    CourseInput,
    add_document_lesson,
    create_course,
    draft_of,
    new_version,
    publish_version,
)
from courses.models import RISK_TOPICS, Course, CourseVersion
from lms.compliance.engine import evaluate_rule, latest_published_version, local_date
from lms.compliance.models import MAX_DUE_WORKING_DAYS, Assignment, AssignmentRule
from lms.compliance.regulation.clock import is_on_time
from lms.compliance.regulation.history import record_event
from lms.compliance.regulation.models import RegulationUpdate
from lms.compliance.rules import RuleInput, create_rule, input_of, preview_count, update_rule
from lms.field_errors import ErrorCollector, FieldErrors
from lms.people.models import User
from lms.workdays import WorkCalendar

__all__ = [
    "ACTIONS",
    "AUDIENCE_STATES",
    "DEFAULT_PUSH_DUE_WORKING_DAYS",
    "STATE_LABELS",
    "Audience",
    "PushResult",
    "TransitionRefused",
    "WorkflowError",
    "assignment_counts",
    "audience_of",
    "audience_size",
    "briefing_course_code",
    "change_audience",
    "close",
    "mark_not_relevant",
    "material_briefing",
    "material_course",
    "push",
    "state_label",
    "triage",
]

DEFAULT_PUSH_DUE_WORKING_DAYS = 5
MAX_NOTE = 5000
MAX_BRIEFING_TITLE = 200
# action -> (the one state it starts from, the state it leads to)
ACTIONS: dict[str, tuple[str, str]] = {
    "triage": ("new", "triaged"),
    "not_relevant": ("new", "not_relevant"),
    "material_ready": ("triaged", "material_ready"),
    "push": ("material_ready", "pushed"),
    "close": ("pushed", "closed"),
}
AUDIENCE_STATES = ("triaged", "material_ready")  # the audience may still change
STATE_LABELS = {
    "new": _l("New"),
    "triaged": _l("Triaged"),
    "not_relevant": _l("Not relevant"),
    "material_ready": _l("Material ready"),
    "pushed": _l("Pushed"),
    "closed": _l("Closed"),
}
ACTION_LABELS = {
    "triage": _l("triage"),
    "not_relevant": _l("mark not relevant"),
    "material_ready": _l("mark the material ready"),
    "push": _l("push"),
    "close": _l("close"),
    "audience": _l("change the audience"),
}


def state_label(state: str) -> str:
    return str(STATE_LABELS.get(state, state))


class WorkflowError(FieldErrors):
    """Input refused; messages keyed by form field."""


class TransitionRefused(WorkflowError):
    """The update is not (or no longer) in the state the action starts from. Keyed ""
    (the whole form), which ``save_or_show`` answers with 409 Conflict."""


def _refuse(update_row: RegulationUpdate, action: str, expected: tuple[str, ...]
            ) -> TransitionRefused:
    return TransitionRefused.one(_l(
        "This update is “%(state)s” now, so you cannot %(action)s it (only when it is "
        "“%(expected)s”). Someone may have acted on it a moment ago; the page shows its "
        "current state.", state=state_label(update_row.state),
        action=ACTION_LABELS.get(action, action),
        expected="”, “".join(state_label(s) for s in expected)))


def _claim(session: Session, row: RegulationUpdate, action: str, now: datetime) -> str:
    """Move the update from the action's start state to its end state, guarded by the
    expected state; refuse if it is not there (any more). Returns the start state."""
    from_state, to_state = ACTIONS[action]
    moved = session.execute(
        update(RegulationUpdate)
        .where(RegulationUpdate.id == row.id, RegulationUpdate.state == from_state)
        .values(state=to_state, updated_at=now)
        .returning(RegulationUpdate.id)
        .execution_options(synchronize_session=False)
    ).first()
    session.refresh(row)  # the row as the database has it now (state, updated_at)
    if moved is None:
        raise _refuse(row, action, (from_state,))
    return from_state


def _touch(session: Session, row: RegulationUpdate, action: str, states: tuple[str, ...],
           now: datetime) -> str:
    """The guard of a change within a state (the audience): the same row-level check
    as ``_claim``, so a push cannot slip in between."""
    current = session.execute(
        update(RegulationUpdate)
        .where(RegulationUpdate.id == row.id, RegulationUpdate.state.in_(states))
        .values(updated_at=now)
        .returning(RegulationUpdate.state)
        .execution_options(synchronize_session=False)
    ).scalar()
    session.refresh(row)
    if current is None:
        raise _refuse(row, action, states)
    return current


def _clean_note(errors: ErrorCollector, name: str, text: str | None, *, required: bool,
                message: Any = None) -> str:
    note = (text or "").replace("\r\n", "\n").strip()
    if required and not note:
        errors.add(name, message or _l("Enter a reason."))
    elif len(note) > MAX_NOTE:
        errors.add(name, _l("At most %(n)d characters.", n=MAX_NOTE))
    return note


# --- the audience -------------------------------------------------------------------------


@dataclass
class Audience:
    """Who must learn about an update: the criteria of HR's rule form (empty
    departments, positions or roles mean "any")."""

    department_ids: list[int] = field(default_factory=list)
    include_subdepartments: bool = True
    position_ids: list[int] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=lambda: ["active"])
    tags: list[str] = field(default_factory=list)  # any of them (none: any)


def briefing_course_code(update_id: int) -> str:
    """The code of the update's own course."""
    return f"REG-{update_id}"


def _rule_name(row: RegulationUpdate) -> str:
    return f"法规更新 {briefing_course_code(row.id)}：{row.title}"[:200]


def _rule_input(row: RegulationUpdate, audience: Audience, *, course_id: int | None,
                due_working_days: int = DEFAULT_PUSH_DUE_WORKING_DAYS,
                is_active: bool = False) -> RuleInput:
    return RuleInput(
        name=_rule_name(row), course_id=course_id,
        department_ids=list(audience.department_ids),
        include_subdepartments=audience.include_subdepartments,
        position_ids=list(audience.position_ids), roles=list(audience.roles),
        tags=list(audience.tags), statuses=list(audience.statuses), applies_to="everyone",
        due_working_days=due_working_days, retrain_on_new_version=False,
        is_active=is_active)


def audience_size(session: Session, audience: Audience) -> int:
    """How many people (enabled logins) the audience names now, nothing saved: the
    count HR's rule form previews (``rules.preview_count`` over ``rule_audience``)."""
    probe = RuleInput(name="", course_id=None, department_ids=list(audience.department_ids),
                      include_subdepartments=audience.include_subdepartments,
                      position_ids=list(audience.position_ids), roles=list(audience.roles),
                      tags=list(audience.tags), statuses=list(audience.statuses))
    return preview_count(session, probe)


def audience_of(session: Session, row: RegulationUpdate) -> Audience | None:
    """The update's audience as saved on its rule (None before triage)."""
    if row.rule_id is None:
        return None
    data = input_of(session, session.get(AssignmentRule, row.rule_id))
    return Audience(department_ids=data.department_ids,
                    include_subdepartments=data.include_subdepartments,
                    position_ids=data.position_ids, roles=data.roles, statuses=data.statuses,
                    tags=data.tags)


def regulation_owners(session: Session, rule_ids: list[int] | None = None) -> dict[int, int]:
    """rule id -> id of the regulation update whose audience it is (HR's rules page keeps
    those rules apart and read-only)."""
    query = select(RegulationUpdate.rule_id, RegulationUpdate.id).where(
        RegulationUpdate.rule_id.is_not(None))
    if rule_ids is not None:
        query = query.where(RegulationUpdate.rule_id.in_(rule_ids))
    return {rule_id: update_id for rule_id, update_id in session.execute(query)}


def _rule(session: Session, row: RegulationUpdate) -> AssignmentRule:
    rule = session.get(AssignmentRule, row.rule_id) if row.rule_id is not None else None
    if rule is None:  # a triaged update always has one; be explicit if not
        raise WorkflowError.one(_l("This update has no audience rule; triage it first."))
    return rule


def _set_rule(session: Session, rule: AssignmentRule, *, actor_id: int, now: datetime,
              **changes: Any) -> bool:
    """Change some fields of the update's rule through HR's rule service (validated,
    and an "assignment.rule_updated" ledger entry when anything changed)."""
    return update_rule(session, rule, replace(input_of(session, rule), **changes),
                       actor_id=actor_id, now=now)


# --- triage -------------------------------------------------------------------------------


def _owner_id(session: Session, actor_id: int) -> int | None:
    """The course owner: the acting trainer (an HR user without the trainer role may
    not own a course)."""
    actor = session.get(User, actor_id)
    return actor_id if actor is not None and actor.has_role("trainer") else None


def triage(session: Session, row: RegulationUpdate, *, topic: str | None, audience: Audience,
           note: str | None, actor_id: int, now: datetime) -> AssignmentRule:
    """Relevant: set the topic, create the update's course ``REG-<id>`` (an empty draft
    on the topic) and its audience rule (INACTIVE, so nobody is assigned until the
    push); state "triaged"."""
    errors = ErrorCollector(WorkflowError)
    if topic not in RISK_TOPICS:
        errors.add("topic", _l("Choose a risk topic."))
    note = _clean_note(errors, "note", note, required=False)
    errors.raise_if_any()
    from_state = _claim(session, row, "triage", now)
    course = create_course(session, CourseInput(
        code=briefing_course_code(row.id), title_zh=f"法规更新：{row.title}"[:200],
        title_en="", risk_topic=topic, description=(row.summary or "")[:10_000],
        owner_id=_owner_id(session, actor_id), is_optional=False, max_playback_rate=1.0),
        actor_id=actor_id)
    rule = create_rule(session, _rule_input(row, audience, course_id=course.id),
                       actor_id=actor_id, now=now)
    row.topic = topic
    row.triage_note = note
    row.rule_id = rule.id
    session.flush()
    record_event(session, row, kind="regulation.triaged", from_state=from_state,
                 to_state="triaged", actor_id=actor_id, note=note, at=now, payload={
                     "topic": topic, "rule_id": rule.id, "rule": rule.name,
                     "course_code": course.code,
                     "audience_size": audience_size(session, audience),
                 })
    return rule


def mark_not_relevant(session: Session, row: RegulationUpdate, *, reason: str | None,
                      actor_id: int, now: datetime) -> None:
    """Not relevant to this employer, with the reason (required); final."""
    errors = ErrorCollector(WorkflowError)
    reason = _clean_note(errors, "reason", reason, required=True, message=_l(
        "Say why this update is not relevant (kept as evidence of the decision)."))
    errors.raise_if_any()
    from_state = _claim(session, row, "not_relevant", now)
    row.triage_note = reason
    session.flush()
    record_event(session, row, kind="regulation.not_relevant", from_state=from_state,
                 to_state="not_relevant", actor_id=actor_id, note=reason, at=now,
                 payload={"reason": reason})


def change_audience(session: Session, row: RegulationUpdate, *, audience: Audience,
                    actor_id: int, now: datetime) -> bool:
    """Change who will be assigned, before the push; True if anything changed."""
    state = _touch(session, row, "audience", AUDIENCE_STATES, now)
    rule = _rule(session, row)
    changed = _set_rule(session, rule, actor_id=actor_id, now=now,
                        department_ids=list(audience.department_ids),
                        include_subdepartments=audience.include_subdepartments,
                        position_ids=list(audience.position_ids), roles=list(audience.roles),
                        statuses=list(audience.statuses), tags=list(audience.tags))
    if changed:
        record_event(session, row, kind="regulation.audience_changed", from_state=state,
                     to_state=state, actor_id=actor_id, at=now, payload={
                         "rule_id": rule.id, "audience_size": audience_size(session, audience)})
    return changed


# --- material -----------------------------------------------------------------------------


def _own_course(session: Session, row: RegulationUpdate) -> Course:
    course = session.scalar(select(Course).where(Course.code == briefing_course_code(row.id)))
    if course is None:
        raise WorkflowError.one(_l("The update's course %(code)s is missing.",
                                   code=briefing_course_code(row.id)))
    return course


def material_briefing(session: Session, row: RegulationUpdate, *, title: str | None,
                      body: str | None, require_signature: bool, actor_id: int,
                      now: datetime) -> CourseVersion:
    """Publish the briefing written in the app as the update's course: a document
    lesson with the text (reading it is the read receipt) and, when a signature is
    required, a policy with the same text and a policy lesson where the learner signs
    "I have read and understood …". State "material_ready"."""
    from_state = _claim(session, row, "material_ready", now)
    course = _own_course(session, row)
    rule = _rule(session, row)
    version = draft_of(session, course) or new_version(
        session, course, change_note="法规更新简报", requires_retraining=False,
        actor_id=actor_id)
    lesson = add_document_lesson(session, version, title=title or "", body=body or "")
    policy_version_id = None
    if require_signature:
        suffix = f"（{course.code}）"
        document = create_document(
            session, name=lesson.title[:200 - len(suffix)] + suffix, statement_template=None,
            min_reading_seconds=None, actor_id=actor_id)
        policy = add_text_version(session, document, body=lesson.body, actor_id=actor_id)
        publish_policy_version(session, policy, actor_id=actor_id)
        add_policy_lesson(session, version, title=f"签署确认：{lesson.title}"[:200],
                          policy_version_id=policy.id)
        policy_version_id = policy.id
    digest = publish_version(session, version, actor_id=actor_id)
    if rule.course_id != course.id:  # HR pointed it elsewhere meanwhile: the briefing wins
        _set_rule(session, rule, actor_id=actor_id, now=now, course_id=course.id)
    row.material_kind = "briefing"
    row.briefing_title = lesson.title
    row.briefing_body = lesson.body
    row.require_signature = bool(require_signature)
    row.course_id, row.version_id = course.id, version.id
    session.flush()
    record_event(session, row, kind="regulation.material_ready", from_state=from_state,
                 to_state="material_ready", actor_id=actor_id, at=now, payload={
                     "material": "briefing", "course_code": course.code,
                     "version_id": version.id, "version_number": version.number,
                     "content_hash": digest, "require_signature": bool(require_signature),
                     "policy_version_id": policy_version_id,
                 })
    return version


def material_course(session: Session, row: RegulationUpdate, *, course_id: int | None,
                    actor_id: int, now: datetime) -> CourseVersion:
    """Use an existing course: its newest published version is what the push assigns
    (the engine always assigns a course's newest published version)."""
    course = session.get(Course, course_id) if course_id is not None else None
    version = latest_published_version(session, course.id) if course is not None else None
    if version is None:
        raise WorkflowError.one(_l("Choose a course with a published version."), "course_id")
    from_state = _claim(session, row, "material_ready", now)
    _set_rule(session, _rule(session, row), actor_id=actor_id, now=now, course_id=course.id)
    row.material_kind = "course"
    row.course_id, row.version_id = course.id, version.id
    session.flush()
    record_event(session, row, kind="regulation.material_ready", from_state=from_state,
                 to_state="material_ready", actor_id=actor_id, at=now, payload={
                     "material": "course", "course_code": course.code,
                     "version_id": version.id, "version_number": version.number,
                     "content_hash": version.content_hash,
                 })
    return version


# --- push and close -----------------------------------------------------------------------


@dataclass(frozen=True)
class PushResult:
    assigned: int
    enrolled: int
    on_time: bool
    due_dates: dict[str, int]


def push(session: Session, row: RegulationUpdate, *, due_working_days: int | None,
         actor_id: int, now: datetime, calendar: WorkCalendar) -> PushResult:
    """Switch the audience rule on with the course and the due time, evaluate it once
    (assignments and enrolments for everyone it names), record whether the push was
    on time (local date of ``now`` on or before the deadline). State "pushed".

    Raises ``UnknownYearError`` when the due date falls in a year without a calendar."""
    if due_working_days is None or not 1 <= due_working_days <= MAX_DUE_WORKING_DAYS:
        raise WorkflowError.one(_l("Enter between 1 and %(max)d working days.",
                                   max=MAX_DUE_WORKING_DAYS), "due_working_days")
    from_state = _claim(session, row, "push", now)
    rule = _rule(session, row)
    _set_rule(session, rule, actor_id=actor_id, now=now, is_active=True,
              due_working_days=due_working_days)
    run = evaluate_rule(session, rule, calendar=calendar, now=now, actor_id=actor_id)
    if run.version_id is None:
        raise WorkflowError.one(_l("The course has no published version (any more); "
                                   "nobody could be assigned. Nothing was changed."))
    pushed_on = local_date(now)
    on_time = is_on_time(pushed_on, row.deadline_date)
    row.pushed_at = now
    row.on_time = on_time
    row.version_id = run.version_id
    session.flush()
    record_event(session, row, kind="regulation.pushed", from_state=from_state,
                 to_state="pushed", actor_id=actor_id, at=now, payload={
                     "rule_id": rule.id, "version_id": run.version_id,
                     "assigned": run.assigned, "enrolled": run.enrolled,
                     "due_working_days": due_working_days, "due_dates": run.due_dates,
                     "pushed_on": pushed_on.isoformat(),
                     "deadline_date": row.deadline_date.isoformat(), "on_time": on_time,
                     "rule_applied_seq": run.ledger_seq,
                 })
    return PushResult(run.assigned, run.enrolled, on_time, run.due_dates)


def close(session: Session, row: RegulationUpdate, *, note: str | None, stop_assigning: bool,
          actor_id: int, now: datetime) -> None:
    """Follow-up done. With ``stop_assigning`` the audience rule is switched off, so
    people who join the audience later are no longer assigned the material (existing
    assignments stay as they are)."""
    errors = ErrorCollector(WorkflowError)
    note = _clean_note(errors, "note", note, required=False)
    errors.raise_if_any()
    from_state = _claim(session, row, "close", now)
    rule = _rule(session, row)
    stopped = bool(stop_assigning and rule.is_active)
    if stopped:
        _set_rule(session, rule, actor_id=actor_id, now=now, is_active=False)
    row.closed_at = now
    session.flush()
    record_event(session, row, kind="regulation.closed", from_state=from_state,
                 to_state="closed", actor_id=actor_id, note=note, at=now,
                 payload={"rule_id": rule.id, "rule_switched_off": stopped})


def assignment_counts(session: Session, row: RegulationUpdate) -> dict[str, int]:
    """The update's assignments by status (one GROUP BY over its rule's rows)."""
    if row.rule_id is None:
        return {}
    return dict(session.execute(
        select(Assignment.status, func.count()).where(Assignment.rule_id == row.rule_id)
        .group_by(Assignment.status)).all())
