"""API bearer tokens and the log of every API call.

A token is 32 random bytes shown to the admin once; only its SHA-256 is stored (a
high-entropy secret needs no slow hash: nobody can guess it, and the lookup must be
cheap on every call). Tokens carry scopes, may expire and are revoked, never deleted,
so the call log keeps pointing at who called.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import ForeignKey, Index, Integer, String, Text, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from lms import ledger
from lms.dbtypes import UTCDateTime, utcnow
from lms.extensions import db
from lms.field_errors import ErrorCollector, FieldErrors

TOKEN_PREFIX = "ca_"  # noqa: S105 -- marks our tokens in logs and secret scanners
# scope -> what it allows (shown to the admin creating a token)
SCOPES: dict[str, object] = {
    "hr:write": _l("Upsert employees (batch and single changes)"),
    "hr:read": _l("Read employees' training records for the HR capability file"),
    "risk:write": _l("Send risk signals"),
    "risk:read": _l("Read training gaps per department and risk topic"),
    "performance:read": _l("Read the risk-control training KPI per period"),
}


class ApiToken(db.Model):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(12))  # shown in lists: "ca_AbCd…"
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(Text)  # JSON list
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    @property
    def scope_list(self) -> list[str]:
        return list(json.loads(self.scopes or "[]"))

    def is_live(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class ApiCall(db.Model):
    """One API request: who (token), what (method, path), outcome (status, error code)."""

    __tablename__ = "api_calls"
    __table_args__ = (Index("ix_api_calls_token_at", "token_id", "at"),
                      Index("ix_api_calls_at", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id", ondelete="SET NULL"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(255))
    status: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(64))
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    ip: Mapped[str | None] = mapped_column(String(64))


def digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown once, never stored


class TokenInputError(FieldErrors):
    """A token form or command with a bad field."""


def issue_token(session: Session, *, name: str, scopes: list[str], actor_id: int | None,
                expires_in_days: int | None = None, now: datetime | None = None
                ) -> IssuedToken:
    """Create a token (the caller commits) and append ``api.token_issued`` to the ledger."""
    now = now or utcnow()
    name = name.strip()
    errors = ErrorCollector(TokenInputError)
    if not name or len(name) > 64:
        errors.add("name", _l("A name of 1 to 64 characters is required."))
    unknown = sorted(set(scopes) - set(SCOPES))
    if not scopes:
        errors.add("scopes", _l("Choose at least one scope."))
    elif unknown:
        errors.add("scopes", _l("Unknown scope(s): %(scopes)s.", scopes=", ".join(unknown)))
    if expires_in_days is not None and not 1 <= expires_in_days <= 3650:
        errors.add("expires_in_days", _l("Expiry must be between 1 and 3650 days."))
    errors.raise_if_any()
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(name=name, prefix=secret[:8], token_hash=digest(secret),
                     scopes=json.dumps(sorted(set(scopes))), created_by=actor_id, created_at=now,
                     expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None)
    session.add(token)
    session.flush()
    ledger.append(session, kind="api.token_issued", subject=f"api_token:{token.id}",
                  actor_id=actor_id, payload={"name": name, "scopes": token.scope_list,
                                              "prefix": token.prefix,
                                              "expires_at": token.expires_at.isoformat()
                                              if token.expires_at else None})
    return IssuedToken(token, secret)


def revoke_token(session: Session, token_id: int, *, actor_id: int | None,
                 now: datetime | None = None) -> bool:
    """Revoke once (conditional update); False if it was already revoked or is unknown."""
    now = now or utcnow()
    done = session.execute(
        update(ApiToken).where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now, revoked_by=actor_id).execution_options(synchronize_session=False)
    ).rowcount
    if done:
        ledger.append(session, kind="api.token_revoked", subject=f"api_token:{token_id}",
                      actor_id=actor_id, payload={"token_id": token_id})
    return bool(done)


def find_token(session: Session, raw: str) -> ApiToken | None:
    """The token for a presented secret (live or not: the caller says why it fails)."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 128:
        return None
    return session.execute(
        select(ApiToken).where(ApiToken.token_hash == digest(raw))
    ).scalar_one_or_none()


def calls_since(session: Session, token_id: int, since: datetime) -> int:
    """Calls a token made since ``since`` (the rate limit; uses ix_api_calls_token_at)."""
    return session.execute(
        select(func.count()).select_from(ApiCall)
        .where(ApiCall.token_id == token_id, ApiCall.at >= since)
    ).scalar_one()
