"""Configuration from the environment, with safe defaults for the embedded (SQLite) setup.

Secrets never live in the code: ``SECRET_KEY`` and ``ID_NUMBER_KEY`` come from the
environment, or, for the embedded default, are generated once and kept under
``instance/`` with owner-only permissions.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet


def _flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _instance_secret(instance_path: Path, filename: str, make: callable) -> str:
    """Read a secret kept under instance/, creating it (mode 0600) on first use."""
    path = instance_path / filename
    if path.exists():
        return path.read_text(encoding="ascii").strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(value)
    return value


def normalize_database_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgres://`` / ``postgresql://`` URLs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def load_config(instance_path: Path) -> dict:
    """Build the Flask config mapping from the environment."""
    database_url = normalize_database_url(
        os.environ.get("DATABASE_URL")
        or f"sqlite:///{instance_path / 'compliance_academy.sqlite3'}"
    )
    secret_key = os.environ.get("SECRET_KEY") or _instance_secret(
        instance_path, "secret_key", lambda: secrets.token_urlsafe(48)
    )
    id_key = os.environ.get("ID_NUMBER_KEY") or _instance_secret(
        instance_path, "id_number.key", lambda: Fernet.generate_key().decode("ascii")
    )
    return {
        "SECRET_KEY": secret_key,
        "ID_NUMBER_KEY": id_key,
        "SQLALCHEMY_DATABASE_URI": database_url,
        # Pre-ping costs a round trip per request (heartbeats!); recycling old connections
        # covers most server-side timeouts. Turn it on behind flaky proxies/poolers.
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": _flag("DB_POOL_PRE_PING"),
                                      "pool_recycle": 1800},
        "DEBUG": _flag("LMS_DEBUG"),
        "MAX_CONTENT_LENGTH": int(os.environ.get("MAX_UPLOAD_MB", "20")) * 1024 * 1024,
        # The login's lifetime is fixed server-side (user_sessions.expires_at), so the
        # cookie need not be re-signed and re-sent on every response.
        "SESSION_REFRESH_EACH_REQUEST": False,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": _flag("SESSION_COOKIE_SECURE"),
        "SESSION_COOKIE_NAME": "lms_session",
        "PERMANENT_SESSION_LIFETIME": int(os.environ.get("SESSION_HOURS", "12")) * 3600,
        "REMEMBER_COOKIE_DURATION": 0,
        "WTF_CSRF_TIME_LIMIT": None,  # the token is bound to the server-side session instead
        "LOGIN_MAX_FAILURES": int(os.environ.get("LOGIN_MAX_FAILURES", "10")),
        "LOGIN_MAX_FAILURES_PER_IP": int(os.environ.get("LOGIN_MAX_FAILURES_PER_IP", "50")),
        "LOGIN_WINDOW_MINUTES": int(os.environ.get("LOGIN_WINDOW_MINUTES", "10")),
        "BABEL_DEFAULT_LOCALE": "zh_CN",
        "BABEL_DEFAULT_TIMEZONE": "Asia/Shanghai",
        "LANGUAGES": {"zh_CN": "中文", "en": "English"},
        "IMPORT_MAX_ROWS": int(os.environ.get("IMPORT_MAX_ROWS", "20000")),
        "MEDIA_ROOT": os.environ.get("MEDIA_ROOT") or str(instance_path / "media"),
        "MAX_VIDEO_MB": int(os.environ.get("MAX_VIDEO_MB", "500")),
        # Number of reverse proxies in front of the app whose X-Forwarded-For/-Proto to trust.
        "TRUSTED_PROXIES": int(os.environ.get("TRUSTED_PROXIES", "0")),
        # Outgoing e-mail (lms.notify). An empty SMTP_HOST disables e-mail: deliveries wait
        # as pending and the in-app inbox still works.
        "SMTP_HOST": os.environ.get("SMTP_HOST", "").strip(),
        "SMTP_PORT": int(os.environ.get("SMTP_PORT", "25")),
        "SMTP_USER": os.environ.get("SMTP_USER", ""),
        "SMTP_PASSWORD": os.environ.get("SMTP_PASSWORD", ""),
        "SMTP_STARTTLS": _flag("SMTP_STARTTLS"),
        "SMTP_SSL": _flag("SMTP_SSL"),
        "SMTP_TIMEOUT": float(os.environ.get("SMTP_TIMEOUT", "10")),
        "MAIL_FROM": os.environ.get("MAIL_FROM") or "合规学堂 <no-reply@example.com>",
        # Reminder schedule of lms.compliance.reminders (working days; see ReminderPolicy).
        "REMINDER_DAYS_BEFORE": int(os.environ.get("REMINDER_DAYS_BEFORE", "3")),
        "ESCALATE_HR_AFTER_WORKDAYS": int(os.environ.get("ESCALATE_HR_AFTER_WORKDAYS", "5")),
        "DIGEST_ENABLED": _flag("DIGEST_ENABLED", True),
        # Absolute links in e-mails (the tracking link) start with this.
        "PUBLIC_BASE_URL": (os.environ.get("PUBLIC_BASE_URL")
                            or "http://127.0.0.1:5000").rstrip("/"),
        # Shared secret of the HR system's signed webhook (POST /api/v1/hr/webhook);
        # unset (or under 16 bytes) the webhook answers 503 webhook_not_configured.
        "HR_WEBHOOK_SECRET": os.environ.get("HR_WEBHOOK_SECRET", ""),
        # Days the log of /api/v1 calls is kept (lms tick prunes older rows).
        "API_CALL_LOG_DAYS": int(os.environ.get("API_CALL_LOG_DAYS", "180")),
        # Calls one API token may make per minute (429 with Retry-After beyond).
        "API_RATE_LIMIT_PER_MINUTE": int(os.environ.get("API_RATE_LIMIT_PER_MINUTE", "600")),
        # Background jobs (lms.jobs): on RQ with Redis when REDIS_URL is set (run
        # `flask --app wsgi lms worker`), else on a thread of the web process.
        "REDIS_URL": os.environ.get("REDIS_URL", "").strip(),
        "RQ_QUEUE": os.environ.get("RQ_QUEUE", "lms").strip() or "lms",
        "JOBS_DIR": os.environ.get("JOBS_DIR") or str(instance_path / "jobs"),
        # A running job whose heartbeat is older than this is taken over by another worker.
        "JOB_LEASE_SECONDS": int(os.environ.get("JOB_LEASE_SECONDS", "120")),
        "JOB_MAX_ATTEMPTS": int(os.environ.get("JOB_MAX_ATTEMPTS", "3")),
        "JOB_TIMEOUT_SECONDS": int(os.environ.get("JOB_TIMEOUT_SECONDS", str(6 * 3600))),
        # Days a finished job's files (the bulk ZIPs) are kept; lms tick removes older ones.
        "JOB_KEEP_DAYS": float(os.environ.get("JOB_KEEP_DAYS", "7")),
        # Outbound webhooks (integrations.webhooks): timeouts of each signed POST, seconds.
        "WEBHOOK_CONNECT_TIMEOUT": float(os.environ.get("WEBHOOK_CONNECT_TIMEOUT", "5")),
        "WEBHOOK_READ_TIMEOUT": float(os.environ.get("WEBHOOK_READ_TIMEOUT", "10")),
        # xAPI statements to a Learning Record Store (integrations.xapi); an empty URL turns
        # xAPI off. The URL is the LRS endpoint; statements go to <it>/statements.
        "XAPI_LRS_URL": os.environ.get("XAPI_LRS_URL", "").strip(),
        "XAPI_LRS_USERNAME": os.environ.get("XAPI_LRS_USERNAME", ""),
        "XAPI_LRS_PASSWORD": os.environ.get("XAPI_LRS_PASSWORD", ""),
        "XAPI_CONNECT_TIMEOUT": float(os.environ.get("XAPI_CONNECT_TIMEOUT", "5")),
        "XAPI_READ_TIMEOUT": float(os.environ.get("XAPI_READ_TIMEOUT", "20")),
    }
