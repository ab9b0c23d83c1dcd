"""/api/v1/risk: inbound risk signals (they become targeted training) and outbound
training gaps per department and risk topic.

Decisions (also in the OpenAPI descriptions): a risk type without a mapped course is
accepted and assigns nothing (the response says ``unmapped``); ``external_id`` is an
idempotency key (the same key again answers 200 with the first signal and does
nothing); unknown codes answer 422 naming the field, a malformed body 400.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from pydantic_core import InitErrorDetails
from sqlalchemy import select

from courses.models import RISK_TOPICS
from courses.topics import topic_label
from integrations.api import ApiError, ApiModel, endpoint, not_found
from integrations.risk.gaps import GapFilters, GapRow, gap_people, gap_rows
from integrations.risk.models import SCOPE_KINDS, RiskSignal, RiskType
from integrations.risk.signals import (
    MAX_NOTE,
    Progress,
    SignalInput,
    course_results,
    progress,
    receive_signal,
    scope_label,
)
from integrations.tokens import ApiToken
from lms.compliance.engine import local_date
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.people.models import Department
from lms.workday_overrides import load_calendar

TAG = "risk"
# One line without control characters (a NUL would even fail in PostgreSQL as a 500);
# a note may span lines but holds no NUL either.
LINE = r"^[^\x00-\x1f\x7f]*$"
NO_NUL = r"^[^\x00]*$"


def _unknown(field: str, message: str) -> ApiError:
    """A code that names nothing here: 422 naming the query field."""
    return ApiError(422, message, field=field, details=[{"field": field, "message": message}])


def clock() -> datetime:
    """The time signals are received at (UTC); tests replace it to stand on a given day."""
    return utcnow()


def _rate(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


# --- models ------------------------------------------------------------------------------


class DepartmentScope(ApiModel):
    """A department with all its sub-departments."""

    kind: Literal["department"]
    code: str = Field(min_length=1, max_length=32, pattern=LINE, description="Department code")


class PositionScope(ApiModel):
    """Everyone in a position (岗位), in every department."""

    kind: Literal["position"]
    code: str = Field(min_length=1, max_length=32, pattern=LINE, description="Position code")


class EmployeeScope(ApiModel):
    """One employee."""

    kind: Literal["employee"]
    employee_no: str = Field(min_length=1, max_length=32, pattern=LINE,
                             description="Employee number")


SignalScope = Annotated[DepartmentScope | PositionScope | EmployeeScope,
                        Field(discriminator="kind")]
_TAG_ERRORS = ("union_tag_invalid", "union_tag_not_found")


class SignalIn(ApiModel):
    scope: SignalScope
    risk_type: str = Field(min_length=1, max_length=32, pattern=LINE,
                           description="A risk type code, e.g. identity_fraud")
    severity: Literal["low", "medium", "high", "critical"]
    note: str = Field("", max_length=MAX_NOTE, pattern=NO_NUL)
    external_id: str | None = Field(
        None, min_length=1, max_length=128, pattern=LINE,
        description="Your idempotency key: sending it again returns the first signal "
                    "(200) and assigns nothing more")
    occurred_at: AwareDatetime | None = Field(None, description="When the risk occurred "
                                                                "(ISO 8601 with offset)")

    @field_validator("scope", mode="wrap")
    @classmethod
    def _scope_paths(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """Errors name ``scope.code``, not pydantic's ``scope.department.code`` (the
        union's tag in the path), and a bad kind names ``scope.kind``."""
        try:
            return handler(value)
        except ValidationError as exc:
            details = []
            for error in exc.errors():
                loc = tuple(error["loc"])
                if loc and loc[0] in SCOPE_KINDS:
                    loc = loc[1:]
                elif error["type"] in _TAG_ERRORS:
                    loc = ("kind",)
                details.append(InitErrorDetails(type=error["type"], loc=loc,
                                                input=error["input"],
                                                ctx=error.get("ctx") or {}))
            raise ValidationError.from_exception_data(exc.title, details) from None


class RiskTypeRef(ApiModel):
    code: str
    name_zh: str
    name_en: str


class ScopeOut(ApiModel):
    kind: str
    code: str
    name: str


class ProgressOut(ApiModel):
    """Where the assignments this signal created stand now."""

    assigned: int
    completed: int
    open: int
    overdue: int
    suspended: int
    waived: int


class SignalCourseOut(ApiModel):
    course_code: str
    title: str
    version: int | None
    due_working_days: int
    due_date: date | None
    assigned: int
    already_assigned: int
    skipped: Literal["no_published_version"] | None
    progress: ProgressOut


class SignalOut(ApiModel):
    id: int
    risk_type: RiskTypeRef
    severity: str
    scope: ScopeOut
    note: str
    external_id: str | None
    occurred_at: datetime | None
    received_at: datetime
    audience: int = Field(description="在职 people with a login in the scope")
    assigned: int = Field(description="Assignments created (people x courses)")
    already_assigned: int = Field(description="People x courses skipped: a live "
                                              "assignment of the course existed")
    unmapped: bool = Field(description="True when no mapped course had a published "
                                       "version: the signal is recorded, nothing assigned")
    replayed: bool = Field(description="True when this answers a repeated external_id")
    message: str
    courses: list[SignalCourseOut]
    progress: ProgressOut
    ledger_seq: int | None


