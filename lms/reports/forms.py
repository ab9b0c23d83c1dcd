"""Filter forms of the report pages (GET, so no CSRF token: they change nothing).

Every bad value gets a message naming what was expected; choices from the database are
filled in by the view before validation.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField
from wtforms.validators import ValidationError

from lms.compliance.forms import assignment_status_label
from lms.reports.periods import Period, parse_period
from lms.reports.queries import REPORT_STATUSES
from lms.workdays import parse_iso_date

__all__ = ["CompletionFilterForm", "IdChoiceField", "KpiForm", "PerformanceForm",
           "status_choices"]


class IdChoiceField(SelectField):
    """A <select> of database ids where "" means "all"; any other value must be one of
    the choices the view filled in (a forged or stale id is refused with ``message``)."""

    def __init__(self, label: Any = None, *, message: Any, **kwargs: Any) -> None:
        super().__init__(label, coerce=str, validate_choice=False, **kwargs)
        self.message = message

    def pre_validate(self, form: Any) -> None:
        if self.data in (None, "", "None"):
            return
        if self.data not in {str(value) for value, _label in self.choices}:
            raise ValidationError(self.message)

    def value(self) -> int | None:
        """The chosen id (None for "all" or when the field has errors)."""
        if self.errors or self.data in (None, "", "None"):
            return None
        return int(self.data)


class LocalDateField(StringField):
    """A date typed as YYYY-MM-DD (the phone's date picker sends that form)."""

    def __init__(self, label: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("render_kw", {"type": "date"})
        super().__init__(label, **kwargs)

    def pre_validate(self, form: Any) -> None:
        if self.data:
            try:
                parse_iso_date(self.data)
            except ValueError:
                raise ValidationError(
                    _l("Enter a date as YYYY-MM-DD, e.g. 2026-10-08.")) from None

    def value(self) -> date | None:
        if self.errors or not self.data:
            return None
        return parse_iso_date(self.data)


class PeriodField(StringField):
    """A month (2026-09) or a quarter (2026-Q3)."""

    def pre_validate(self, form: Any) -> None:
        if not (self.data or "").strip():
            raise ValidationError(_l("Enter a period: a month as YYYY-MM or a quarter as "
                                     "YYYY-Qn, e.g. 2026-09 or 2026-Q3."))
        try:
            parse_period(self.data)
        except ValueError:
            raise ValidationError(_l("Enter a period: a month as YYYY-MM or a quarter as "
                                     "YYYY-Qn, e.g. 2026-09 or 2026-Q3.")) from None

    def value(self) -> Period | None:
        if self.errors:
            return None
        return parse_period(self.data)


def status_choices() -> list[tuple[str, str]]:
    labels = {"overdue": str(_l("Overdue"))}
    return [("", str(_l("All statuses"))), *(
        (code, labels.get(code) or assignment_status_label(code)) for code in REPORT_STATUSES)]


class CompletionFilterForm(FlaskForm):
    class Meta:
        csrf = False

    department = IdChoiceField(_l("Department (with sub-departments)"),
                               message=_l("Choose a department from the list."))
    position = IdChoiceField(_l("Position"), message=_l("Choose a position from the list."))
    course = IdChoiceField(_l("Course"), message=_l("Choose a course from the list."))
    status = SelectField(_l("Status"), default="", validate_choice=False)
    exact = BooleanField(_l("Without sub-departments"))
    due_from = LocalDateField(_l("Due from"))
    due_to = LocalDateField(_l("Due until"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.status.choices = status_choices()

    def validate_status(self, field: Any) -> None:
        if field.data and field.data not in REPORT_STATUSES:
            raise ValidationError(_l("Choose a status from the list."))

    def validate_due_to(self, field: Any) -> None:
        start, end = self.due_from.value(), field.value()
        if start is not None and end is not None and end < start:
            raise ValidationError(_l("The end of the due-date range is before its start."))


class KpiForm(FlaskForm):
    class Meta:
        csrf = False

    period = PeriodField(_l("Period (month or quarter)"),
                         render_kw={"placeholder": "2026-09 / 2026-Q3", "list": "periods"})
    department = IdChoiceField(_l("Department (with sub-departments)"),
                               message=_l("Choose a department from the list."))


class PerformanceForm(FlaskForm):
    class Meta:
        csrf = False

    period = PeriodField(_l("Period (month or quarter)"),
                         render_kw={"placeholder": "2026-09 / 2026-Q3", "list": "periods"})
    department = IdChoiceField(_l("Department (with sub-departments)"),
                               message=_l("Choose a department from the list."))

    def validate_department(self, field: Any) -> None:
        if field.data in (None, "", "None"):
            raise ValidationError(_l("Choose a department."))
