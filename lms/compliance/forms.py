"""Forms of the HR assignment pages. Choices from the database are filled in by the view.

The forms only parse; the services (``lms.compliance.rules``, ``lms.compliance.manual``)
judge the values and name the field of each problem, so every message is shown at once.
"""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    IntegerField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import Length, Optional
from wtforms.widgets import CheckboxInput, HiddenInput, ListWidget

from lms.compliance.models import ASSIGNMENT_STATUSES
from lms.compliance.rules import RuleInput
from lms.people.forms import TAGS_DESCRIPTION, TagsField
from lms.people.labels import role_label, status_label
from lms.people.models import EMPLOYEE_STATUSES, ROLES

ASSIGNMENT_STATUS_LABELS = {
    "open": _l("Outstanding"),
    "completed": _l("Completed"),
    "suspended": _l("Suspended"),
    "waived": _l("Waived"),
}
APPLIES_TO_LABELS = {
    "everyone": _l("Everyone matching now (and people who come to match later)"),
    "new_hires": _l("New hires only (hired on or after the rule's start date)"),
}


def assignment_status_label(code: str) -> str:
    return str(ASSIGNMENT_STATUS_LABELS.get(code, code))


ASSIGNMENT_SOURCE_LABELS = {
    "rule": _l("Assignment rule"),
    "manual": _l("Assigned by hand"),
    "retraining": _l("Re-training (new version)"),
    "recurrence": _l("Recertification"),
    "risk": _l("Risk signal"),
}


def assignment_source_label(code: str) -> str:
    return str(ASSIGNMENT_SOURCE_LABELS.get(code, code))


def optional_int(value: Any) -> int | None:
    """Coerce a <select> value where "" means none."""
    if value in (None, "", "None"):
        return None
    return int(value)


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class RuleForm(FlaskForm):
    name = StringField(_l("Rule name"), filters=[_strip])
    course_id = SelectField(_l("Course"), coerce=optional_int, validate_choice=False)
    department_ids = SelectMultipleField(_l("Departments (none: all)"), coerce=int,
                                         validate_choice=False)
    include_subdepartments = BooleanField(_l("Include sub-departments"), default=True)
    position_ids = SelectMultipleField(_l("Positions (none: all)"), coerce=int,
                                       validate_choice=False)
    roles = MultiCheckboxField(_l("Roles (none: any)"), validate_choice=False)
    tags = TagsField(_l("Tags (people with any of them; none: any)"),
                     validators=[Length(max=2000)], description=TAGS_DESCRIPTION)
    statuses = MultiCheckboxField(_l("Employee statuses"), validate_choice=False,
                                  default=["active"])
    hired_from = DateField(_l("Hired on or after"), validators=[Optional()])
    hired_to = DateField(_l("Hired on or before"), validators=[Optional()])
    applies_to = RadioField(_l("Applies to"), default="everyone", validate_choice=False)
    due_working_days = IntegerField(_l("Due within (working days)"), default=10,
                                    validators=[Optional()])
    retrain_on_new_version = BooleanField(
        _l("Assign again when a new course version requires re-training"), default=True)
    recur_months = IntegerField(_l("Recertify every (months; empty: never)"),
                                validators=[Optional()])
    is_active = BooleanField(_l("Enabled"), default=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.roles.choices = [(r, role_label(r)) for r in ROLES]
        self.statuses.choices = [(s, status_label(s)) for s in EMPLOYEE_STATUSES]
        self.applies_to.choices = [(k, str(v)) for k, v in APPLIES_TO_LABELS.items()]

    def to_input(self) -> RuleInput:
        return RuleInput(
            name=self.name.data or "", course_id=self.course_id.data,
            department_ids=list(self.department_ids.data or []),
            include_subdepartments=bool(self.include_subdepartments.data),
            position_ids=list(self.position_ids.data or []),
            roles=list(self.roles.data or []), tags=self.tags.pieces(), statuses=list(self.statuses.data or []),
            hired_from=self.hired_from.data, hired_to=self.hired_to.data,
            applies_to=self.applies_to.data or "", due_working_days=self.due_working_days.data,
            retrain_on_new_version=bool(self.retrain_on_new_version.data),
            is_active=bool(self.is_active.data), recur_months=self.recur_months.data)


class ActionForm(FlaskForm):
    """Just the CSRF token (the "apply now" button)."""


class AssignForm(FlaskForm):
    course_id = SelectField(_l("Course"), coerce=optional_int, validate_choice=False)
    employee_nos = TextAreaField(
        _l("Employee numbers"), validators=[Length(max=200_000)],
        description=_l("One per line, or separated by commas or spaces."))
    due_date = DateField(_l("Due date"), validators=[Optional()])
    due_working_days = IntegerField(_l("or due within (working days)"),
                                    validators=[Optional()])
    reason = TextAreaField(_l("Reason"), filters=[_strip])


class ExtendForm(FlaskForm):
    new_due_date = DateField(_l("New due date"), validators=[Optional()])
    reason = TextAreaField(_l("Reason"), filters=[_strip])
    next = HiddenField()


class WaiveForm(FlaskForm):
    reason = TextAreaField(_l("Reason"), filters=[_strip])
    next = HiddenField()


class GrantAttemptsForm(FlaskForm):
    """Extra exam attempts for a learner out of attempts (assessments.attempt_grants)."""

    exam_id = IntegerField(widget=HiddenInput(), validators=[Optional()])
    extra = IntegerField(_l("Extra attempts (1–5)"), default=1, validators=[Optional()])
    reason = TextAreaField(_l("Reason"), filters=[_strip])


class AssignmentFilterForm(FlaskForm):
    """Filters of the HR assignment list (GET, so no CSRF token)."""

    class Meta:
        csrf = False

    course = SelectField(_l("Course"), coerce=optional_int, validate_choice=False)
    department = SelectField(_l("Department (with sub-departments)"), coerce=optional_int,
                             validate_choice=False)
    status = SelectField(_l("Status"), default="")
    overdue = BooleanField(_l("Overdue only"))
    due_before = DateField(_l("Due on or before"), validators=[Optional()])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.status.choices = [("", str(_l("All statuses"))), *(
            (s, assignment_status_label(s)) for s in ASSIGNMENT_STATUSES)]
