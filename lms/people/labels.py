"""Display labels for employee statuses and roles (translated at render time)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from lms.people.csv_import import STATUS_LABELS  # the Chinese HR terms, canonical

__all__ = ["STATUS_LABELS", "role_label", "status_label"]

_STATUS_DISPLAY = {
    "active": _l("Active"),
    "leaving": _l("Leaving"),
    "absconded": _l("Absconded"),
    "unpaid_leave": _l("Unpaid leave"),
    "left": _l("Left"),
}

_ROLE_DISPLAY = {
    "trainee": _l("Trainee"),
    "trainer": _l("Trainer"),
    "hr": _l("HR"),
    "manager": _l("Manager"),
    "admin": _l("Administrator"),
    "auditor": _l("Auditor"),
}


def status_label(code: str) -> str:
    return str(_STATUS_DISPLAY.get(code, code))


def role_label(code: str) -> str:
    return str(_ROLE_DISPLAY.get(code, code))
