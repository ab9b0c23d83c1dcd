"""Forms of the admin feed pages. They only parse; ``integrations.feeds.sources`` judges
the values and names the field of each problem."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, IntegerField, SelectField, StringField
from wtforms.validators import Optional

from integrations.feeds.sources import SourceInput


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class SourceForm(FlaskForm):
    name = StringField(_l("Name"), filters=[_strip])
    url = StringField(_l("Feed address (RSS or Atom)"), filters=[_strip])
    default_topic = SelectField(_l("Default risk topic"), validate_choice=False)
    poll_minutes = IntegerField(_l("Poll every (minutes)"), default=60,
                                validators=[Optional()])
    enabled = BooleanField(_l("Enabled"), default=True)

    def to_input(self) -> SourceInput:
        return SourceInput(name=self.name.data or "", url=self.url.data or "",
                           default_topic=self.default_topic.data or "",
                           poll_minutes=self.poll_minutes.data,
                           enabled=bool(self.enabled.data))


class HostForm(FlaskForm):
    host = StringField(_l("Host name"), filters=[_strip])
    note = StringField(_l("Why (e.g. the intranet mirror of the labour bureau)"),
                       filters=[_strip])


class HostRemoveForm(FlaskForm):
    host = HiddenField()


class ActionForm(FlaskForm):
    """A button that only needs the CSRF token (poll now)."""
