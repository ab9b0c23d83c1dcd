"""Refusals that name the form field they concern, shared by every service layer.

Services raise ``FieldErrors`` (or a subclass) collecting every problem at once; views
put each message next to its field with ``show_on_form`` — nothing is half written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from flask import flash
from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError

from lms.extensions import db

T = TypeVar("T")


class FieldErrors(Exception):
    """Input refused; ``errors`` maps a form field name ("" for the whole form) to messages."""

    def __init__(self, errors: Mapping[str, list[Any]]) -> None:
        self.errors = {k: list(v) for k, v in errors.items() if v}
        super().__init__(self.errors)

    @classmethod
    def one(cls, message: Any, field: str = "") -> FieldErrors:
        return cls({field: [message]})

    def __str__(self) -> str:  # messages are lazy: translate only when shown
        return "; ".join(str(m) for msgs in self.errors.values() for m in msgs)


class ErrorCollector(dict[str, list[Any]]):
    """Collects problems field by field, then raises them together."""

    def __init__(self, error_class: type[FieldErrors] = FieldErrors) -> None:
        super().__init__()
        self._error_class = error_class

    def add(self, field: str, message: Any) -> None:
        self.setdefault(field, []).append(message)

    def raise_if_any(self) -> None:
        if self:
            raise self._error_class(self)


def show_on_form(form, error: FieldErrors) -> None:
    """Put a service's refusals next to the fields they concern (the rest as flashes)."""
    for name, messages in error.errors.items():
        field = getattr(form, name, None) if name else None
        for message in messages:
            if field is not None:
                field.errors = [*field.errors, message]
            else:
                flash(str(message), "error")


def save_or_show(form, action: Callable[[], T]) -> tuple[T | None, int]:
    """The unit of work of a form view: run the service call and commit once.

    Returns ``(result, 200)`` after a commit. On ``FieldErrors`` it rolls back and puts
    the messages on the form (422, or 409 when the whole form is refused, e.g. a frozen
    version); on ``IntegrityError`` (a concurrent change won a unique key) it rolls back
    and flashes that nothing was saved (409). Nothing is ever half written.
    """
    try:
        result = action()
        db.session.commit()
    except FieldErrors as exc:
        db.session.rollback()
        show_on_form(form, exc)
        return None, 409 if "" in exc.errors else 422
    except IntegrityError:
        db.session.rollback()
        flash(_("Someone else changed this at the same moment; nothing was saved. Try again."),
              "error")
        return None, 409
    return result, 200
