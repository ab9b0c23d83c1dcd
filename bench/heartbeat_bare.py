"""The baseline of bench/heartbeat.py: a bare Flask endpoint doing one comparable
single-row write (parse the same form fields, one UPDATE of a row with a JSON text
column, commit), through the same kind of engine (pool_pre_ping, the same SQLite
pragmas). Served by gunicorn exactly like the application:

    BENCH_DB_URL=... gunicorn -w 2 -b 127.0.0.1:PORT --pythonpath bench heartbeat_bare:app
"""

from __future__ import annotations

import json
import os
import sqlite3
from typing import Any

import sqlalchemy as sa
from flask import Flask, Response, request

engine = sa.create_engine(os.environ["BENCH_DB_URL"], pool_pre_ping=True)


@sa.event.listens_for(engine, "connect")
def _pragmas(dbapi_connection: Any, _record: Any) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):  # as lms.app does
        cur = dbapi_connection.cursor()
        for pragma in ("foreign_keys=ON", "busy_timeout=15000", "journal_mode=WAL",
                       "synchronous=NORMAL"):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()


WRITE = sa.text("UPDATE bench_rows SET seq = :seq, position = :position, body = :body "
                "WHERE id = :id")

app = Flask(__name__)


@app.post("/write")
def write() -> Response:
    form = request.form
    seq, position = int(form["seq"]), float(form["position"])
    body = json.dumps([[0.0, round(position, 3)]], separators=(",", ":"))
    with engine.begin() as conn:
        conn.execute(WRITE, {"id": int(form["row"]), "seq": seq, "position": position,
                             "body": body})
    return Response('{"ok":true}', mimetype="application/json")
