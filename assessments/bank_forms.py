"""Forms of the question-bank pages. They only parse: every rule lives in
``assessments.banks`` so the file importer applies the same ones."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, SelectField, StringField, TextAreaField

from assessments.banks import LETTERS, QuestionData
from assessments.exams import Question
from courses.topics import topic_choices

try:  # WTForms 3.3 wants SelectChoice and deprecates plain tuples
    from wtforms import SelectChoice
except ImportError:  # pragma: no cover - WTForms < 3.3
    SelectChoice = None

KIND_LABELS = {
    "single": _l("Single choice"),
    "multiple": _l("Multiple choice"),
    "true_false": _l("True / false"),
}
SLOTS = tuple(letter.lower() for letter in LETTERS)


def _choices(pairs) -> list:
    return [SelectChoice(v, label) if SelectChoice else (v, label) for v, label in pairs]


class BankForm(FlaskForm):
    name = StringField(_l("Bank name"))
    description = TextAreaField(_l("Description"))


class _Slot:
    """Receives the service's messages about the options as a whole (field "options")."""

    def __init__(self) -> None:
        self.errors: list = []


class QuestionForm(FlaskForm):
    kind = SelectField(_l("Kind"), choices=_choices(KIND_LABELS.items()))
    topic = SelectField(_l("Risk topic"))
    text = TextAreaField(_l("Question"))
    explanation = TextAreaField(
        _l("Explanation"), description=_l("Optional: the rule or article behind the answer, "
                                          "shown to learners when the exam lets them review."))
    option_a = StringField(_l("Option A"))
    option_b = StringField(_l("Option B"))
    option_c = StringField(_l("Option C"))
    option_d = StringField(_l("Option D"))
    option_e = StringField(_l("Option E"))
    option_f = StringField(_l("Option F"))
    correct_a = BooleanField(_l("A is correct"))
    correct_b = BooleanField(_l("B is correct"))
    correct_c = BooleanField(_l("C is correct"))
    correct_d = BooleanField(_l("D is correct"))
    correct_e = BooleanField(_l("E is correct"))
    correct_f = BooleanField(_l("F is correct"))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.topic.choices = _choices(topic_choices())
        self.options = _Slot()

    def slots(self) -> list[tuple[str, StringField, BooleanField]]:
        """(letter, option field, correct field) for the template."""
        return [(s.upper(), self[f"option_{s}"], self[f"correct_{s}"]) for s in SLOTS]

    def to_data(self) -> QuestionData:
        return QuestionData(
            kind=self.kind.data or "", topic=self.topic.data or "",
            text=self.text.data or "", explanation=self.explanation.data or "",
            options=tuple(self[f"option_{s}"].data or "" for s in SLOTS),
            correct=frozenset(i for i, s in enumerate(SLOTS) if self[f"correct_{s}"].data))

    @classmethod
    def for_question(cls, question: Question) -> QuestionForm:
        """A form filled from a stored question (the page's first GET)."""
        values: dict[str, object] = {"kind": question.kind, "topic": question.topic,
                                     "text": question.text,
                                     "explanation": question.explanation}
        for option in question.options:
            if 1 <= option.position <= len(SLOTS):
                slot = SLOTS[option.position - 1]
                values[f"option_{slot}"] = option.text
                values[f"correct_{slot}"] = option.is_correct
        return cls(formdata=None, data=values)


class ImportForm(FlaskForm):
    file = FileField(_l("CSV or Excel file"),
                     validators=[FileRequired(message=_l("Choose a file."))])


class ActionForm(FlaskForm):
    """CSRF only (archive, restore)."""
