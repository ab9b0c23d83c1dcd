"""Display labels for course risk topics (the codes are stored; labels follow the
user's language, Chinese by default)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from courses.models import RISK_TOPICS

__all__ = ["TOPIC_LABELS", "topic_choices", "topic_label"]

TOPIC_LABELS = {
    "identity_verification": _l("Identity verification at hiring"),
    "labour_contracts": _l("Labour contracts"),
    "social_insurance": _l("Social insurance"),
    "work_injury": _l("Work injury"),
    "attendance": _l("Attendance"),
    "performance": _l("Performance"),
    "offboarding": _l("Offboarding handover"),
    "notice_delivery": _l("Notice delivery"),
    "other": _l("Other"),
}
assert set(TOPIC_LABELS) == set(RISK_TOPICS), "every risk topic needs a label"


def topic_label(code: str) -> str:
    return str(TOPIC_LABELS.get(code, code))


def topic_choices(blank: str | None = None) -> list[tuple[str, str]]:
    """(code, label) pairs in the model's order, optionally after a blank "all" entry."""
    choices = [(code, topic_label(code)) for code in RISK_TOPICS]
    return [("", blank), *choices] if blank is not None else choices
