"""Login, CSRF, throttling, server-side session invalidation, headers."""

from __future__ import annotations

import os
import stat
from datetime import timedelta

from sqlalchemy import select

from lms.auth.models import LoginFailure, UserSession
from lms.config import load_config
from lms.extensions import db
from lms.people.models import User

COOKIE = "lms_session"


def test_password_is_stored_as_argon2id(people):
    user = people.user("wang", "trainee")
    assert user.password_hash.startswith("$argon2id$")
    assert "correct-horse" not in user.password_hash


def test_login_wrong_password_is_refused_and_recorded(client, people):
    people.user("wang", "trainee")
    resp = client.login("wang", "wrong-password")
    assert resp.status_code == 401
    assert db.session.scalar(select(LoginFailure.username)) == "wang"
    assert client.get("/").status_code == 302  # still anonymous


def test_post_without_csrf_token_is_refused(client, people):
    people.user("wang", "trainee")
    resp = client.c.post("/login", data={"username": "wang", "password": "correct-horse-battery"})
    assert resp.status_code == 400
    assert client.get("/").status_code == 302  # not logged in
    # and a logged-in user's logout without the token does not log them out
    client.login("wang")
    assert client.c.post("/logout").status_code == 400
    assert client.get("/").status_code == 200


def test_eleventh_failure_in_ten_minutes_is_throttled(client, people):
    people.user("wang", "trainee")
    people.user("li", "trainee")
    for _ in range(10):
        assert client.login("wang", "nope-nope-nope").status_code == 401
    blocked = client.login("wang")  # even the right password is not checked now
    assert blocked.status_code == 429
    assert client.get("/").status_code == 302
    # another account from elsewhere is unaffected
    assert client.login("li").status_code == 302


def test_throttle_lifts_after_the_window(client, people):
    people.user("wang", "trainee")
    for _ in range(10):
        client.login("wang", "nope-nope-nope")
    assert client.login("wang").status_code == 429
    for failure in db.session.scalars(select(LoginFailure)):
        failure.at -= timedelta(minutes=11)
    db.session.commit()
    assert client.login("wang").status_code == 302


def test_logout_invalidates_the_old_cookie_on_the_server(client, make_client, people):
    people.user("wang", "trainee")
    client.login("wang")
    old_cookie = client.c.get_cookie(COOKIE).value
    assert client.get("/").status_code == 200
    client.logout()
    replay = make_client()
    replay.c.set_cookie(COOKIE, old_cookie, domain="localhost")
    resp = replay.get("/")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    revoked = db.session.scalar(select(UserSession.revoked_reason))
    assert revoked == "logout"


def test_replayed_cookie_works_before_logout(client, make_client, people):
    """Control for the test above: the replay mechanism itself carries a session."""
    people.user("wang", "trainee")
    client.login("wang")
    copy = make_client()
    copy.c.set_cookie(COOKIE, client.c.get_cookie(COOKIE).value, domain="localhost")
    assert copy.get("/").status_code == 200


def test_session_cookie_changes_at_login(client, people):
    people.user("wang", "trainee")
    client.get("/login")
    before = client.c.get_cookie(COOKIE)
    client.login("wang")
    after = client.c.get_cookie(COOKIE)
    assert after is not None and (before is None or before.value != after.value)


def test_disabled_account_cannot_log_in(client, people):
    people.user("wang", "trainee", enabled=False)
    assert client.login("wang").status_code == 403
    assert client.get("/").status_code == 302


def test_open_redirect_is_ignored(client, people):
    people.user("wang", "trainee")
    token = client.csrf()
    resp = client.c.post("/login?next=//evil.example.com/x",
                         data={"username": "wang", "password": "correct-horse-battery",
                               "csrf_token": token})
    assert resp.status_code == 302
    assert "evil.example.com" not in resp.headers["Location"]


def test_security_headers_on_pages(client, people):
    people.user("wang", "trainee")
    client.login("wang")
    for url in ("/login", "/"):
        h = client.get(url).headers
        assert "frame-ancestors 'none'" in h["Content-Security-Policy"]
        assert "script-src 'self'" in h["Content-Security-Policy"]
        assert h["X-Content-Type-Options"] == "nosniff"
        assert h["Referrer-Policy"] == "same-origin"
        assert h["X-Frame-Options"] == "DENY"
    cookie = client.c.get_cookie(COOKIE)
    assert cookie.http_only and cookie.same_site == "Lax"


def test_password_change_ends_all_sessions(client, make_client, people):
    people.user("wang", "trainee")
    other = make_client()
    other.login("wang")
    client.login("wang")
    resp = client.post("/account/password", {
        "current_password": "correct-horse-battery",
        "new_password": "a-much-better-passphrase",
        "confirm": "a-much-better-passphrase",
    }, token_from="/account/password")
    assert resp.status_code == 302
    assert other.get("/").status_code == 302
    assert client.login("wang", "a-much-better-passphrase").status_code == 302


def test_language_switch_to_english_and_back(client, people):
    people.user("wang", "trainee")
    client.login("wang")
    assert "退出" in client.get("/").get_data(as_text=True)
    client.post("/lang/en", {"next": "/"}, token_from="/")
    assert "Log out" in client.get("/").get_data(as_text=True)
    assert db.session.scalar(select(User.locale)) == "en"
    client.post("/lang/zh_CN", {"next": "/"}, token_from="/")
    assert "退出" in client.get("/").get_data(as_text=True)


def test_secrets_are_generated_once_under_instance(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("ID_NUMBER_KEY", raising=False)
    monkeypatch.delenv("LMS_DEBUG", raising=False)
    first = load_config(tmp_path)
    second = load_config(tmp_path)
    assert first["SECRET_KEY"] == second["SECRET_KEY"] and len(first["SECRET_KEY"]) >= 40
    assert first["DEBUG"] is False
    mode = stat.S_IMODE(os.stat(tmp_path / "secret_key").st_mode)
    assert mode == 0o600
    monkeypatch.setenv("SECRET_KEY", "from-the-environment")
    assert load_config(tmp_path)["SECRET_KEY"] == "from-the-environment"
