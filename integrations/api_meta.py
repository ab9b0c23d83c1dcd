"""The API about itself: its OpenAPI document and the calling token."""

from __future__ import annotations

from datetime import datetime
from functools import cache

from flask import jsonify
from flask_babel import get_locale

from integrations.api import OPERATIONS, ApiModel, endpoint, openapi_document
from integrations.tokens import ApiToken


class TokenInfo(ApiModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None


@endpoint("/openapi.json", summary="This API's OpenAPI 3.1 document", tag="meta", auth="none")
def openapi():
    """The document every route is checked against (tests/web/test_api_contract.py)."""
    return jsonify(_document(len(OPERATIONS), str(get_locale())))


@cache
def _document(_operations: int, _locale: str) -> dict:
    """Built once per set of operations (all declared at import time) and language (the
    scope descriptions are translated)."""
    return openapi_document()


@endpoint("/token", summary="The calling token: its name, scopes and expiry", tag="meta",
          response=TokenInfo)
def whoami(token: ApiToken) -> TokenInfo:
    """Any live token may call it: a cheap way for an integrator to check their setup."""
    return TokenInfo(id=token.id, name=token.name, prefix=token.prefix,
                     scopes=token.scope_list, created_at=token.created_at,
                     expires_at=token.expires_at)
