"""Forms of the regulation pages. They only parse; the services in ``intake`` and
``workflow`` judge the values and name the field of each problem. The audience fields
are those of HR's rule form (same names, same choices), so the rule service's messages
land next to them."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    IntegerField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import Length, Optional

from courses.topics import topic_choices
from lms.compliance.forms import MultiCheckboxField, optional_int
from lms.compliance.regulation.models import UPDATE_STATES
from lms.compliance.regulation.workflow import (
    DEFAULT_PUSH_DUE_WORKING_DAYS,
    Audience,
    state_label,
)
from lms.people.forms import TAGS_DESCRIPTION, TagsField
from lms.people.labels import role_label, status_label
from lms.people.models import EMPLOYEE_STATUSES, ROLES


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class ManualUpdateForm(FlaskForm):
    title = StringField(_l("Title"), filters=[_strip])
    summary = TextAreaField(_l("Summary"))
    link = StringField(_l("Source link (URL)"), filters=[_strip])
    published_on = DateField(_l("Published on (optional)"), validators=[Optional()])


class AudienceFields(FlaskForm):
    """Who must learn about the update (choices filled in by the view)."""

    department_ids = SelectMultipleField(_l("Departments (none: all)"), coerce=int,
                                         validate_choice=False)
    include_subdepartments = BooleanField(_l("Include sub-departments"), default=True)
    position_ids = SelectMultipleField(_l("Positions (none: all)"), coerce=int,
                                       validate_choice=False)
    roles = MultiCheckboxField(_l("Roles (none: any)"), validate_choice=False)
    statuses = MultiCheckboxField(_l("Employee statuses"), validate_choice=False,
                                  default=["active"])
    tags = TagsField(_l("Tags (people with any of them; none: any)"),
                     validators=[Length(max=2000)], description=TAGS_DESCRIPTION)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.roles.choices = [(r, role_label(r)) for r in ROLES]
        self.statuses.choices = [(s, status_label(s)) for s in EMPLOYEE_STATUSES]

    def to_audience(self) -> Audience:
        return Audience(department_ids=list(self.department_ids.data or []),
                        include_subdepartments=bool(self.include_subdepartments.data),
                        position_ids=list(self.position_ids.data or []),
                        roles=list(self.roles.data or []),
                        statuses=list(self.statuses.data or []),
                        tags=self.tags.pieces())


class TriageForm(AudienceFields):
    topic = SelectField(_l("Risk topic"), validate_choice=False)
    note = TextAreaField(_l("Why it matters (optional)"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.topic.choices = topic_choices(str(_l("— choose —")))


class AudienceForm(AudienceFields):
    """Changing the audience after triage, before the push."""


class NotRelevantForm(FlaskForm):
    reason = TextAreaField(_l("Why it is not relevant"))


class BriefingForm(FlaskForm):
    title = StringField(_l("Briefing title"), filters=[_strip])
    body = TextAreaField(_l("Briefing text"))
    require_signature = BooleanField(
        _l("Require an acknowledgement signature (“I have read and understood …”)"))


class CourseMaterialForm(FlaskForm):
    course_id = SelectField(_l("Course"), coerce=optional_int, validate_choice=False)


class PushForm(FlaskForm):
    due_working_days = IntegerField(_l("Learners must complete it within (working days)"),
                                    default=DEFAULT_PUSH_DUE_WORKING_DAYS,
                                    validators=[Optional()])


class CloseForm(FlaskForm):
    note = TextAreaField(_l("Note (optional)"))
    stop_assigning = BooleanField(
        _l("Stop assigning the material to people who join the audience later"),
        default=True)


class StateFilterForm(FlaskForm):
    """The state filter of the update list (GET, so no CSRF token)."""

    class Meta:
        csrf = False

    state = SelectField(_l("State"), default="", validate_choice=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state.choices = [("", str(_l("All states"))),
                              *((s, state_label(s)) for s in UPDATE_STATES)]
