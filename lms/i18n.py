"""Language and time-zone selection: zh_CN unless the user chose English."""

from __future__ import annotations

from datetime import date, datetime

from flask import current_app, has_request_context, request, session
from flask_babel import format_date, format_datetime
from flask_login import current_user


def select_locale() -> str:
    languages = current_app.config["LANGUAGES"]
    if not has_request_context():  # CLI and background work speak the default language
        return current_app.config["BABEL_DEFAULT_LOCALE"]
    if request.path.startswith("/api/"):  # integrations: English unless the caller asks
        return request.accept_languages.best_match(languages) or "en"
    chosen = session.get("lang")
    if chosen in languages:
        return chosen
    user = current_user if current_user and current_user.is_authenticated else None
    if user is not None and user.locale in languages:
        return user.locale
    asked = request.args.get("lang")
    if asked in languages:
        return asked
    return current_app.config["BABEL_DEFAULT_LOCALE"]


def local_datetime(value: datetime | None, fmt: str = "yyyy-MM-dd HH:mm") -> str:
    """A stored UTC time shown in Asia/Shanghai (Babel's configured time zone)."""
    return "" if value is None else format_datetime(value, fmt)


def local_date(value: date | None) -> str:
    return "" if value is None else format_date(value, "yyyy-MM-dd")