def _progress_out(p: Progress) -> ProgressOut:
    return ProgressOut(assigned=p.assigned, completed=p.completed, open=p.open,
                       overdue=p.overdue, suspended=p.suspended, waived=p.waived)


def _message(signal: RiskSignal, unmapped: bool) -> str:
    if unmapped:
        return (f"Risk type {signal.risk_type.code} has no course with a published version "
                "mapped to it: the signal is recorded and nothing was assigned.")
    if not signal.audience:
        return ("Nobody in the scope is active (在职) with a login: the signal is recorded "
                "and nothing was assigned.")
    people = "1 person" if signal.audience == 1 else f"{signal.audience} people"
    return (f"{people} in scope: {signal.assigned} assignments created, "
            f"{signal.already_assigned} skipped (a live assignment of the course existed).")


def signal_out(signal: RiskSignal, *, replayed: bool, today: date) -> SignalOut:
    per_course = progress(db.session, [signal.id], today).get(signal.id, {})
    results = course_results(signal)
    total = Progress()
    for p in per_course.values():
        total.add(p)
    unmapped = all(r.skipped for r in results)
    return SignalOut(
        id=signal.id,
        risk_type=RiskTypeRef(code=signal.risk_type.code, name_zh=signal.risk_type.name_zh,
                              name_en=signal.risk_type.name_en),
        severity=signal.severity,
        scope=ScopeOut(kind=signal.scope_kind, code=signal.scope_code,
                       name=scope_label(db.session, signal)),
        note=signal.note, external_id=signal.external_id, occurred_at=signal.occurred_at,
        received_at=signal.received_at, audience=signal.audience, assigned=signal.assigned,
        already_assigned=signal.already_assigned, unmapped=unmapped, replayed=replayed,
        message=_message(signal, unmapped),
        courses=[SignalCourseOut(
            course_code=r.course_code, title=r.title, version=r.version_number,
            due_working_days=r.due_working_days,
            due_date=date.fromisoformat(r.due_date) if r.due_date else None,
            assigned=r.assigned, already_assigned=r.already_assigned,
            skipped=r.skipped,  # type: ignore[arg-type]
            progress=_progress_out(per_course.get(r.course_id, Progress())))
            for r in results],
        progress=_progress_out(total), ledger_seq=signal.ledger_seq)


# --- signals -----------------------------------------------------------------------------


@endpoint("/risk/signals", method="POST", summary="Send a risk signal: it becomes targeted "
          "training for the people in its scope", tag=TAG, scope="risk:write", body=SignalIn,
          response=SignalOut, status=201, also=(200,), errors=(422,))
def post_signal(body: SignalIn, token: ApiToken):
    """The risk type's mapped courses (admin: Risk types) are assigned to every 在职
    employee with a login in the scope (a department includes all its sub-departments),
    due the mapping's number of Chinese working days after the day the signal is
    received. People with a live assignment of a course get nothing new
    (``already_assigned``); people who completed it before get a fresh round.

    - 201: recorded (``assigned`` may be 0: nobody in scope, everyone already assigned,
      or the risk type has no course mapped yet: ``unmapped`` true);
    - 200: the ``external_id`` was sent before; the first signal is returned unchanged;
    - 422: an unknown risk type, department, position or employee (``field`` names it:
      ``risk_type``, ``scope.code``, ``scope.employee_no``);
    - 400: a malformed body (missing or misspelt fields, bad severity)."""
    scope = body.scope
    outcome = receive_signal(db.session, SignalInput(
        risk_type=body.risk_type, severity=body.severity, scope_kind=scope.kind,
        scope_code=scope.employee_no if isinstance(scope, EmployeeScope) else scope.code,
        note=body.note, external_id=body.external_id, occurred_at=body.occurred_at),
        calendar=load_calendar(db.session), now=clock(), token_id=token.id)
    db.session.commit()
    out = signal_out(outcome.signal, replayed=not outcome.created, today=local_date(clock()))
    return out, 201 if outcome.created else 200


@endpoint("/risk/signals/<int:signal_id>", summary="A risk signal and where its training "
          "stands", tag=TAG, scope="risk:write", response=SignalOut, errors=(404,))
def get_signal(signal_id: int, token: ApiToken) -> SignalOut:
    """What the signal assigned, and its assignments now: completed, open, overdue
    (open past the due date), suspended, waived; per course and in total. Counts only
    the assignments this signal created (not the live ones people already had).
    Needs ``risk:write``: the sender reads back what its signals did."""
    signal = db.session.get(RiskSignal, signal_id)
    if signal is None:
        raise not_found("Risk signal")
    return signal_out(signal, replayed=False, today=local_date(clock()))


# --- training gaps -----------------------------------------------------------------------


