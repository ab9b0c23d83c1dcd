"""xAPI 1.0.3 statements built from training events (pure: no Flask, no database).

- actor: an Agent identified by ``mbox`` (``mailto:`` + the learner's e-mail) when there
  is a usable address, else by ``account`` {homePage: PUBLIC_BASE_URL, name: employee
  number, or login name}. No ``name`` is sent: the LRS needs an identifier, not the
  person's name (PIPL data minimisation; the HR system joins on the employee number).
- verb: ADL's ``completed``, ``passed`` and ``failed``; a policy signature is Activity
  Streams' ``accept`` (http://activitystrea.ms/schema/1.0/accept, in the xAPI verb
  registry as "accepted": "the actor has accepted the object, for instance ... accepting
  an assignment"). The learner accepts a binding policy (the signed statement ends
  "同意遵守", "I agree to comply"): accepting an obligation, as with an assignment.
  ADL's vocabulary has no acknowledgement verb; ``agree`` is for agreeing with an
  opinion; ``completed`` would blur the signature with the lesson's completion.
- object: an Activity with an id under PUBLIC_BASE_URL (``/xapi/activities/course/<code>``,
  ``/lesson/<id>``, ``/exam/<id>``, ``/policy/<id>``), a zh-CN (and en-US) name and an
  ADL activity type (course, lesson, assessment; a policy is a Tin Can "document").
  Versions are the context's ``revision``, so every version stays one activity.
- result: completion; for an exam the score (scaled, raw, min 0, max 100) and success.
- context: ``registration`` derived from the enrolment (one per enrolment round), the
  platform, language zh-CN, the course as ``contextActivities.parent`` of a lesson, an
  exam or a signature, and the ledger entry (seq, hash) as an extension.
- timestamp: the ledger entry's time; id: derived from the ledger seq (UUID v5), so a
  resend is the same statement and the LRS keeps one. ``version`` is left to the LRS, as
  the specification asks of Learning Record Providers.
"""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import quote

from integrations.events import CourseRef, TrainingEvent, event_uuid
from lms.ledger_core import format_time

__all__ = ["ACTIVITY_TYPES", "PLATFORM", "VERBS", "build_statement", "registration_uuid"]

PLATFORM = "Compliance Academy (合规学堂)"
LANGUAGE = "zh-CN"

VERBS: dict[str, dict[str, Any]] = {
    "completed": {"id": "http://adlnet.gov/expapi/verbs/completed",
                  "display": {"en-US": "completed", "zh-CN": "完成"}},
    "passed": {"id": "http://adlnet.gov/expapi/verbs/passed",
               "display": {"en-US": "passed", "zh-CN": "通过"}},
    "failed": {"id": "http://adlnet.gov/expapi/verbs/failed",
               "display": {"en-US": "failed", "zh-CN": "未通过"}},
    "accepted": {"id": "http://activitystrea.ms/schema/1.0/accept",
                 "display": {"en-US": "accepted", "zh-CN": "签署确认"}},
}
ACTIVITY_TYPES = {
    "course": "http://adlnet.gov/expapi/activities/course",
    "lesson": "http://adlnet.gov/expapi/activities/lesson",
    "assessment": "http://adlnet.gov/expapi/activities/assessment",
    "policy": "http://id.tincanapi.com/activitytype/document",
}
# A deliberately strict shape: an address an LRS would refuse sends the account instead.
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


def _activity_id(base_url: str, *parts: str | int) -> str:
    return base_url + "/xapi/activities/" + "/".join(quote(str(p), safe="") for p in parts)


def _extension(base_url: str, name: str) -> str:
    return f"{base_url}/xapi/extensions/{name}"


def registration_uuid(base_url: str, enrollment_id: int) -> uuid.UUID:
    """One registration per enrolment (each recertification round is its own)."""
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, base_url.rstrip("/") + "/enrollments")
    return uuid.uuid5(namespace, f"enrollment:{enrollment_id}")


def _names(zh: str, en: str = "") -> dict[str, str]:
    names = {"zh-CN": zh.strip()} if zh.strip() else {}
    if en.strip():
        names["en-US"] = en.strip()
    return names


