"""Forms of the administration pages and the due-date calculator."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    DateField,
    HiddenField,
    IntegerField,
    PasswordField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
)
from wtforms.validators import (
    DataRequired,
    EqualTo,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    Regexp,
)
from wtforms.widgets import CheckboxInput, ListWidget

try:  # WTForms 3.3 wants SelectChoice and deprecates plain tuples
    from wtforms import SelectChoice
except ImportError:  # pragma: no cover - WTForms < 3.3
    SelectChoice = None

from lms.people.labels import role_label
from lms.people.models import ROLES

USERNAME_PATTERN = r"^[A-Za-z0-9._@-]+$"
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
# Far enough for any training plan; keeps a typo from looping over centuries.
MAX_WORKDAYS = 1000


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class IsoDateField(DateField):
    """A YYYY-MM-DD date whose error says what is expected (the same on every WTForms)."""

    def process_formdata(self, valuelist: list[str]) -> None:
        try:
            super().process_formdata(valuelist)
        except ValueError as exc:
            raise ValueError(_l("Enter a real date as YYYY-MM-DD, e.g. 2026-10-08.")) from exc


def _choice(value: str, label) -> object:
    return SelectChoice(value, label) if SelectChoice else (value, label)


def _role_choices() -> list:
    return [_choice(r, role_label(r)) for r in ROLES]


class _ProfileFields(FlaskForm):
    display_name = StringField(_l("Display name"), validators=[DataRequired(), Length(max=64)])
    email = StringField(_l("E-mail"), validators=[
        Optional(), Length(max=254),
        Regexp(EMAIL_PATTERN, message=_l("Enter an e-mail address like name@example.com.")),
    ])
    employee_no = StringField(
        _l("Employee no. (optional)"), validators=[Optional(), Length(max=32)],
        description=_l("Links this login to the employee's training record."),
    )
    # "At least one" is checked by the service: a validator here would mark every
    # checkbox as required in the HTML.
    roles = MultiCheckboxField(_l("Roles"))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.roles.choices = _role_choices()


class UserCreateForm(_ProfileFields):
    username = StringField(_l("Username"), validators=[
        DataRequired(), Length(max=64),
        Regexp(USERNAME_PATTERN, message=_l(
            "Use only letters, digits, dots, dashes, underscores and @ in the username.")),
    ])
    password = PasswordField(_l("Initial password"), validators=[DataRequired(), Length(max=256)])
    confirm = PasswordField(_l("Repeat password"), validators=[
        DataRequired(), EqualTo("password", message=_l("The passwords differ.")),
    ])


class UserEditForm(_ProfileFields):
    action = HiddenField(default="save")


class UserStatusForm(FlaskForm):
    """The enable/disable button; the action value says which."""

    action = HiddenField()


class PasswordResetForm(FlaskForm):
    action = HiddenField(default="reset_password")
    new_password = PasswordField(_l("New password"), validators=[DataRequired(), Length(max=256)])
    confirm = PasswordField(_l("Repeat new password"), validators=[
        DataRequired(), EqualTo("new_password", message=_l("The passwords differ.")),
    ])


class UserSearchForm(FlaskForm):
    class Meta:
        csrf = False

    q = StringField(_l("Username or name"), validators=[Optional(), Length(max=64)])
    role = SelectField(_l("Role"), validators=[Optional()])

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.role.choices = [_choice("", _l("All roles")), *_role_choices()]


class OverrideForm(FlaskForm):
    day = IsoDateField(_l("Date"), validators=[InputRequired(message=_l("Enter the date."))])
    is_workday = RadioField(
        _l("This day is"),
        choices=[_choice("1", _l("a working day")), _choice("0", _l("a holiday"))],
        validators=[InputRequired(message=_l("Choose working day or holiday."))],
    )
    note = StringField(_l("Note"), validators=[
        DataRequired(message=_l("Enter a note saying why this day is changed.")),
        Length(max=200),
    ])


class YearDeclareForm(FlaskForm):
    year = IntegerField(_l("Year"), validators=[InputRequired(message=_l("Enter the year."))])
    note = StringField(_l("Note"), validators=[
        DataRequired(message=_l("Enter a note, e.g. the State Council notice used.")),
        Length(max=200),
    ])


class DeleteForm(FlaskForm):
    """Only the CSRF token: a confirmation button."""


class DueDateForm(FlaskForm):
    """Start date plus N working days. A read-only GET form, so no CSRF token."""

    class Meta:
        csrf = False

    start = IsoDateField(_l("Start date"), validators=[
        InputRequired(message=_l("Enter the start date."))])
    days = IntegerField(_l("Working days"), validators=[
        InputRequired(message=_l("Enter the number of working days.")),
        NumberRange(min=0, max=MAX_WORKDAYS,
                    message=_l("Enter a number of working days from 0 to %(max)d.",
                               max=MAX_WORKDAYS)),
    ])


class BetweenForm(FlaskForm):
    """Working days between two dates (GET, no CSRF token)."""

    class Meta:
        csrf = False

    from_date = IsoDateField(_l("From"), validators=[InputRequired(message=_l("Enter the first date."))])
    to_date = IsoDateField(_l("To"), validators=[InputRequired(message=_l("Enter the second date."))])
