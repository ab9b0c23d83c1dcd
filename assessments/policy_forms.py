"""Forms of the policy pages: documents, versions, policy lessons and the signing form."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    HiddenField,
    IntegerField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from assessments.policies import DEFAULT_MIN_READING_SECONDS, DEFAULT_STATEMENT


def optional_int(value: object) -> int | None:
    if value in (None, "", "None"):
        return None
    return int(value)  # type: ignore[arg-type]


class PolicyDocumentForm(FlaskForm):
    name = StringField(_l("Policy name"), validators=[DataRequired(), Length(max=200)])
    statement_template = TextAreaField(
        _l("Statement"), default=DEFAULT_STATEMENT, validators=[Length(max=2000)],
        description=_l("{name} and {version} are replaced by the policy name and the "
                       "version number."))
    min_reading_seconds = IntegerField(
        _l("Minimum reading time (seconds)"), default=DEFAULT_MIN_READING_SECONDS,
        validators=[DataRequired(message=_l("Enter a number of seconds.")),
                    NumberRange(min=0, max=3600)])


class PolicyVersionForm(FlaskForm):
    body = TextAreaField(_l("Text of the policy (plain text)"), validators=[Optional()])
    pdf = FileField(_l("Or upload a PDF"))


class PublishForm(FlaskForm):
    """CSRF only."""


class PolicyLessonForm(FlaskForm):
    title = StringField(_l("Title"), validators=[DataRequired(), Length(max=200)])
    policy_version_id = SelectField(_l("Policy version"), coerce=optional_int,
                                    validators=[Optional()])


class SignForm(FlaskForm):
    reading = HiddenField()
    full_name = StringField(_l("Your full name"),
                            validators=[DataRequired(message=_l("Type your full name."))])
    password = PasswordField(_l("Your password"),
                             validators=[DataRequired(message=_l("Enter your password."))])
