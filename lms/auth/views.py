"""Login, logout, language choice and password change."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import func, select

from lms.auth.forms import LoginForm, PasswordChangeForm
from lms.auth.passwords import (
    hash_password,
    password_problem,
    password_problem_message,
    verify_password,
)
from lms.auth.sessions import (
    load_session_user,
    revoke_session,
    revoke_user_sessions,
    start_session,
)
from lms.auth.throttle import ThrottlePolicy, record_failure, retry_after
from lms.dbtypes import utcnow
from lms.extensions import db, login_manager
from lms.people.models import User

bp = Blueprint("auth", __name__)

login_manager.login_view = "auth.login"
login_manager.login_message = None
login_manager.session_protection = None  # the server-side session row does this job


@login_manager.user_loader
def _load_user(token: str) -> User | None:
    user = load_session_user(db.session, token)
    if user is not None and db.session.dirty:
        db.session.commit()  # last_seen_at touch, at most once a minute per session
    return user


def _policy() -> ThrottlePolicy:
    cfg = current_app.config
    return ThrottlePolicy(cfg["LOGIN_MAX_FAILURES"], cfg["LOGIN_MAX_FAILURES_PER_IP"],
                          timedelta(minutes=cfg["LOGIN_WINDOW_MINUTES"]))


def _safe_next(target: str | None) -> str | None:
    """Only same-site relative paths; never an open redirect."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


def _client_ip() -> str:
    return request.remote_addr or "unknown"


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("home.index"))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        username = form.username.data.strip().lower()
        ip = _client_ip()
        wait = retry_after(db.session, _policy(), username=username, ip=ip)
        if wait is not None:
            minutes = max(1, int(wait.total_seconds() // 60) + 1)
            flash(_("Too many failed logins. Try again in %(minutes)d minutes.",
                    minutes=minutes), "error")
            return render_template("auth/login.html", form=form), 429
        user = db.session.execute(
            select(User).where(func.lower(User.username) == username)
        ).scalar_one_or_none()
        if user is None or not verify_password(user.password_hash, form.password.data):
            record_failure(db.session, username=username, ip=ip)
            db.session.commit()
            flash(_("Wrong username or password."), "error")
            status = 401
        elif not user.is_enabled:
            flash(_("This account is disabled. Ask an administrator."), "error")
            status = 403
        else:
            session.clear()  # no session fixation: a fresh cookie for the new login
            session.permanent = True
            start_session(db.session, user, ip=ip, user_agent=request.user_agent.string,
                          lifetime=current_app.permanent_session_lifetime)
            login_user(user)
            db.session.commit()
            return redirect(_safe_next(request.args.get("next")) or url_for("home.index"))
    return render_template("auth/login.html", form=form), status


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    revoke_session(db.session, current_user.get_id(), reason="logout")
    db.session.commit()
    logout_user()
    session.clear()
    flash(_("You have logged out."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/lang/<code>", methods=["POST"])
def set_language(code: str):
    if code not in current_app.config["LANGUAGES"]:
        abort(404)
    session["lang"] = code
    if current_user.is_authenticated:
        current_user.locale = code
        db.session.commit()
    return redirect(_safe_next(request.form.get("next")) or url_for("home.index"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    form = PasswordChangeForm()
    if form.validate_on_submit():
        user: User = current_user
        problem = password_problem(form.new_password.data, username=user.username)
        if not verify_password(user.password_hash, form.current_password.data):
            form.current_password.errors.append(_("The current password is wrong."))
        elif problem:
            form.new_password.errors.append(password_problem_message(problem))
        else:
            user.password_hash = hash_password(form.new_password.data)
            user.password_changed_at = utcnow()
            revoke_user_sessions(db.session, user.id, reason="password_changed")
            db.session.commit()
            logout_user()
            session.clear()
            flash(_("Password changed. Please log in again."), "info")
            return redirect(url_for("auth.login"))
    return render_template("auth/password.html", form=form)

