"""Application factory: wires configuration, extensions, blueprints and CLI commands."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.middleware.proxy_fix import ProxyFix

from lms.config import load_config
from lms.extensions import babel, csrf, db, login_manager, migrate
from lms.i18n import local_date, local_datetime, select_locale
from lms.people.vault import IdNumberVault
from lms.security import init_security_headers

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """SQLite enforces foreign keys only when asked, per connection; WAL lets readers
    work while one writer commits."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=15000")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    app.config.update(load_config(Path(app.instance_path)))
    if overrides:
        app.config.update(overrides)
    if app.config["TRUSTED_PROXIES"]:
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    app.permanent_session_lifetime = timedelta(seconds=app.config["PERMANENT_SESSION_LIFETIME"])

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR), render_as_batch=True,
                     compare_type=True)
    csrf.init_app(app)
    babel.init_app(app, locale_selector=select_locale)
    login_manager.init_app(app)
    init_security_headers(app)
    app.extensions["id_vault"] = IdNumberVault(app.config["ID_NUMBER_KEY"])

    _register_models()
    _register_blueprints(app)
    from lms.compliance import learner
    learner.register(app)  # due dates in "My learning" (courses may not import compliance)
    from lms.evidence.bulk import register_jobs
    register_jobs()  # background job kinds: every process that builds the app knows them
    _register_templates(app)
    _register_errors(app)
    _register_cli(app)
    return app


def _register_models() -> None:
    """Import every model module so the metadata (and Alembic) sees all tables."""
    import assessments.exam_authoring
    import assessments.exams
    import assessments.policies  # noqa: F401
    import courses.models  # noqa: F401
    import integrations.hr.models
    import integrations.outbox
    import integrations.risk.models
    import integrations.tokens
    import integrations.webhooks.models
    import integrations.xapi.models  # noqa: F401
    import lms.auth.models
    import lms.compliance.models
    import lms.compliance.regulation.models
    import lms.jobs.models
    import lms.ledger
    import lms.notify.models
    import lms.people.importer
    import lms.people.models
    import lms.scheduler_lock
    import lms.workday_overrides  # noqa: F401


def _register_blueprints(app: Flask) -> None:
    from assessments.bank_views import bp as banks_bp
    from assessments.exam_authoring_views import bp as exam_authoring_bp
    from assessments.exam_views import bp as exams_bp
    from assessments.policy_views import bp as policies_bp
    from courses.authoring_views import bp as authoring_bp
    from courses.learning_views import bp as learning_bp
    from integrations.feeds.views import bp as feeds_bp
    from lms.admin.views import bp as admin_bp
    from lms.auth.views import bp as auth_bp
    from lms.compliance.regulation.views import bp as regulation_bp
    from lms.compliance.team_views import bp as team_bp
    from lms.compliance.views import bp as compliance_bp
    from lms.home import bp as home_bp
    from lms.ledger_views import bp as ledger_bp
    from lms.notify.views import bp as notify_bp
    from lms.people.views import bp as people_bp
    from lms.reports.views import bp as reports_bp

    for bp in (auth_bp, home_bp, people_bp, admin_bp, ledger_bp, authoring_bp, learning_bp,
               policies_bp, banks_bp, exam_authoring_bp, exams_bp, notify_bp, compliance_bp,
               team_bp, regulation_bp):
        app.register_blueprint(bp)
    app.register_blueprint(feeds_bp)
    app.register_blueprint(reports_bp)
    from lms.evidence.views import bp as evidence_bp
    app.register_blueprint(evidence_bp)
    from lms.evidence.bulk_views import bp as evidence_jobs_bp
    app.register_blueprint(evidence_jobs_bp)
    from integrations import api
    api.init_app(app)
    from integrations.risk.views import bp as risk_bp
    app.register_blueprint(risk_bp)
    from integrations.token_views import bp as api_admin_bp
    app.register_blueprint(api_admin_bp)
    from integrations.webhooks.views import bp as webhooks_bp
    from integrations.xapi.views import bp as xapi_admin_bp
    app.register_blueprint(webhooks_bp)
    app.register_blueprint(xapi_admin_bp)


def _register_templates(app: Flask) -> None:
    from flask_babel import get_locale

    from lms.people.labels import STATUS_LABELS, role_label, status_label

    app.jinja_env.filters["localtime"] = local_datetime
    app.jinja_env.filters["localdate"] = local_date
    app.jinja_env.globals.update(
        status_label=status_label, role_label=role_label, STATUS_LABELS=STATUS_LABELS,
        get_locale=get_locale,
    )


def _register_errors(app: Flask) -> None:
    from integrations.api import http_error, is_api_request

    def page(code: int, template: str = "error.html", **context: Any):
        return render_template(template, code=code, **context), code

    def error(exc: Exception, code: int):
        if is_api_request():  # /api/v1 answers JSON, even for routes it does not have
            return http_error(exc if isinstance(exc, HTTPException) else InternalServerError())
        return page(code)

    @app.errorhandler(CSRFError)
    def _csrf(error: CSRFError):
        app.logger.warning("CSRF refused %s: %s", request.path, error.description)
        return page(400, reason="csrf")

    for code in (400, 403, 404, 405, 413, 429, 500):
        app.register_error_handler(code, lambda e, code=code: error(e, code))


def _register_cli(app: Flask) -> None:
    from integrations.feeds.cli import feeds_cli
    from lms.cli import ledger_cli, lms_cli, workdays_cli

    app.cli.add_command(lms_cli)
    app.cli.add_command(ledger_cli)
    app.cli.add_command(workdays_cli)
    app.cli.add_command(feeds_cli)
    from lms.evidence.cli import evidence_cli
    app.cli.add_command(evidence_cli)
    from integrations.api_cli import api_cli
    app.cli.add_command(api_cli)
