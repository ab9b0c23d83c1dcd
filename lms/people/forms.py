"""Forms of the HR pages (employees, departments, positions, CSV import) and team view.

Choices that come from the database (departments, positions) are filled in by the
view; statuses are filled in per request so their labels follow the user's language.
"""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    SearchField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional, Regexp

from lms.people.labels import status_label
from lms.people.models import EMPLOYEE_STATUSES
from lms.people.tags import format_tags, split_tags

# Same rule as the CSV import, so a number typed here can also be imported.
EMPLOYEE_NO_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
EMAIL_PATTERN = r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$"


def optional_int(value: Any) -> int | None:
    """Coerce a <select> value where "" means "none"/"all"."""
    if value in (None, "", "None"):
        return None
    return int(value)


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def status_choices(blank: str | None = None) -> list[tuple[str, str]]:
    choices = [(code, status_label(code)) for code in EMPLOYEE_STATUSES]
    return [("", blank), *choices] if blank is not None else choices


class TagsField(StringField):
    """Tags typed as one line ("特殊工种、外派"); a list (from a record) is shown that way.
    ``data`` stays the typed text: the service normalises it and names what is wrong."""

    def process_data(self, value: Any) -> None:
        self.data = format_tags(value) if isinstance(value, list | tuple) else value

    def pieces(self) -> list[str]:
        return split_tags(self.data or "")


TAGS_DESCRIPTION = _l("Separate tags with commas or 、, e.g. 特殊工种、外派.")


class EmployeeFilterForm(FlaskForm):
    """Filters of the employee list (GET, so no CSRF token)."""

    class Meta:
        csrf = False

    q = SearchField(_l("Name or employee no."), filters=[_strip],
                    validators=[Optional(), Length(max=64)])
    department = SelectField(_l("Department"), coerce=optional_int, validate_choice=False)
    position = SelectField(_l("Position"), coerce=optional_int, validate_choice=False)
    status = SelectField(_l("Status"), default="")
    tag = SearchField(_l("Tag"), filters=[_strip], validators=[Optional(), Length(max=32)])


class TeamFilterForm(FlaskForm):
    class Meta:
        csrf = False

    status = SelectField(_l("Status"), default="")
    direct = BooleanField(_l("Direct reports only"))


class EmployeeForm(FlaskForm):
    employee_no = StringField(
        _l("Employee no."), filters=[_strip],
        validators=[DataRequired(), Regexp(EMPLOYEE_NO_PATTERN, message=_l(
            "Use 1–32 letters, digits, - or _."))])
    name = StringField(_l("Full name"), filters=[_strip], validators=[DataRequired(), Length(max=64)])
    department_id = SelectField(_l("Department"), coerce=optional_int,
                                validators=[DataRequired(message=_l("Choose a department."))])
    position_id = SelectField(_l("Position"), coerce=optional_int)
    manager_no = StringField(
        _l("Manager (employee no.)"), filters=[_strip],
        validators=[Optional(), Regexp(EMPLOYEE_NO_PATTERN, message=_l(
            "Enter the manager's employee no."))])
    hire_date = DateField(_l("Hire date"), validators=[DataRequired(message=_l(
        "Enter the hire date."))])
    status = SelectField(_l("Status"), validators=[DataRequired()])
    email = StringField(_l("E-mail"), filters=[_strip], validators=[
        Optional(), Length(max=254), Regexp(EMAIL_PATTERN, message=_l("Enter a valid e-mail address."))])
    id_number = StringField(_l("ID number"), filters=[_strip],
                            validators=[Optional(), Length(max=32)])
    tags = TagsField(_l("Tags"), validators=[Length(max=2000)], description=TAGS_DESCRIPTION)


class RevealForm(FlaskForm):
    reason = TextAreaField(
        _l("Reason for revealing the ID number"), filters=[_strip],
        validators=[DataRequired(message=_l("Give the reason for revealing the ID number.")),
                    Length(max=500)])


class DepartmentForm(FlaskForm):
    code = StringField(_l("Code"), filters=[_strip], validators=[DataRequired(), Length(max=32)])
    name = StringField(_l("Name"), filters=[_strip], validators=[DataRequired(), Length(max=128)])
    parent_id = SelectField(_l("Parent department"), coerce=optional_int)


class PositionForm(FlaskForm):
    code = StringField(_l("Code"), filters=[_strip], validators=[DataRequired(), Length(max=32)])
    name = StringField(_l("Name"), filters=[_strip], validators=[DataRequired(), Length(max=128)])


class ImportUploadForm(FlaskForm):
    file = FileField(_l("CSV file"), validators=[FileRequired(message=_l("Choose a CSV file."))])


class ImportApplyForm(FlaskForm):
    fingerprint = HiddenField(validators=[DataRequired()])
