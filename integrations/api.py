"""The /api/v1 core: bearer-token authentication with scopes, JSON errors, the call log,
the rate limit and the OpenAPI 3 document.

Endpoints live next to their subject (integrations/hr, integrations/risk, ...) and are
declared with ``@endpoint``, which routes the view, authenticates the caller, parses the
body and query with pydantic models and records the operation for ``openapi.json``, so
the document is generated from the very declarations that serve the requests and a
route cannot exist undocumented.

Errors are one shape everywhere::

    {"error": {"status": 400, "code": "validation_failed", "message": "...",
               "field": "employees[2].department", "details": [{"field": ..., "message": ...}]}}
"""

from __future__ import annotations

import importlib
import inspect
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache, wraps
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.json_schema import models_json_schema
from werkzeug.exceptions import HTTPException

from integrations.tokens import SCOPES, ApiCall, ApiToken, calls_since, find_token
from lms.dbtypes import utcnow
from lms.extensions import csrf, db
from lms.field_errors import FieldErrors

PREFIX = "/api/v1"
bp = Blueprint("api", __name__, url_prefix=PREFIX)

# Modules declaring endpoints on ``bp``; imported once by ``init_app``.
ENDPOINT_MODULES: list[str] = [
    "integrations.api_meta",
    "integrations.risk.api",
    "integrations.performance_api",
    "integrations.hr.api",
]

ERROR_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
               415: "unsupported_media_type", 422: "unprocessable", 429: "rate_limited",
               500: "server_error"}


class ApiModel(BaseModel):
    """Base of request and response bodies: unknown fields are refused, not ignored, so a
    misspelt field is an error the caller sees instead of a silently dropped value."""

    model_config = ConfigDict(extra="forbid")


class ErrorDetail(ApiModel):
    field: str | None = None
    message: str


class ErrorBody(ApiModel):
    status: int
    code: str
    message: str
    field: str | None = None
    details: list[ErrorDetail] = []


class ErrorResponse(ApiModel):
    error: ErrorBody


