"""Helpers of the outbound integration tests (import as ``from outbound_support import
...``): a real HTTP receiver on 127.0.0.1 standing in for a webhook endpoint or an LRS,
and a learner who completes a course by e-signing its policy through the real pages."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlalchemy import select
from support import PASSWORD

from assessments import signing
from assessments.policies import PolicyDocument, PolicyVersion
from courses.models import Course, CourseVersion, Enrollment, Lesson
from lms.dbtypes import utcnow
from lms.extensions import db

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
READING_RE = re.compile(r'name="reading"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="reading"')


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Receiver:
    """A threaded HTTP server recording every POST. Each request is answered by
    ``answer(request) -> (status, body)``; by default the next code of ``codes`` (then
    ``default``)."""

    codes: list[int] = field(default_factory=list)
    default: int = 200
    received: list[Received] = field(default_factory=list)
    answer: Callable[[Received], tuple[int, bytes]] | None = None

    def start(self) -> Receiver:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                   self.rfile.read(length))
                owner.received.append(request)
                if owner.answer is not None:
                    status, body = owner.answer(request)
                else:
                    status = owner.codes.pop(0) if owner.codes else owner.default
                    body = b"" if status < 300 else b"receiver says no"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()
        return self

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port_url(path: str = "/hook") -> str:
    """An address where nothing listens (connection refused at once)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}{path}"


# --- a learner completing a policy course through the real pages -----------------------

def make_policy_course(code: str = "RISK-PERF-01") -> Lesson:
    """A published course whose only lesson is signing a published policy (60 s read)."""
    document = db.session.scalar(select(PolicyDocument).where(PolicyDocument.name == "绩效管理制度"))
    if document is None:
        document = signing.create_document(db.session, name="绩效管理制度", statement_template=None,
                                           min_reading_seconds=60, actor_id=None)
    version: PolicyVersion = signing.add_text_version(
        db.session, document, body="第一条 为规范绩效管理，制定本制度。", actor_id=None)
    signing.publish_version(db.session, version, actor_id=None)
    course = Course(code=code, title_zh="绩效管理制度培训", title_en="Performance rules",
                    risk_topic="performance")
    course_version = CourseVersion(course=course, number=1, status="draft")
    db.session.add_all([course, course_version])
    db.session.flush()
    lesson = Lesson(version=course_version, position=1, kind="policy",
                    title="签署《绩效管理制度》", policy_version_id=version.id)
    db.session.add(lesson)
    db.session.flush()
    course_version.status = "published"
    course_version.content_hash = "c0" * 32
    course_version.published_at = utcnow()
    db.session.commit()
    return lesson


def enrol(user, lesson: Lesson) -> None:
    db.session.add(Enrollment(user_id=user.id, version_id=lesson.version_id, source="manual"))
    db.session.commit()


def sign_policy(client, lesson_id: int, clock, *, name: str) -> object:
    """Open the signing page, wait out the reading time, sign: the learner's requests."""
    resp = client.get(f"/policies/lessons/{lesson_id}")
    assert resp.status_code == 200, resp.data
    html = resp.get_data(as_text=True)
    csrf = CSRF_RE.search(html).group(1)
    match = READING_RE.search(html)
    reading = next(g for g in match.groups() if g)
    clock.advance(75)
    return client.c.post(f"/policies/lessons/{lesson_id}/sign", data={
        "csrf_token": csrf, "reading": reading, "full_name": name, "password": PASSWORD})