class GapsQuery(ApiModel):
    department: str | None = Field(None, min_length=1, max_length=32, pattern=LINE,
                                   description="Department code; its sub-departments are "
                                               "included")
    topic: Literal[RISK_TOPICS] | None = Field(  # type: ignore[valid-type]
        None, description="A course risk topic")
    risk_type: str | None = Field(None, min_length=1, max_length=32, pattern=LINE,
                                  description="Only courses mapped to this risk type")
    include_people: bool = Field(False, description="List the untrained people (open "
                                                    "assignments)")
    overdue_only: bool = Field(False, description="With include_people: overdue ones only")
    people_limit: int = Field(500, ge=1, le=5000)
    people_offset: int = Field(0, ge=0)


class DepartmentRef(ApiModel):
    code: str
    name: str


class GapCounts(ApiModel):
    people: int = Field(description="在职 people with a current open or completed assignment")
    people_open: int = Field(description="... of whom with at least one open (untrained)")
    people_overdue: int = Field(description="... of whom with at least one overdue")
    assigned: int = Field(description="Current assignments counted (people x courses)")
    completed: int
    open: int
    overdue: int
    completion_rate: float | None = Field(description="completed / assigned, percent")


class GapRowOut(GapCounts):
    department: DepartmentRef
    topic: str
    topic_label: str
    risk_types: list[str] = Field(description="Risk types mapped to the courses counted")


class GapTopicOut(GapCounts):
    topic: str
    topic_label: str


class GapPersonOut(ApiModel):
    employee_no: str
    name: str
    department: str
    topic: str
    course_code: str
    course_title: str
    due_date: date
    overdue: bool
    days_overdue: int | None = Field(description="Working days past the due date (0 when "
                                                 "not overdue; null: calendar year unknown)")


class GapsOut(ApiModel):
    as_of: date
    department: DepartmentRef | None
    topic: str | None
    risk_type: str | None
    rows: list[GapRowOut]
    topics: list[GapTopicOut] = Field(description="Totals per topic over the scope")
    people: list[GapPersonOut] | None = None
    people_total: int | None = None
    people_limit: int | None = None
    people_offset: int | None = None


def _counts(row: GapRow) -> dict[str, object]:
    return {"people": row.people, "people_open": row.people_open,
            "people_overdue": row.people_overdue, "assigned": row.assigned,
            "completed": row.completed, "open": row.open, "overdue": row.overdue,
            "completion_rate": _rate(row.completion_rate)}


@endpoint("/risk/training-gaps", summary="Training gaps per department and risk topic",
          tag=TAG, scope="risk:read", query=GapsQuery, response=GapsOut, errors=(422,))
def training_gaps(query: GapsQuery, token: ApiToken) -> GapsOut:
    """Per department (the people whose own department it is) and course risk topic:
    people assigned, and assignments completed, open and overdue, counting each 在职
    person's current round of each course (open or completed). With
    ``include_people=true``, the people with open assignments, soonest due first, paged
    by ``people_limit``/``people_offset``. Unknown department or risk type: 422."""
    department = None
    if query.department is not None:
        department = db.session.scalar(select(Department)
                                       .where(Department.code == query.department))
        if department is None:
            raise _unknown("department", f"Unknown department {query.department}.")
    risk_type = None
    if query.risk_type is not None:
        risk_type = db.session.scalar(select(RiskType).where(RiskType.code == query.risk_type))
        if risk_type is None:
            raise _unknown("risk_type", f"Unknown risk type {query.risk_type}.")
    filters = GapFilters(department_id=department.id if department else None,
                         topic=query.topic, risk_type_id=risk_type.id if risk_type else None,
                         overdue_only=query.overdue_only)
    today = local_date(clock())
    rows = gap_rows(db.session, filters, today=today)
    by_topic: dict[str, GapRow] = {}
    for row in rows:
        acc = by_topic.setdefault(row.topic, GapRow("", "", row.topic))
        for name in ("people", "people_open", "people_overdue", "assigned", "completed",
                     "open", "overdue"):  # a person has one department: sums are exact
            setattr(acc, name, getattr(acc, name) + getattr(row, name))
    out = GapsOut(
        as_of=today,
        department=DepartmentRef(code=department.code, name=department.name)
        if department else None,
        topic=query.topic, risk_type=query.risk_type,
        rows=[GapRowOut(department=DepartmentRef(code=r.department_code,
                                                 name=r.department_name),
                        topic=r.topic, topic_label=topic_label(r.topic),
                        risk_types=r.risk_types, **_counts(r)) for r in rows],
        topics=[GapTopicOut(topic=t, topic_label=topic_label(t), **_counts(by_topic[t]))
                for t in RISK_TOPICS if t in by_topic])
    if query.include_people:
        people, total = gap_people(db.session, filters, today=today,
                                   calendar=load_calendar(db.session),
                                   limit=query.people_limit, offset=query.people_offset)
        out.people = [GapPersonOut(
            employee_no=p.employee_no, name=p.name, department=p.department_code,
            topic=p.topic, course_code=p.course_code, course_title=p.course_title,
            due_date=p.due_date, overdue=p.overdue, days_overdue=p.days_overdue)
            for p in people]
        out.people_total, out.people_limit = total, query.people_limit
        out.people_offset = query.people_offset
    return out


__all__ = ["clock", "get_signal", "post_signal", "signal_out", "training_gaps"]
