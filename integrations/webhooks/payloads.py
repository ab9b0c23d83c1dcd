"""The JSON body of a webhook (pure: no Flask, no database).

::

    {"id": "<uuid>", "type": "exam.passed", "occurred_at": "2026-09-28T02:00:00.000000Z",
     "ledger": {"seq": 123, "hash": "<sha256 of the ledger entry>"},
     "data": {"employee_no": "E10001", "username": "lilei",
              "course": {"code": ..., "title": ..., "title_en": ..., "version": 1},
              "lesson": {...}, "exam": {...}, "policy": {...}}}

``ledger.seq``/``ledger.hash`` let a receiver ask an auditor to check the record
against the evidence ledger. No ID number, IP address or user agent is ever sent.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from integrations.events import TrainingEvent, event_uuid
from lms.ledger_core import format_time

__all__ = ["TEST_EVENT_TYPE", "body_text", "event_payload", "test_payload"]

TEST_EVENT_TYPE = "webhook.test"


def _course(event: TrainingEvent) -> dict[str, Any] | None:
    if event.course is None:
        return None
    c = event.course
    return {"code": c.code, "title": c.title_zh or None, "title_en": c.title_en or None,
            "version": c.version}


def event_payload(event: TrainingEvent, *, base_url: str) -> dict[str, Any]:
    data: dict[str, Any] = {"employee_no": event.learner.employee_no,
                            "username": event.learner.username}
    course = _course(event)
    if course is not None:
        data["course"] = course
    if event.cycle is not None:
        data["cycle"] = event.cycle
    if event.lesson is not None:
        data["lesson"] = {"id": event.lesson.id, "title": event.lesson.title or None,
                          "position": event.lesson.position, "kind": event.lesson.kind}
    if event.exam is not None:
        e = event.exam
        data["exam"] = {"exam_id": e.exam_id, "attempt_id": e.attempt_id,
                        "attempt_number": e.attempt_number, "score": e.score,
                        "pass_score": e.pass_score, "passed": e.passed,
                        "correct_count": e.correct_count, "question_count": e.question_count,
                        "end_reason": e.end_reason}
    if event.policy is not None:
        p = event.policy
        data["policy"] = {"document_id": p.document_id, "name": p.name, "version": p.version,
                          "document_sha256": p.document_sha256,
                          "statement_sha256": p.statement_sha256}
    return {"id": str(event_uuid(base_url, event.seq)), "type": event.type,
            "occurred_at": format_time(event.at),
            "ledger": {"seq": event.seq, "hash": event.hash}, "data": data}


def test_payload(*, seq: int, hash: str, at: datetime, base_url: str, endpoint_name: str
                 ) -> dict[str, Any]:
    """A ``webhook.test`` event: the ledger entry is the admin's request to send it."""
    return {"id": str(event_uuid(base_url, seq)), "type": TEST_EVENT_TYPE,
            "occurred_at": format_time(at), "ledger": {"seq": seq, "hash": hash},
            "data": {"endpoint": endpoint_name,
                     "message": "Test event from Compliance Academy (合规学堂)."}}


def body_text(payload: dict[str, Any]) -> str:
    """The body as stored and sent (UTF-8 text; sorted keys, no spaces)."""
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
