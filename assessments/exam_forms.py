"""The authoring form of an exam lesson. It only parses: every rule (ranges, the bank's
active questions, counts per topic against what the bank holds) lives in
``assessments.exam_authoring`` so a refusal reads the same wherever it comes from."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    IntegerField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
)
from wtforms.validators import Optional
from wtforms.widgets import CheckboxInput, ListWidget

from assessments.exam_authoring import ExamSettings
from assessments.policy_forms import optional_int
from courses.models import RISK_TOPICS

try:  # WTForms 3.3 wants SelectChoice and deprecates plain tuples
    from wtforms import SelectChoice
except ImportError:  # pragma: no cover - WTForms < 3.3
    SelectChoice = None

__all__ = ["REVIEW_LABELS", "SELECTION_LABELS", "ExamLessonForm", "choices"]

SELECTION_LABELS = {
    "fixed": _l("Fixed: the same questions for everyone"),
    "random": _l("Random: a number of questions per risk topic"),
}
REVIEW_LABELS = {
    "score": _l("Score only"),
    "answers": _l("Score and correct answers after each attempt"),
    "answers_when_done": _l("Correct answers once passed or out of attempts"),
}


def choices(pairs) -> list:
    """(value, label) pairs as the installed WTForms wants them."""
    return [SelectChoice(v, label) if SelectChoice else (v, label) for v, label in pairs]


def _count_name(topic: str) -> str:
    return f"count_{topic}"


class MultiCheckboxField(SelectMultipleField):
    """Checkboxes instead of a multi-select (usable on a phone)."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class _Slot:
    """Receives the service's messages about the per-topic counts as a whole."""

    def __init__(self) -> None:
        self.errors: list = []


class ExamLessonForm(FlaskForm):
    """Title and settings of an exam lesson (new or edited draft), plus one count input
    per risk topic (``count_<topic>``, added below from the model's list of topics)."""

    title = StringField(_l("Title"))
    # Chosen on the page's bank picker (?bank=<id>); posted back as this field.
    bank_id = SelectField(_l("Question bank"), coerce=optional_int, validate_choice=False,
                          validators=[Optional()])
    selection = RadioField(_l("Question selection"), default="random", validate_choice=False,
                           choices=choices(SELECTION_LABELS.items()))
    fixed_question_ids = MultiCheckboxField(_l("Questions"), coerce=int, validate_choice=False)
    pass_score = IntegerField(_l("Pass score (%)"), default=80, validators=[Optional()],
                              description=_l("From 1 to 100."))
    max_attempts = IntegerField(_l("Attempts allowed"), default=3, validators=[Optional()],
                                description=_l("From 1 to 10."))
    time_limit_minutes = IntegerField(_l("Time limit (minutes)"), default=20,
                                      validators=[Optional()],
                                      description=_l("From 1 to 180."))
    review = SelectField(_l("After submitting, learners see"), default="score",
                         validate_choice=False, choices=choices(REVIEW_LABELS.items()))
    shuffle_options = BooleanField(_l("Shuffle the options of each question"), default=True)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.per_topic = _Slot()

    def count_fields(self) -> list[tuple[str, IntegerField]]:
        """(topic, its count input) in the model's topic order."""
        return [(topic, self[_count_name(topic)]) for topic in RISK_TOPICS]

    def fill(self, settings: ExamSettings) -> None:
        """Show saved settings (edit page, GET)."""
        self.bank_id.data = settings.bank_id
        self.selection.data = settings.selection
        self.fixed_question_ids.data = list(settings.fixed_question_ids)
        counts = dict(settings.per_topic)
        for topic, field in self.count_fields():
            field.data = counts.get(topic) or None
        self.pass_score.data = settings.pass_score
        self.max_attempts.data = settings.max_attempts
        self.time_limit_minutes.data = settings.time_limit_minutes
        self.review.data = settings.review
        self.shuffle_options.data = settings.shuffle_options

    def to_settings(self) -> ExamSettings:
        """What was posted, as the service's input. Blank numbers become 0, which the
        service refuses with its own message (counts: 0 means "none of this topic")."""
        return ExamSettings(
            bank_id=self.bank_id.data,
            selection=self.selection.data or "",
            fixed_question_ids=tuple(self.fixed_question_ids.data or ()),
            per_topic=tuple((topic, field.data) for topic, field in self.count_fields()
                            if field.data),
            pass_score=self.pass_score.data or 0,
            max_attempts=self.max_attempts.data or 0,
            time_limit_minutes=self.time_limit_minutes.data or 0,
            review=self.review.data or "",
            shuffle_options=bool(self.shuffle_options.data),
        )


for _topic in RISK_TOPICS:  # FormMeta picks up fields set on the class
    setattr(ExamLessonForm, _count_name(_topic), IntegerField(_topic, validators=[Optional()]))