def _actor(event: TrainingEvent, base_url: str) -> dict[str, Any]:
    learner = event.learner
    email = (learner.email or "").strip()
    if _EMAIL.fullmatch(email):
        local, _, domain = email.rpartition("@")
        return {"objectType": "Agent", "mbox": f"mailto:{local}@{domain.lower()}"}
    name = learner.employee_no or learner.username or f"user:{learner.user_id}"
    return {"objectType": "Agent", "account": {"homePage": base_url, "name": name}}


def _course_activity(course: CourseRef, base_url: str) -> dict[str, Any]:
    return {"objectType": "Activity", "id": _activity_id(base_url, "course", course.code),
            "definition": {"type": ACTIVITY_TYPES["course"],
                           "name": _names(course.title_zh or course.code, course.title_en)}}


def _object_and_result(event: TrainingEvent, base_url: str
                       ) -> tuple[str, dict[str, Any], dict[str, Any], str | None]:
    """(verb key, object, result, revision) of an event."""
    ext_doc = _extension(base_url, "document-sha256")
    ext_statement = _extension(base_url, "statement-sha256")
    if event.type == "course.completed" and event.course is not None:
        return ("completed", _course_activity(event.course, base_url), {"completion": True},
                f"v{event.course.version}" if event.course.version is not None else None)
    if event.type == "lesson.completed" and event.lesson is not None:
        lesson = event.lesson
        name = lesson.title or f"Lesson {lesson.position or lesson.id}"
        obj = {"objectType": "Activity", "id": _activity_id(base_url, "lesson", lesson.id),
               "definition": {"type": ACTIVITY_TYPES["lesson"], "name": _names(name)}}
        return "completed", obj, {"completion": True}, None
    if event.type in ("exam.passed", "exam.failed") and event.exam is not None:
        exam = event.exam
        name = (event.lesson.title if event.lesson else "") or f"Exam {exam.exam_id}"
        obj = {"objectType": "Activity", "id": _activity_id(base_url, "exam", exam.exam_id),
               "definition": {"type": ACTIVITY_TYPES["assessment"], "name": _names(name)}}
        score = max(0, min(100, exam.score))
        result = {"score": {"scaled": round(score / 100, 4), "raw": score, "min": 0,
                            "max": 100},
                  "success": exam.passed, "completion": True}
        return "passed" if exam.passed else "failed", obj, result, None
    if event.type == "policy.signed" and event.policy is not None:
        policy = event.policy
        key = policy.document_id if policy.document_id is not None else policy.name
        obj = {"objectType": "Activity", "id": _activity_id(base_url, "policy", key),
               "definition": {"type": ACTIVITY_TYPES["policy"],
                              "name": _names(policy.name or f"Policy {key}")}}
        extensions = {k: v for k, v in ((ext_doc, policy.document_sha256),
                                        (ext_statement, policy.statement_sha256)) if v}
        result: dict[str, Any] = {"completion": True}
        if extensions:
            result["extensions"] = extensions
        return ("accepted", obj, result,
                f"v{policy.version}" if policy.version is not None else None)
    raise ValueError(f"no statement for event {event.type} at ledger seq {event.seq}")


def build_statement(event: TrainingEvent, *, base_url: str) -> dict[str, Any]:
    """The statement of ``event`` as a JSON-ready dict (``base_url``: PUBLIC_BASE_URL)."""
    base_url = base_url.rstrip("/")
    verb, obj, result, revision = _object_and_result(event, base_url)
    context: dict[str, Any] = {"platform": PLATFORM, "language": LANGUAGE,
                               "extensions": {_extension(base_url, "ledger"): {
                                   "seq": event.seq, "hash": event.hash}}}
    if event.enrollment_id is not None:
        context["registration"] = str(registration_uuid(base_url, event.enrollment_id))
    if revision:
        context["revision"] = revision
    if event.type != "course.completed" and event.course is not None:
        context["contextActivities"] = {"parent": [_course_activity(event.course, base_url)]}
    return {
        "id": str(event_uuid(base_url, event.seq)),
        "actor": _actor(event, base_url),
        "verb": VERBS[verb],
        "object": obj,
        "result": result,
        "context": context,
        "timestamp": format_time(event.at),
    }
