"""Forms of the API token and call-log pages. They only parse: ``issue_token`` judges the
values and names the field of each problem."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import IntegerField, SearchField, SelectField, SelectMultipleField, StringField
from wtforms.validators import Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from integrations.tokens import SCOPES

try:  # WTForms 3.3 wants SelectChoice and deprecates plain tuples
    from wtforms import SelectChoice
except ImportError:  # pragma: no cover - WTForms < 3.3
    SelectChoice = None

STATUS_CLASSES = ("2xx", "4xx", "5xx")
NO_TOKEN = "none"  # noqa: S105 -- the call-log filter for calls without a known token


def choice(value: str, label: Any) -> Any:
    return SelectChoice(value, label) if SelectChoice else (value, label)


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class ScopesField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class TokenCreateForm(FlaskForm):
    name = StringField(_l("Name (who or what uses it, e.g. the HR system)"), filters=[_strip])
    # "At least one" and "known scope" are the service's to say, naming the field.
    scopes = ScopesField(_l("Scopes"), validate_choice=False)
    expires_in_days = IntegerField(_l("Expires after (days; empty: never)"),
                                   validators=[Optional()])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scopes.choices = [choice(name, name) for name in SCOPES]


class ConfirmForm(FlaskForm):
    """Only the CSRF token: a button that changes something (revoke)."""


class CallFilterForm(FlaskForm):
    """Filters of the call log (GET, so no CSRF token)."""

    class Meta:
        csrf = False

    token = SelectField(_l("Token"), default="", validate_choice=False)
    status = SelectField(_l("Status"), default="", choices=[
        choice("", _l("Any status")), choice("2xx", _l("2xx success")),
        choice("4xx", _l("4xx refused")), choice("5xx", _l("5xx server error"))])
    path = SearchField(_l("Path contains"), filters=[_strip],
                       validators=[Optional(), Length(max=255)])
