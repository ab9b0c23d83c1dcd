"""The /api/v1 contract: ``openapi.json`` is a valid OpenAPI 3.1 document, it lists
exactly the routes Flask serves (a route added without ``@endpoint`` fails here), and
every operation answers what the document says (schemathesis, run in-process against
the WSGI app with a token holding every scope).

The operations are read from the registry when the tests are collected, so an endpoint
another module adds is covered without touching this file.
"""

from __future__ import annotations

import importlib
import json
import re
import time
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from openapi_spec_validator import validate

from integrations import api
from integrations.signing import sign
from integrations.tokens import SCOPES, issue_token
from lms.extensions import db

for _module in api.ENDPOINT_MODULES:  # what create_app loads: the registry is complete
    importlib.import_module(_module)
DOCUMENTED = sorted({(op.method.upper(), op.path) for op in api.OPERATIONS})

# HMAC-signed operations: the config key holding each one's shared secret. The contract
# test signs its generated bodies with it; an HMAC operation missing here fails, naming
# itself, rather than being silently left out.
HMAC_SECRETS = {("POST", "/api/v1/hr/webhook"): "HR_WEBHOOK_SECRET"}
TEST_HMAC_SECRET = "contract-test-secret-0123456789abcdef"

# A business rule refusing schema-valid data (an unknown department, ...) answers 422;
# a 400 for schema-valid data means the document is looser than the code.
ACCEPTED_FOR_VALID_DATA = ["2xx", 401, 403, 404, 409, 422, 429]
EXAMPLES = 15


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


@pytest.fixture
def document(app) -> dict[str, Any]:
    resp = app.test_client().get("/api/v1/openapi.json")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    return resp.get_json()


def test_document_is_valid_openapi_31(document):
    assert document["openapi"].startswith("3.1.")
    validate(document)  # raises, naming the offending part, when it is not
    ids = [item["operationId"] for path in document["paths"].values()
           for item in path.values()]
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    dangling = {ref for ref in re.findall(r'"\$ref": "([^"]+)"', json.dumps(document))
                if ref.removeprefix("#/components/schemas/") not in
                document["components"]["schemas"]}
    assert not dangling


def test_every_operation_documents_its_auth_errors_and_path_parameters(document):
    for path, item in document["paths"].items():
        for method, op in item.items():
            where = f"{method.upper()} {path}"
            codes = set(op["responses"])
            if op["security"]:
                assert {"401", "429"} <= codes, where
                if op.get("x-scope"):
                    assert op["x-scope"] in SCOPES and "403" in codes, where
            documented = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert documented == set(re.findall(r"\{([^}]+)\}", path)), where


def test_routes_and_document_agree(app, document):
    routed = {(method, _openapi_path(rule.rule))
              for rule in app.url_map.iter_rules() if rule.rule.startswith(api.PREFIX)
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(method.upper(), path) for path, item in document["paths"].items()
                  for method in item}
    assert routed - documented == set(), "routes missing from openapi.json (use @endpoint)"
    assert documented - routed == set(), "documented operations that no route serves"
    assert documented == set(DOCUMENTED)


def _bearer_config(secret: str) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "auth": {"openapi": {"bearerAuth": {"bearer": secret}}},
        "generation": {"mode": "positive", "deterministic": True},
        "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED_FOR_VALID_DATA}},
    })


def _signed_call(app, case, secret: str):
    """Send ``case`` signed as the HMAC scheme wants (over the exact bytes sent)."""
    body = json.dumps(case.body, ensure_ascii=False).encode("utf-8")
    stamp = int(time.time())
    headers = {"Content-Type": "application/json", "X-Timestamp": str(stamp),
               "X-Signature": sign(secret.encode("utf-8"), stamp, body)}
    return app.test_client().open(case.formatted_path, method=case.method,
                                  query_string=case.query or None, data=body, headers=headers)


@pytest.mark.parametrize(("method", "path"), DOCUMENTED, ids=[f"{m} {p}" for m, p in DOCUMENTED])
def test_operation_answers_as_documented(app, method, path):
    """Positive examples (schema-valid requests) for one operation: no 5xx, only
    documented statuses, documented content types and bodies matching their schemas."""
    secret = issue_token(db.session, name="contract", scopes=list(SCOPES),
                         actor_id=None).secret
    db.session.commit()
    op = next(o for o in api.OPERATIONS if (o.method.upper(), o.path) == (method, path))
    hmac_key = HMAC_SECRETS.get((method, path))
    if op.auth == "hmac":
        assert hmac_key, f"{method} {path} is HMAC-signed: add its secret's config key to " \
                         "HMAC_SECRETS so the contract test can sign its calls"
        app.config[hmac_key] = TEST_HMAC_SECRET

    with app.app_context():
        schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app,
                                                config=_bearer_config(secret))
    operation = schema[path][method]
    sent = []

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], print_blob=False,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                     HealthCheck.data_too_large])
    def conforms(case) -> None:
        with app.app_context():  # a fresh context (g, db session) per call, as in production
            if op.auth == "hmac":
                response = _signed_call(app, case, TEST_HMAC_SECRET)
                case.validate_response(response)
            else:
                response = case.call_and_validate()
        sent.append(response.status_code)

    conforms()
    assert sent, f"{method} {path}: no example was sent"
    if op.auth != "none":
        assert 401 not in sent, f"{method} {path}: the test's credentials were refused"
