"""Server-side sessions: the cookie holds a random token; the database decides if it
is still good. Logging out or disabling a user revokes rows, so a copied old cookie
stops working at once."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lms.auth.models import UserSession
from lms.dbtypes import utcnow
from lms.people.models import User

# last_seen_at is written at most this often, so page views don't all become writes.
TOUCH_INTERVAL = timedelta(minutes=1)


def token_digest(token: str) -> str:
    """The stored form of a login token (SHA-256): the database never holds the token."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def start_session(
    session: Session, user: User, *, ip: str | None, user_agent: str | None, lifetime: timedelta
) -> str:
    """Create a session row for ``user`` and return the token for the cookie."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = UserSession(token_hash=token_digest(token), user_id=user.id, created_at=now,
                      last_seen_at=now, expires_at=now + lifetime, ip=ip,
                      user_agent=(user_agent or "")[:512])
    session.add(row)
    session.flush()
    user._session_token = token
    user.current_session_id = row.id
    user.last_login_at = now
    return token


def load_session_user(session: Session, token: str) -> User | None:
    """The user of a live session token, or None if revoked, expired or disabled."""
    now = utcnow()
    row = session.execute(
        select(UserSession).where(UserSession.token_hash == token_digest(token))
    ).scalar_one_or_none()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    user = row.user
    if not user.is_enabled:
        return None
    user._session_token = token
    user.current_session_id = row.id
    if now - row.last_seen_at > TOUCH_INTERVAL:
        row.last_seen_at = now
    return user


def revoke_session(session: Session, token: str, *, reason: str) -> None:
    session.execute(
        update(UserSession)
        .where(UserSession.token_hash == token_digest(token), UserSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
    )


def revoke_user_sessions(session: Session, user_id: int, *, reason: str) -> int:
    """Revoke every live session of a user (disabled, password changed); returns count."""
    result = session.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
    )
    return result.rowcount or 0
