"""Forms of the webhook admin pages. They only parse: ``service.create_endpoint`` judges
the values and names the field of each problem."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import SelectField, SelectMultipleField, StringField
from wtforms.widgets import CheckboxInput, ListWidget

from integrations.events import EVENT_TYPES


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


# event type -> what it means (shown next to its checkbox and in the lists)
EVENT_LABELS: dict[str, object] = {
    "course.completed": _l("A learner completed a course (every lesson done)"),
    "lesson.completed": _l("A learner completed a video or document lesson"),
    "exam.passed": _l("A learner passed an exam"),
    "exam.failed": _l("A learner failed an exam attempt"),
    "policy.signed": _l("A learner e-signed a policy acknowledgement"),
}


class EventsField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class EndpointForm(FlaskForm):
    name = StringField(_l("Name (the receiving system, e.g. the HR system)"), filters=[_strip])
    url = StringField(_l("Address (https://…)"), filters=[_strip])
    # "At least one" and "known event" are the service's to say, naming the field.
    events = EventsField(_l("Events"), validate_choice=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.events.choices = [(name, name) for name in EVENT_TYPES]


class ConfirmForm(FlaskForm):
    """Only the CSRF token: a button that changes something (deactivate, retry, test)."""


class DeliveryFilterForm(FlaskForm):
    """Filters of the delivery log (GET, so no CSRF token)."""

    class Meta:
        csrf = False

    status = SelectField(_l("Status"), default="", choices=[
        ("", _l("Any status")), ("pending", _l("Pending")), ("delivered", _l("Delivered")),
        ("failed", _l("Failed"))])
    endpoint_id = SelectField(_l("Endpoint"), default="", validate_choice=False)
