"""Password hashing with Argon2id (argon2-cffi's RFC 9106 low-memory profile)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask_babel import gettext as _

_hasher = PasswordHasher()
# Verified against when the username is unknown, so both paths take the same time.
_DUMMY_HASH = _hasher.hash("not-a-real-password")

MIN_LENGTH = 10


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)


def password_problem(password: str, *, username: str = "") -> str | None:
    """Why a new password is unacceptable, or None (message key for gettext)."""
    if len(password) < MIN_LENGTH:
        return "password_too_short"
    if username and username.lower() in password.lower():
        return "password_contains_username"
    if len(set(password)) < 4:
        return "password_too_simple"
    return None


def password_problem_message(key: str) -> str:
    """The user-facing (translated) text for a ``password_problem`` key."""
    return {
        "password_too_short": _("Use at least 10 characters."),
        "password_contains_username": _("The password must not contain the username."),
        "password_too_simple": _("The password is too simple."),
    }.get(key, key)
