"""The /api/v1 core as an integrator and an admin meet it: bearer tokens and scopes, JSON
errors, the call log, the rate limit, the API's language, and the admin pages and
commands that issue and revoke tokens (the secret is shown once and never stored)."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta

import pytest
from flask import request
from flask_babel import force_locale, get_locale
from flask_babel import gettext as babel_gettext
from markupsafe import escape
from sqlalchemy import func, select
from support import Clock

import integrations.api as api
from integrations.api import OPERATIONS, ApiError, authenticate
from integrations.housekeeping import prune_integration_logs
from integrations.tokens import SCOPES, ApiCall, ApiToken, issue_token, revoke_token
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.ledger import LedgerEntry

ALL_SCOPES = sorted(SCOPES)
ROW_RE = re.compile(r'<tr data-status="(\d+)" data-token="(\d*)">')


def make_token(*scopes: str, name: str = "hr-system", expires_in_days: int | None = None,
               now=None) -> tuple[ApiToken, str]:
    issued = issue_token(db.session, name=name, scopes=list(scopes) or ["hr:read"],
                         actor_id=None, expires_in_days=expires_in_days, now=now)
    db.session.commit()
    return issued.token, issued.secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def calls() -> list[ApiCall]:
    db.session.expire_all()
    return list(db.session.scalars(select(ApiCall).order_by(ApiCall.id)))


def ledger(kind: str) -> list[LedgerEntry]:
    return list(db.session.scalars(select(LedgerEntry).where(LedgerEntry.kind == kind)
                                   .order_by(LedgerEntry.seq)))


def error_of(resp) -> dict:
    assert resp.mimetype == "application/json", resp.get_data(as_text=True)[:200]
    body = resp.get_json()
    assert set(body) == {"error"}
    assert body["error"]["status"] == resp.status_code
    return body["error"]


@pytest.fixture
def admin(people, client):
    user = people.user("root", "admin")
    assert client.login("root").status_code == 302
    return user


# --- authentication ------------------------------------------------------------------

def test_live_token_reads_itself_and_its_use_is_recorded(app):
    token, secret = make_token("hr:read", "risk:write", name="erp")
    assert token.last_used_at is None
    c = app.test_client()
    resp = c.get("/api/v1/token", headers=bearer(secret))
    assert resp.status_code == 200
    assert resp.get_json() == {"id": token.id, "name": "erp", "prefix": secret[:8],
                               "scopes": ["hr:read", "risk:write"],
                               "created_at": resp.get_json()["created_at"], "expires_at": None}
    db.session.expire_all()
    assert db.session.get(ApiToken, token.id).last_used_at is not None
    [call] = calls()
    assert (call.token_id, call.method, call.path, call.status, call.error) == (
        token.id, "GET", "/api/v1/token", 200, None)


def test_missing_token_is_401_with_www_authenticate(app):
    resp = app.test_client().get("/api/v1/token")
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    err = error_of(resp)
    assert err["code"] == "unauthorized"
    assert "Authorization: Bearer" in err["message"]


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "ca_abc",
                                    "Token ca_abcdef"])
def test_malformed_authorization_header_is_401(app, header):
    resp = app.test_client().get("/api/v1/token", headers={"Authorization": header})
    assert resp.status_code == 401
    assert "WWW-Authenticate" in resp.headers
    assert error_of(resp)["code"] == "unauthorized"


def test_unknown_revoked_and_expired_tokens_are_401_and_do_not_count_as_use(app):
    revoked, revoked_secret = make_token(name="old-erp")
    assert revoke_token(db.session, revoked.id, actor_id=None)
    db.session.commit()
    expired, expired_secret = make_token(name="trial", expires_in_days=1,
                                         now=utcnow() - timedelta(days=2))
    c = app.test_client()
    for secret in ("ca_" + "x" * 43, "not-even-ours", revoked_secret, expired_secret):
        resp = c.get("/api/v1/token", headers=bearer(secret))
        assert resp.status_code == 401, secret
        assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
        err = error_of(resp)
        assert err["code"] == "unauthorized"
        assert "unknown, revoked or expired" in err["message"]
    # the log names the revoked and the expired token, so an admin sees who still calls
    assert [(c.token_id, c.status) for c in calls()] == [
        (None, 401), (None, 401), (revoked.id, 401), (expired.id, 401)]
    db.session.expire_all()
    assert db.session.get(ApiToken, revoked.id).last_used_at is None
    assert db.session.get(ApiToken, expired.id).last_used_at is None


def test_token_lacking_the_scope_is_403_on_every_scoped_operation(app):
    _token, secret = make_token("hr:read")
    with app.test_request_context("/api/v1/token", headers=bearer(secret)):
        assert authenticate(None).name == "hr-system"
        assert authenticate("hr:read").name == "hr-system"
        with pytest.raises(ApiError) as refused:
            authenticate("risk:write")
    assert refused.value.status == 403
    assert refused.value.code == "insufficient_scope"
    assert "risk:write" in refused.value.message

    # every registered operation that needs a scope refuses a token holding all the others
    c = app.test_client()
    for op in [o for o in OPERATIONS if o.auth == "bearer" and o.scope]:
        _t, others = make_token(*[s for s in ALL_SCOPES if s != op.scope], name="others")
        path = re.sub(r"\{[^}]+\}", "1", op.path)
        resp = c.open(path, method=op.method.upper(), headers=bearer(others),
                      json={} if op.body is not None else None)
        assert resp.status_code == 403, (op.method, op.path, resp.get_data(as_text=True))
        err = error_of(resp)
        assert err["code"] == "insufficient_scope" and op.scope in err["message"]


def test_rate_limit_answers_429_with_retry_after_per_token(app, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(api, "utcnow", clock)
    app.config["API_RATE_LIMIT_PER_MINUTE"] = 3
    busy, busy_secret = make_token(name="busy")
    _calm, calm_secret = make_token(name="calm")
    c = app.test_client()
    for _ in range(3):
        assert c.get("/api/v1/token", headers=bearer(busy_secret)).status_code == 200
        clock.advance(1)
    resp = c.get("/api/v1/token", headers=bearer(busy_secret))
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "60"
    err = error_of(resp)
    assert err["code"] == "rate_limited" and "3 calls" in err["message"]
    assert c.get("/api/v1/token", headers=bearer(calm_secret)).status_code == 200

    clock.advance(61)  # the window has moved past the first calls
    assert c.get("/api/v1/token", headers=bearer(busy_secret)).status_code == 200
    statuses = [(c.token_id, c.status, c.error) for c in calls() if c.token_id == busy.id]
    assert statuses == [(busy.id, 200, None)] * 3 + [(busy.id, 429, "rate_limited"),
                                                     (busy.id, 200, None)]


# --- JSON errors and the call log ----------------------------------------------------

def test_unknown_route_and_wrong_method_answer_json_and_are_logged(app):
    token, secret = make_token()
    c = app.test_client()
    missing = c.get("/api/v1/no-such-thing", headers=bearer(secret))
    assert missing.status_code == 404
    assert error_of(missing) == {"status": 404, "code": "not_found",
                                 "message": "No such API route.", "field": None, "details": []}
    assert c.get("/api/v1").status_code == 404
    assert error_of(c.get("/api/v1"))["code"] == "not_found"

    wrong = c.post("/api/v1/token", headers=bearer(secret), json={})
    assert wrong.status_code == 405
    assert error_of(wrong)["code"] == "method_not_allowed"
    assert "GET" in wrong.headers["Allow"]
    # a POST to a missing route is a JSON 404 too, not the HTML CSRF refusal
    post_missing = c.post("/api/v1/nothing", data="x")
    assert post_missing.status_code == 404 and error_of(post_missing)["code"] == "not_found"

    logged = [(x.token_id, x.method, x.path, x.status, x.error) for x in calls()]
    assert logged == [
        (token.id, "GET", "/api/v1/no-such-thing", 404, "not_found"),
        (None, "GET", "/api/v1", 404, "not_found"),
        (None, "GET", "/api/v1", 404, "not_found"),
        (token.id, "POST", "/api/v1/token", 405, "method_not_allowed"),
        (None, "POST", "/api/v1/nothing", 404, "not_found"),
    ]
    assert all(x.at is not None and x.duration_ms >= 0 and x.ip == "127.0.0.1"
               for x in calls())
    db.session.expire_all()
    assert db.session.get(ApiToken, token.id).last_used_at is None  # never authenticated


def test_every_refused_call_is_logged_with_its_error_code(app):
    c = app.test_client()
    c.get("/api/v1/token")
    c.get("/api/v1/token", headers={"Authorization": "Basic x"})
    assert [(x.status, x.error, x.token_id) for x in calls()] == [
        (401, "unauthorized", None), (401, "unauthorized", None)]


def test_api_speaks_english_whatever_the_ui_language_unless_asked(app, people, client):
    spoken: list[str] = []

    @app.after_request
    def _record(response):  # the language each API answer was made in
        if request.path.startswith("/api/"):
            spoken.append(get_locale().language)
        return response

    people.user("lin", "trainee")
    client.login("lin")
    assert client.post("/lang/zh_CN", token_from="/").status_code == 302
    assert "我的学习" in client.get("/").get_data(as_text=True)  # the UI is Chinese

    with force_locale("en"):
        english = str(SCOPES["risk:write"])
    with force_locale("zh_CN"):
        chinese = str(SCOPES["risk:write"])

    doc = client.get("/api/v1/openapi.json")
    assert english in doc.get_json()["components"]["securitySchemes"]["bearerAuth"][
        "description"]
    refused = client.get("/api/v1/token")
    assert error_of(refused)["message"].startswith("Send a bearer token")
    asked = client.get("/api/v1/openapi.json", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert chinese in asked.get_json()["components"]["securitySchemes"]["bearerAuth"][
        "description"]
    assert spoken == ["en", "en", "zh"]


def test_tokens_are_stored_as_sha256_only(app):
    _token, secret = make_token("hr:write", name="hr")
    assert secret.startswith("ca_") and len(secret) > 40
    row = db.session.execute(select(ApiToken.__table__)).mappings().one()
    assert row["token_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert not any(secret in str(v) or secret[3:] in str(v) for v in row.values())
    assert row["prefix"] == secret[:8]
    [issued] = ledger("api.token_issued")
    assert secret[3:] not in issued.payload
    assert json.loads(issued.payload)["scopes"] == ["hr:write"]


# --- admin pages ---------------------------------------------------------------------

def test_admin_creates_token_and_sees_the_secret_once(client, admin, app):
    form = client.get("/admin/api/tokens/new").get_data(as_text=True)
    for name, description in SCOPES.items():
        with force_locale("zh_CN"):
            assert name in form and str(description) in form

    resp = client.post("/admin/api/tokens/new",
                       {"name": " 人事系统 ", "scopes": ["hr:write", "hr:read"],
                        "expires_in_days": "90"}, token_from="/admin/api/tokens/new")
    assert resp.status_code == 201
    page = resp.get_data(as_text=True)
    secret = re.search(r'id="secret"[^>]*value="(ca_[^"]+)"', page).group(1)
    assert resp.headers["Cache-Control"] == "no-store"

    token = db.session.scalars(select(ApiToken)).one()
    assert token.name == "人事系统" and token.scope_list == ["hr:read", "hr:write"]
    assert token.created_by == admin.id
    assert timedelta(days=89) < token.expires_at - token.created_at <= timedelta(days=90)
    [entry] = ledger("api.token_issued")
    assert entry.actor_id == admin.id and entry.subject == f"api_token:{token.id}"

    # the secret works, and no later page shows it again
    assert app.test_client().get("/api/v1/token", headers=bearer(secret)).status_code == 200
    for url in ("/admin/api/tokens", f"/admin/api/tokens/{token.id}/revoke",
                "/admin/api/calls", "/admin/api/tokens/new"):
        later = client.get(url).get_data(as_text=True)
        assert secret not in later and secret[8:20] not in later, url
    listing = client.get("/admin/api/tokens").get_data(as_text=True)
    assert "人事系统" in listing and f"{secret[:8]}…" in listing
    assert 'data-scope="hr:write"' in listing and 'data-state="live"' in listing
    assert "root" in listing  # created by


@pytest.mark.parametrize(("data", "msgid", "params"), [
    ({"name": "", "scopes": ["hr:read"]}, "A name of 1 to 64 characters is required.", {}),
    ({"name": "x" * 65, "scopes": ["hr:read"]}, "A name of 1 to 64 characters is required.",
     {}),
    ({"name": "erp"}, "Choose at least one scope.", {}),
    ({"name": "erp", "scopes": ["hr:read", "root:all"]}, "Unknown scope(s): %(scopes)s.",
     {"scopes": "root:all"}),
    ({"name": "erp", "scopes": ["hr:read"], "expires_in_days": "0"},
     "Expiry must be between 1 and 3650 days.", {}),
])
def test_bad_token_form_names_the_field_and_creates_nothing(client, admin, data, msgid,
                                                            params):
    with force_locale("zh_CN"):  # the admin's UI language
        expected = str(escape(babel_gettext(msgid, **params)))
    resp = client.post("/admin/api/tokens/new", data, token_from="/admin/api/tokens/new")
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert "has-error" in html
    assert f'<p class="error">{expected}</p>' in html
    assert db.session.scalar(select(func.count()).select_from(ApiToken)) == 0
    assert 'id="secret"' not in html


def test_token_forms_refuse_a_post_without_csrf_token(client, admin):
    token, _secret = make_token()
    resp = client.c.post("/admin/api/tokens/new", data={"name": "erp", "scopes": ["hr:read"]})
    assert resp.status_code == 400
    assert db.session.scalar(select(func.count()).select_from(ApiToken)) == 1
    resp = client.c.post(f"/admin/api/tokens/{token.id}/revoke", data={})
    assert resp.status_code == 400
    db.session.expire_all()
    assert db.session.get(ApiToken, token.id).revoked_at is None


def test_admin_revokes_after_confirming_and_the_token_stops_working(client, admin, app):
    token, secret = make_token(name="old-erp")
    api_client = app.test_client()
    assert api_client.get("/api/v1/token", headers=bearer(secret)).status_code == 200

    confirm = client.get(f"/admin/api/tokens/{token.id}/revoke")
    assert confirm.status_code == 200
    assert 'id="confirm-revoke"' in confirm.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(ApiToken, token.id).revoked_at is None  # GET only asks

    resp = client.post(f"/admin/api/tokens/{token.id}/revoke",
                       token_from=f"/admin/api/tokens/{token.id}/revoke")
    assert resp.status_code == 302
    db.session.expire_all()
    revoked = db.session.get(ApiToken, token.id)
    assert revoked.revoked_at is not None and revoked.revoked_by == admin.id
    [entry] = ledger("api.token_revoked")
    assert entry.actor_id == admin.id and entry.subject == f"api_token:{token.id}"
    assert api_client.get("/api/v1/token", headers=bearer(secret)).status_code == 401

    listing = client.get("/admin/api/tokens").get_data(as_text=True)
    assert 'data-state="revoked"' in listing and f'id="revoke-{token.id}"' not in listing
    again = client.post(f"/admin/api/tokens/{token.id}/revoke", token_from="/admin/api/tokens",
                        follow_redirects=True)
    assert again.status_code == 200
    assert len(ledger("api.token_revoked")) == 1
    assert client.get("/admin/api/tokens/999/revoke").status_code == 404


def test_only_admins_manage_tokens_and_auditors_read_the_log(people, make_client):
    token, _secret = make_token()
    people.user("hr1", "hr")
    people.user("aud", "auditor")
    people.user("boss", "admin")
    hr, auditor, boss = make_client(), make_client(), make_client()
    hr.login("hr1")
    auditor.login("aud")
    boss.login("boss")
    for who in (hr, auditor):
        assert who.get("/admin/api/tokens").status_code == 403
        assert who.get("/admin/api/tokens/new").status_code == 403
        assert who.post(f"/admin/api/tokens/{token.id}/revoke",
                        token_from="/").status_code == 403
    assert hr.get("/admin/api/calls").status_code == 403
    assert auditor.get("/admin/api/calls").status_code == 200
    db.session.expire_all()
    assert db.session.get(ApiToken, token.id).revoked_at is None

    assert 'id="nav-api" href="/admin/api/calls"' not in hr.get("/").get_data(as_text=True)
    assert "/admin/api/calls" in auditor.get("/").get_data(as_text=True)
    assert "/admin/api/tokens" in boss.get("/").get_data(as_text=True)
    auditor_log = auditor.get("/admin/api/calls").get_data(as_text=True)
    assert "/admin/api/tokens/new" not in auditor_log


def test_call_log_filters_and_pages_newest_first(client, admin, app):
    erp, erp_secret = make_token(name="erp")
    risk, risk_secret = make_token(name="risk")
    now = utcnow()
    db.session.add_all([
        ApiCall(token_id=erp.id, at=now - timedelta(minutes=60 - i), method="GET",
                path=f"/api/v1/employees/{i}", status=200, duration_ms=3)
        for i in range(55)])
    db.session.commit()
    c = app.test_client()
    c.get("/api/v1/token", headers=bearer(risk_secret))
    c.get("/api/v1/token", headers=bearer(erp_secret + "x"))  # 401, unknown token
    c.get("/api/v1/missing", headers=bearer(risk_secret))  # 404

    first = client.get("/admin/api/calls").get_data(as_text=True)
    rows = ROW_RE.findall(first)
    assert len(rows) == 50
    assert rows[:3] == [("404", str(risk.id)), ("401", ""), ("200", str(risk.id))]
    assert "58" in first and "/api/v1/employees/54" in first
    second = client.get("/admin/api/calls?page=2").get_data(as_text=True)
    assert len(ROW_RE.findall(second)) == 8
    assert "/api/v1/employees/0<" in second  # the oldest call is last

    only_risk = ROW_RE.findall(client.get(f"/admin/api/calls?token={risk.id}")
                               .get_data(as_text=True))
    assert only_risk == [("404", str(risk.id)), ("200", str(risk.id))]
    refused = ROW_RE.findall(client.get("/admin/api/calls?status=4xx").get_data(as_text=True))
    assert [s for s, _t in refused] == ["404", "401"]
    anonymous = ROW_RE.findall(client.get("/admin/api/calls?token=none")
                               .get_data(as_text=True))
    assert anonymous == [("401", "")]
    by_path = client.get("/admin/api/calls?path=EMPLOYEES/5&status=2xx").get_data(as_text=True)
    assert len(ROW_RE.findall(by_path)) == 6  # employees/5 and 50..54
    paged = client.get(f"/admin/api/calls?token={erp.id}").get_data(as_text=True)
    assert f"page=2&amp;token={erp.id}" in paged or f"token={erp.id}&amp;page=2" in paged
    nothing = client.get("/admin/api/calls?path=zzz").get_data(as_text=True)
    assert 'id="no-calls"' in nothing


def test_tick_prunes_api_calls_older_than_the_configured_days(app):
    token, _secret = make_token()
    now = utcnow()
    db.session.add_all([
        ApiCall(token_id=token.id, at=now - timedelta(days=days), method="GET",
                path="/api/v1/token", status=200, duration_ms=1)
        for days in (400, 181, 179, 1)])
    db.session.commit()
    app.config["API_CALL_LOG_DAYS"] = 180
    result = app.test_cli_runner().invoke(args=["lms", "tick"])
    assert "2 old API calls pruned" in result.output, result.output
    assert sorted((now - c.at).days for c in calls()) == [1, 179]
    assert prune_integration_logs(db.session, now, api_call_log_days=30).api_calls_pruned == 1
    db.session.commit()
    assert prune_integration_logs(db.session, now, api_call_log_days=30).api_calls_pruned == 0


# --- the command line ------------------------------------------------------------------

def test_cli_creates_lists_and_revokes_tokens(app):
    runner = app.test_cli_runner()
    created = runner.invoke(args=["api", "token", "create", "--name", "hr-sync",
                                  "--scope", "hr:write", "--scope", "hr:read",
                                  "--expires-days", "30"])
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert re.fullmatch(r"ca_[A-Za-z0-9_-]{40,}", secret)  # stdout is the secret alone
    assert "shown this once" in created.stderr
    assert app.test_client().get("/api/v1/token", headers=bearer(secret)).get_json()[
        "scopes"] == ["hr:read", "hr:write"]
    token = db.session.scalars(select(ApiToken)).one()
    [entry] = ledger("api.token_issued")
    assert entry.actor_id is None and entry.subject == f"api_token:{token.id}"

    listed = runner.invoke(args=["api", "token", "list"])
    assert listed.exit_code == 0
    assert "hr-sync" in listed.output and secret[:8] in listed.output
    assert secret not in listed.output and "active" in listed.output

    revoked = runner.invoke(args=["api", "token", "revoke", str(token.id)])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert len(ledger("api.token_revoked")) == 1
    assert app.test_client().get("/api/v1/token", headers=bearer(secret)).status_code == 401
    assert "revoked" in runner.invoke(args=["api", "token", "list"]).output

    again = runner.invoke(args=["api", "token", "revoke", str(token.id)])
    assert again.exit_code != 0 and "already revoked" in again.output
    missing = runner.invoke(args=["api", "token", "revoke", "999"])
    assert missing.exit_code != 0 and "no API token with id 999" in missing.output
    assert len(ledger("api.token_revoked")) == 1


def test_cli_refuses_bad_input_naming_the_option(app):
    runner = app.test_cli_runner()
    unknown = runner.invoke(args=["api", "token", "create", "--name", "x", "--scope", "root"])
    assert unknown.exit_code == 2 and "--scope" in unknown.output
    no_scope = runner.invoke(args=["api", "token", "create", "--name", "x"])
    assert no_scope.exit_code == 2 and "--scope" in no_scope.output
    zero = runner.invoke(args=["api", "token", "create", "--name", "x", "--scope", "hr:read",
                               "--expires-days", "0"])
    assert zero.exit_code == 1
    with force_locale(app.config["BABEL_DEFAULT_LOCALE"]):  # the CLI speaks the default
        expected = babel_gettext("Expiry must be between 1 and 3650 days.")
    assert expected != "Expiry must be between 1 and 3650 days."  # translated: zh-CN
    assert f"--expires-days: {expected}" in zero.output
    blank = runner.invoke(args=["api", "token", "create", "--name", " ", "--scope", "hr:read"])
    assert blank.exit_code == 1 and "--name:" in blank.output
    assert db.session.scalar(select(func.count()).select_from(ApiToken)) == 0
    assert runner.invoke(args=["api", "token", "list"]).output.strip() == "no API tokens"