class ApiError(Exception):
    """Raised by endpoint code; becomes the JSON error response."""

    def __init__(self, status: int, message: str, *, code: str | None = None,
                 field: str | None = None, details: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.code = code or ERROR_CODES.get(status, "error")
        self.field, self.details, self.headers = field, details or [], headers or {}


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found.")


@dataclass
class Operation:
    """One documented route: what the OpenAPI document says about it."""

    rule: str
    method: str
    endpoint: str
    summary: str
    tag: str
    scope: str | None
    auth: str  # "bearer", "hmac" or "none"
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    errors: tuple[int, ...]
    description: str = ""
    response_content_type: str = "application/json"
    extra_headers: dict[str, str] = field(default_factory=dict)
    also: tuple[int, ...] = ()  # further success statuses with the same body

    @property
    def path(self) -> str:
        """The OpenAPI path: ``/employees/<int:employee_id>`` -> ``/employees/{employee_id}``."""
        return PREFIX + re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", self.rule)

    def path_params(self) -> list[tuple[str, str]]:
        out = []
        for converter, name in re.findall(r"<(?:([^:<>]+):)?([^<>]+)>", self.rule):
            out.append((name, "integer" if converter == "int" else "string"))
        return out


OPERATIONS: list[Operation] = []


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _validation_error(exc: ValidationError, where: str) -> ApiError:
    details = [{"field": _field_path(e["loc"]) or None, "message": e["msg"]}
               for e in exc.errors(include_url=False)]
    first = details[0]
    return ApiError(400, f"{where}: {first['field'] or 'body'}: {first['message']}",
                    code="validation_failed", field=first["field"], details=details)


def parse_body(model: type[BaseModel]) -> BaseModel:
    if not request.is_json:
        raise ApiError(415, "Send the body as JSON (Content-Type: application/json).")
    payload = request.get_json(silent=True)
    if payload is None:
        raise ApiError(400, "The body is not valid JSON.", code="invalid_json")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise _validation_error(exc, "body") from None


@cache
def _list_fields(model: type[BaseModel]) -> frozenset[str]:
    """Query names whose schema is an array: ``?tag=a`` must reach them as ``["a"]``."""
    props = model.model_json_schema().get("properties", {})
    return frozenset(name for name, prop in props.items()
                     if prop.get("type") == "array"
                     or any(p.get("type") == "array" for p in prop.get("anyOf", [])))


def parse_query(model: type[BaseModel]) -> BaseModel:
    raw: dict[str, Any] = {}
    lists = _list_fields(model)
    for key in request.args:
        values = request.args.getlist(key)
        raw[key] = values if len(values) > 1 or key in lists else values[0]
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise _validation_error(exc, "query") from None


def _bearer() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise ApiError(401, "Send a bearer token: Authorization: Bearer <token>.",
                       headers={"WWW-Authenticate": 'Bearer realm="api"'})
    return value.strip()


def authenticate(scope: str | None) -> ApiToken:
    """The calling token, live, holding ``scope`` and under the rate limit."""
    now = utcnow()
    token = find_token(db.session, _bearer())
    if token is None or not token.is_live(now):
        raise ApiError(401, "The token is unknown, revoked or expired.",
                       headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    g.api_token_id = token.id
    if scope is not None and scope not in token.scope_list:
        raise ApiError(403, f"This token lacks the scope {scope}.", code="insufficient_scope")
    limit = int(current_app.config["API_RATE_LIMIT_PER_MINUTE"])
    if calls_since(db.session, token.id, now - timedelta(minutes=1)) >= limit:
        raise ApiError(429, f"More than {limit} calls in the last minute; slow down.",
                       headers={"Retry-After": "60"})
    return token


def _json(result: Any, status: int) -> Response:
    if isinstance(result, Response):
        return result
    if isinstance(result, tuple):
        result, status = result
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    response = jsonify(result)
    response.status_code = status
    return response


def endpoint(rule: str, *, method: str = "GET", summary: str, tag: str,
             scope: str | None = None, auth: str = "bearer",
             body: type[BaseModel] | None = None, query: type[BaseModel] | None = None,
             response: type[BaseModel] | None = None, status: int = 200,
             errors: tuple[int, ...] = (), description: str = "",
             response_content_type: str = "application/json",
             verify: Callable[[], None] | None = None, also: tuple[int, ...] = ()) -> Callable:
    """Declare an API route.

    The view receives the path arguments, plus ``body=`` and/or ``query=`` (validated
    pydantic models) when declared, and ``token=`` when authenticated by bearer token.
    It returns a pydantic model, a dict/list, ``(value, status)`` or a ``Response``.
    ``errors`` lists the extra error statuses the route may answer (documented);
    ``also`` further success statuses answering the same ``response`` (a replayed
    request's 200 next to a creation's 201).
    ``auth="hmac"`` needs ``verify``: it authenticates the raw request (raising
    ``ApiError``) before the body is parsed, so an unsigned body is never even read as JSON.
    """
    if scope is not None and scope not in SCOPES:
        raise ValueError(f"unknown scope {scope}")
    if auth not in ("bearer", "hmac", "none"):
        raise ValueError(f"unknown auth {auth}")
    if (auth == "hmac") != (verify is not None):
        raise ValueError("auth='hmac' needs verify= (and only it takes one)")

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(**kwargs: Any) -> Response:
            if auth == "bearer":
                kwargs["token"] = authenticate(scope)
            elif verify is not None:
                verify()
            if body is not None:
                kwargs["body"] = parse_body(body)
            if query is not None:
                kwargs["query"] = parse_query(query)
            return _json(view(**kwargs), status)

        name = f"{view.__module__.rsplit('.', 1)[-1]}_{view.__name__}"
        bp.add_url_rule(rule, endpoint=name, view_func=wrapped, methods=[method])
        OPERATIONS.append(Operation(
            rule=rule, method=method.lower(), endpoint=f"api.{name}", summary=summary,
            tag=tag, scope=scope, auth=auth, body=body, query=query, response=response,
            status=status, errors=errors, description=description or (view.__doc__ or ""),
            response_content_type=response_content_type, also=also))
        return wrapped

    return decorate


# --- errors and the call log ---------------------------------------------------------

def error_response(exc: ApiError) -> Response:
    body = ErrorResponse(error=ErrorBody(
        status=exc.status, code=exc.code, message=exc.message, field=exc.field,
        details=[ErrorDetail(**d) for d in exc.details]))
    response = jsonify(body.model_dump(mode="json"))
    response.status_code = exc.status
    for key, value in exc.headers.items():
        response.headers[key] = value
    g.api_error = exc.code
    return response


def is_api_request() -> bool:
    return request.path == PREFIX or request.path.startswith(PREFIX + "/")


def http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    message = {404: "No such API route.", 405: "Method not allowed on this route.",
               413: "The body is too large."}.get(status, exc.description or "Error.")
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}  # 405: Allow
    return error_response(ApiError(status, message, headers=headers))


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    db.session.rollback()
    return error_response(exc)


@bp.errorhandler(FieldErrors)
def _field_errors(exc: FieldErrors) -> Response:
    """A service refused the input: 422 naming each field."""
    db.session.rollback()
    details = [{"field": name or None, "message": str(m)}
               for name, messages in exc.errors.items() for m in messages]
    first = details[0] if details else {"field": None, "message": "Refused."}
    return error_response(ApiError(422, str(first["message"]), field=first["field"],
                                   details=details))


def _presented_token_id() -> int | None:
    """The token presented with a call that did not authenticate (revoked, expired, or a
    route that does not exist), so the log shows who keeps calling with it."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    token = find_token(db.session, value.strip())
    return token.id if token is not None else None


def _log_call(response: Response) -> Response:
    if not is_api_request() or request.endpoint == "api.api_meta_openapi":
        return response
    started = g.get("api_started", time.perf_counter())
    try:
        if response.status_code >= 400:
            db.session.rollback()
        authenticated = g.get("api_token_id")
        token_id = authenticated if authenticated is not None else _presented_token_id()
        now = utcnow()
        db.session.add(ApiCall(
            token_id=token_id, at=now, method=request.method, path=request.path[:255],
            status=response.status_code, error=g.get("api_error"),
            duration_ms=int((time.perf_counter() - started) * 1000),
            ip=(request.remote_addr or "")[:64] or None))
        if authenticated is not None:  # last *successful* authentication
            db.session.execute(
                ApiToken.__table__.update().where(ApiToken.id == authenticated)
                .values(last_used_at=now))
        db.session.commit()
    except Exception:  # the log must never turn a served answer into a failure
        db.session.rollback()
        current_app.logger.exception("could not log the API call %s %s", request.method,
                                     request.path)
    return response


# --- the OpenAPI document --------------------------------------------------------------

def _schemas() -> tuple[dict[tuple[type[BaseModel], str], dict[str, Any]], dict[str, Any]]:
    """Every body, query and response model in one set of components (a query model's
    enums and nested models need a home too, or its parameters' $refs would dangle)."""
    models: list[tuple[type[BaseModel], str]] = [(ErrorResponse, "serialization")]
    for op in OPERATIONS:
        if op.body is not None:
            models.append((op.body, "validation"))
        if op.query is not None:
            models.append((op.query, "validation"))
        if op.response is not None:
            models.append((op.response, "serialization"))
    unique = list(dict.fromkeys(models))
    refs, top = models_json_schema(unique, ref_template="#/components/schemas/{model}")
    return refs, top.get("$defs", {})


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A query value is a string or absent, never JSON null: ``int | None = None`` means
    "may be left out", so the null branch (and the null default) go."""
    prop = dict(prop)
    if "anyOf" in prop:
        branches = [b for b in prop["anyOf"] if b != {"type": "null"}]
        if len(branches) != len(prop["anyOf"]):
            del prop["anyOf"]
            prop = {**branches[0], **prop} if len(branches) == 1 else {**prop,
                                                                      "anyOf": branches}
    if prop.get("default", 0) is None:
        del prop["default"]
    return prop


def _query_parameters(model_schema: dict[str, Any]) -> list[dict[str, Any]]:
    """One ``in: query`` parameter per property of the query model's component schema."""
    required = set(model_schema.get("required", []))
    params = []
    for name, prop in model_schema.get("properties", {}).items():
        prop = _without_null(prop)
        description = prop.pop("description", None)
        prop.pop("title", None)
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required,
                                 "schema": prop}
        if description:
            param["description"] = description
        if prop.get("type") == "array":
            param.update(style="form", explode=True)
        params.append(param)
    return params


# What Flask's converters match: an <int:...> is 0 or more (ids are 32-bit), a plain
# segment is anything without "/" (it would not route).
PATH_PARAM_SCHEMAS = {
    "integer": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
    "string": {"type": "string", "minLength": 1, "pattern": "^[^/]+$"},
}


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 for every declared operation (3.1: pydantic's JSON Schema fits as is)."""
    refs, schemas = _schemas()
    error_ref = refs[(ErrorResponse, "serialization")]
    paths: dict[str, dict[str, Any]] = {}
    for op in sorted(OPERATIONS, key=lambda o: (o.path, o.method)):
        item: dict[str, Any] = {
            "operationId": op.endpoint.removeprefix("api."),
            "summary": op.summary,
            "tags": [op.tag],
        }
        if op.description:
            item["description"] = inspect.cleandoc(op.description)
        params = [{"name": n, "in": "path", "required": True,
                   "schema": dict(PATH_PARAM_SCHEMAS[t])} for n, t in op.path_params()]
        if op.query is not None:
            name = refs[(op.query, "validation")]["$ref"].rsplit("/", 1)[-1]
            params += _query_parameters(schemas[name])
        if op.auth == "hmac":
            params += [
                {"name": "X-Signature", "in": "header", "required": True,
                 "schema": {"type": "string"},
                 "description": "sha256=<hex HMAC-SHA256 of '<timestamp>.<raw body>'>"},
                {"name": "X-Timestamp", "in": "header", "required": True,
                 "schema": {"type": "string"},
                 "description": "Unix seconds when the request was signed"},
            ]
        if params:
            item["parameters"] = params
        if op.body is not None:
            item["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": refs[(op.body, "validation")]}}}
        success: dict[str, Any] = {"description": "OK"}
        if op.response is not None:
            success["content"] = {op.response_content_type: {
                "schema": refs[(op.response, "serialization")]}}
        elif op.response_content_type != "application/json":
            success["content"] = {op.response_content_type: {"schema": {"type": "string"}}}
        responses: dict[str, Any] = {str(code): success for code in (op.status, *op.also)}
        statuses = set(op.errors)
        if op.body is not None or op.query is not None:
            statuses |= {400}
        if op.body is not None:
            statuses |= {415}
        if op.auth == "bearer":
            statuses |= {401, 429}
            if op.scope:
                statuses |= {403}
        elif op.auth == "hmac":
            statuses |= {401}
        for code in sorted(statuses):
            responses[str(code)] = {"description": ERROR_CODES.get(code, "error"),
                                    "content": {"application/json": {"schema": error_ref}}}
        item["responses"] = responses
        if op.auth == "bearer":
            item["security"] = [{"bearerAuth": [op.scope] if op.scope else []}]
        else:
            item["security"] = []
        if op.scope:
            item["x-scope"] = op.scope
        paths.setdefault(op.path, {})[op.method] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": "Compliance Academy (合规学堂) API", "version": "1.0.0",
                 "description": "Training records, HR sync, risk signals and the training "
                                "KPI. Bearer tokens are created by an admin under "
                                "Admin → API tokens; each carries scopes."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "Scopes: " + ", ".join(f"{k} ({v})" for k, v in SCOPES.items()),
            }},
        },
    }


# --- wiring ----------------------------------------------------------------------------

def init_app(app: Flask) -> None:
    """Load the endpoint modules, register the blueprint (no CSRF: bearer tokens and HMAC
    are not ambient credentials) and log every /api/v1 call."""
    for module in ENDPOINT_MODULES:
        importlib.import_module(module)
    csrf.exempt(bp)
    app.register_blueprint(bp)
    app.json.ensure_ascii = False  # type: ignore[attr-defined]  # 王莉, not \u738b\u8389

    @app.before_request
    def _start_clock() -> None:
        if is_api_request():
            g.api_started = time.perf_counter()

    app.after_request(_log_call)
