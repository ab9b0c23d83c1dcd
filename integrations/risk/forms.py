"""Forms of the risk-type pages. They only parse; ``integrations.risk.catalog`` judges
the values and names the field of each problem."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import IntegerField, SelectField, StringField, TextAreaField
from wtforms.validators import Optional

from integrations.risk.catalog import RiskTypeInput


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def optional_int(value: Any) -> int | None:
    """A <select> value where "" means none."""
    if value in (None, "", "None"):
        return None
    return int(value)


class RiskTypeForm(FlaskForm):
    code = StringField(_l("Code (sent by the risk system)"), filters=[_strip])
    name_zh = StringField(_l("Chinese name"), filters=[_strip])
    name_en = StringField(_l("English name"), filters=[_strip])
    description = TextAreaField(_l("Description"), filters=[_strip])

    def to_input(self, code: str | None = None) -> RiskTypeInput:
        return RiskTypeInput(code=code if code is not None else self.code.data or "",
                             name_zh=self.name_zh.data or "", name_en=self.name_en.data or "",
                             description=self.description.data or "")


class MappingForm(FlaskForm):
    course_id = SelectField(_l("Course"), coerce=optional_int, validate_choice=False)
    due_working_days = IntegerField(_l("Due within (working days)"), default=10,
                                    validators=[Optional()])


class ActionForm(FlaskForm):
    """A button that only needs the CSRF token (remove a mapping)."""
