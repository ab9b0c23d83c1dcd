"""Forms of the learning pages: HR's manual enrolment, self-enrolment, the document
"I have read this" button, and the parser of the heartbeat (the hot path, so a plain
function instead of a WTForms class; CSRF is still checked globally by CSRFProtect)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, SelectField, TextAreaField
from wtforms.validators import DataRequired, Length

from courses import watch

BEAT_EVENTS = frozenset(watch.BEAT_EVENTS)
MAX_SEQ = 2**31 - 1
MAX_POSITION = 1e7


def optional_int(value: Any) -> int | None:
    """Coerce a <select> value where "" means none."""
    if value in (None, "", "None"):
        return None
    return int(value)


class ManualEnrolForm(FlaskForm):
    version_id = SelectField(_l("Course version"), coerce=optional_int,
                             validators=[DataRequired(message=_l(
                                 "Choose a published course version."))])
    department_id = SelectField(_l("Department"), coerce=optional_int, validate_choice=False)
    include_subdepartments = BooleanField(_l("Include sub-departments"), default=True)
    employee_nos = TextAreaField(
        _l("Employee numbers"), validators=[Length(max=200_000)],
        description=_l("One per line, or separated by commas or spaces."))


class SelfEnrolForm(FlaskForm):
    """Just the CSRF token: the version is in the URL and the learner is the current user."""


class DocumentReadForm(FlaskForm):
    session = HiddenField(validators=[DataRequired(), Length(max=64)])


@dataclass(frozen=True)
class BeatInput:
    session: str
    seq: int
    position: float
    event: str


def parse_beat(form: Mapping[str, str]) -> BeatInput | None:
    """The heartbeat's fields, or None when any is missing or malformed."""
    token = form.get("session", "")
    if not token or len(token) > 64:
        return None
    try:
        seq = int(form.get("seq", ""))
        position = float(form.get("position", ""))
    except ValueError:
        return None
    # Implausible but well-formed values go on to be judged (and logged as rejected).
    if abs(seq) > MAX_SEQ or not math.isfinite(position) or abs(position) > MAX_POSITION:
        return None
    event = form.get("event") or "tick"
    if event not in BEAT_EVENTS:
        return None
    return BeatInput(token, seq, position, event)
