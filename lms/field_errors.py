"""Refusals that name the form field they concern, shared by every service layer.

Services raise ``FieldErrors`` (or a subclass) collecting every problem at once; views
put each message next to its field with ``show_on_form`` — nothing is half written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import flash


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
