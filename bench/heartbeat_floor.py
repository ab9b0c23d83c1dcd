"""The application's own per-request floor for bench/heartbeat.py: the real app (cookie
session, CSRF check, security headers) with one bench-only POST endpoint that touches no
database. The heartbeat's cost above this floor is the hot path itself.

    DATABASE_URL=... gunicorn -w 2 -b 127.0.0.1:PORT --pythonpath bench heartbeat_floor:app
"""

from __future__ import annotations

from flask import Response, session

from lms.app import create_app

app = create_app()


@app.post("/bench/noop")
def noop() -> Response:
    if not session.get("_user_id"):  # read the login like the heartbeat does
        return Response('{"error":"login"}', status=401, mimetype="application/json")
    return Response('{"ok":true}', mimetype="application/json")
