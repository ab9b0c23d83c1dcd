"""Forms of the trainer's authoring pages. Choices that depend on the database (course
owners) or the user's language (risk topics) are filled in by the view per request."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    DecimalField,
    HiddenField,
    SearchField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import AnyOf, DataRequired, Length, NumberRange, Optional

from courses.authoring import MAX_BODY_CHARS


def optional_int(value: Any) -> int | None:
    """Coerce a <select> value where "" means "none"."""
    if value in (None, "", "None"):
        return None
    return int(value)


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class CourseFilterForm(FlaskForm):
    """Filters of the course list (GET, so no CSRF token)."""

    class Meta:
        csrf = False

    q = SearchField(_l("Code or title"), filters=[_strip], validators=[Optional(), Length(max=64)])
    topic = SelectField(_l("Risk topic"), default="")


class CourseForm(FlaskForm):
    code = StringField(_l("Course code"), filters=[_strip],
                       validators=[DataRequired(), Length(max=32)],
                       description=_l("For example RISK-ID-01. Cannot change once a version "
                                      "is published."))
    title_zh = StringField(_l("Title (Chinese)"), filters=[_strip],
                           validators=[DataRequired(), Length(max=200)])
    title_en = StringField(_l("Title (English)"), filters=[_strip],
                           validators=[Optional(), Length(max=200)])
    risk_topic = SelectField(_l("Risk topic"), validators=[DataRequired()])
    description = TextAreaField(_l("Description"), filters=[_strip],
                                validators=[Optional(), Length(max=10_000)])
    owner_id = SelectField(_l("Owner (trainer)"), coerce=optional_int, validate_choice=False)
    is_optional = BooleanField(_l("Optional course: trainees may enrol themselves"))
    max_playback_rate = DecimalField(
        _l("Highest playback speed"), places=2, default=1.0,
        validators=[DataRequired(), NumberRange(min=1.0, max=2.0, message=_l(
            "Choose a rate from 1.0 to 2.0."))],
        description=_l("1.0 means normal speed only; at most 2.0."))


class NewVersionForm(FlaskForm):
    change_note = TextAreaField(_l("What changes in this version"), filters=[_strip],
                                validators=[DataRequired(message=_l(
                                    "Describe what changes in this version.")),
                                    Length(max=5000)])
    requires_retraining = BooleanField(_l("Requires re-training of people who completed an "
                                          "earlier version"))


class DraftForm(FlaskForm):
    change_note = TextAreaField(_l("What changes in this version"), filters=[_strip],
                                validators=[Optional(), Length(max=5000)])
    requires_retraining = BooleanField(_l("Requires re-training of people who completed an "
                                          "earlier version"))


class DocumentLessonForm(FlaskForm):
    title = StringField(_l("Lesson title"), filters=[_strip],
                        validators=[DataRequired(), Length(max=200)])
    body = TextAreaField(_l("Text"), validators=[DataRequired(), Length(max=MAX_BODY_CHARS)],
                         description=_l("Plain text. Leave an empty line between paragraphs."))


class VideoLessonEditForm(FlaskForm):
    title = StringField(_l("Lesson title"), filters=[_strip],
                        validators=[DataRequired(), Length(max=200)])


class VideoUploadForm(FlaskForm):
    title = StringField(_l("Lesson title"), filters=[_strip],
                        validators=[Optional(), Length(max=200)],
                        description=_l("Leave empty to use the file name."))
    file = FileField(_l("Video file (MP4 or WebM)"),
                     validators=[FileRequired(message=_l("Choose a video file."))])


class ActionForm(FlaskForm):
    """A button that changes something (publish, retire, delete): only the CSRF token."""


class MoveForm(FlaskForm):
    direction = HiddenField(validators=[AnyOf(["up", "down"])])
