"""Policy documents and e-signatures: authoring services, reading sessions, signing and
verification. Nothing here commits; the view owning the unit of work does.

Evidence rules: the reading time is measured on the server from the moment it served
the document (a ``PolicyReading`` row); the signer is always the logged-in user, who
re-authenticates with the password inside the signing request; the signature row and
its "policy.signed" ledger entry are written in one transaction, and the entry's seq
and hash are kept on the row so ``verify_signature`` can compare the two.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from assessments.policies import (
    DEFAULT_MIN_READING_SECONDS,
    DEFAULT_STATEMENT,
    PolicyDocument,
    PolicyReading,
    PolicyVersion,
    Signature,
)
from courses.authoring import AuthoringError, _check_title, _next_position, _require_draft
from courses.media import MediaError, MediaStorage
from courses.models import CourseVersion, Lesson
from courses.tracking import complete_lesson
from lms import ledger
from lms.auth.passwords import verify_password
from lms.auth.throttle import ThrottlePolicy, record_failure, retry_after
from lms.dbtypes import utcnow
from lms.field_errors import ErrorCollector
from lms.ledger import LedgerEntry
from lms.ledger_core import entry_hash
from lms.notify import service as notify
from lms.people.models import Employee, User

SHANGHAI = ZoneInfo("Asia/Shanghai")
MAX_TEXT_CHARS = 200_000
PDF_MAGIC = b"%PDF-"
AUTH_METHOD = "password"


def clock() -> datetime:
    """The server's time (tests replace this function to control time)."""
    return utcnow()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def normalise_name(name: str | None) -> str:
    """Names compare with whitespace collapsed (full-width spaces included)."""
    return " ".join((name or "").replace("\u3000", " ").split())


def render_statement(template: str, *, name: str, version: int) -> str:
    """The exact statement shown and signed (plain replacement: braces are not code)."""
    return template.replace("{name}", name).replace("{version}", str(version))


class PolicyError(AuthoringError):
    """Bad input to a policy authoring service (field -> message)."""


def _Errors() -> ErrorCollector:
    return ErrorCollector(PolicyError)


# --- authoring --------------------------------------------------------------------------


def create_document(session: Session, *, name: str, statement_template: str | None,
                    min_reading_seconds: int | None, actor_id: int | None) -> PolicyDocument:
    errors = _Errors()
    name = normalise_name(name)
    template = (statement_template or "").strip() or DEFAULT_STATEMENT
    seconds = DEFAULT_MIN_READING_SECONDS if min_reading_seconds is None else min_reading_seconds
    if not name:
        errors.add("name", _l("Enter the name of the policy."))
    elif len(name) > 200:
        errors.add("name", _l("At most %(n)d characters.", n=200))
    elif session.scalar(select(PolicyDocument.id).where(PolicyDocument.name == name)):
        errors.add("name", _l("A policy with this name exists already."))
    if len(template) > 2000:
        errors.add("statement_template", _l("At most %(n)d characters.", n=2000))
    if not 0 <= seconds <= 3600:
        errors.add("min_reading_seconds", _l("Enter a number of seconds from 0 to 3600."))
    errors.raise_if_any()
    document = PolicyDocument(name=name, statement_template=template,
                              min_reading_seconds=seconds, created_by_id=actor_id)
    session.add(document)
    session.flush()
    return document


def _next_number(session: Session, document: PolicyDocument) -> int:
    numbers = session.scalars(select(PolicyVersion.number)
                              .where(PolicyVersion.document_id == document.id)).all()
    return max(numbers, default=0) + 1


def add_text_version(session: Session, document: PolicyDocument, *, body: str,
                     actor_id: int | None) -> PolicyVersion:
    """A draft version with a plain-text body; its hash is over the UTF-8 bytes."""
    body = (body or "").replace("\r\n", "\n").strip()
    errors = _Errors()
    if not body:
        errors.add("body", _l("Enter the text of the policy, or upload a PDF."))
    elif len(body) > MAX_TEXT_CHARS:
        errors.add("body", _l("At most %(n)d characters.", n=MAX_TEXT_CHARS))
    errors.raise_if_any()
    data = body.encode("utf-8")
    version = PolicyVersion(document=document, number=_next_number(session, document),
                            status="draft", body_kind="text", body=body, size_bytes=len(data),
                            sha256=sha256_hex(data), created_by_id=actor_id)
    session.add(version)
    session.flush()
    return version


def add_pdf_version(session: Session, document: PolicyDocument, *, stream: BinaryIO,
                    filename: str, store: MediaStorage, max_bytes: int,
                    actor_id: int | None) -> PolicyVersion:
    """A draft version from an uploaded PDF (checked by its magic bytes, not its name)."""
    head = stream.read(len(PDF_MAGIC))
    if head != PDF_MAGIC:
        raise PolicyError.one(_l("This file is not a PDF."), "pdf")

    class _Rest:
        def __init__(self) -> None:
            self.head = head

        def read(self, n: int = -1) -> bytes:
            if self.head:
                out, self.head = self.head, b""
                return out
            return stream.read(n)

    try:
        key, digest, size = store.save(_Rest(), suffix=".pdf", max_bytes=max_bytes)  # type: ignore[arg-type]
    except MediaError:
        raise PolicyError.one(_l("The file is too large (at most %(n)d MB).",
                                 n=max_bytes // (1024 * 1024)), "pdf") from None
    version = PolicyVersion(document=document, number=_next_number(session, document),
                            status="draft", body_kind="pdf", storage_key=key,
                            original_filename=(filename or "policy.pdf")[:255],
                            size_bytes=size, sha256=digest, created_by_id=actor_id)
    session.add(version)
    session.flush()
    return version


def publish_version(session: Session, version: PolicyVersion, *, actor_id: int | None) -> None:
    """Freeze the version; append "policy.version_published" with its SHA-256."""
    status = session.execute(select(PolicyVersion.status).where(PolicyVersion.id == version.id)
                             .with_for_update()).scalar_one()
    if status != "draft":
        raise PolicyError.one(_l("Version %(n)d is published already.", n=version.number))
    now = utcnow()
    entry = ledger.append(session, kind="policy.version_published",
                          subject=f"policy_version:{version.id}", actor_id=actor_id, payload={
                              "policy_document_id": version.document_id,
                              "policy_name": version.document.name,
                              "version_number": version.number, "body_kind": version.body_kind,
                              "sha256": version.sha256, "size_bytes": version.size_bytes,
                              "published_at": now.isoformat(),
                          })
    version.status = "published"
    version.published_at = now
    version.published_by_id = actor_id
    version.publish_ledger_seq = entry.seq
    session.flush()


def published_versions(session: Session) -> list[PolicyVersion]:
    return list(session.scalars(
        select(PolicyVersion).join(PolicyDocument)
        .where(PolicyVersion.status == "published")
        .order_by(PolicyDocument.name, PolicyVersion.number)))


def add_policy_lesson(session: Session, course_version: CourseVersion, *, title: str,
                      policy_version_id: int | None) -> Lesson:
    """A policy lesson on a DRAFT course version, pointing at a PUBLISHED policy version."""
    _require_draft(session, course_version)
    errors = _Errors()
    title = _check_title(errors, title)
    policy = session.get(PolicyVersion, policy_version_id) if policy_version_id else None
    if policy is None or policy.status != "published":
        errors.add("policy_version_id", _l("Choose a published policy version."))
    errors.raise_if_any()
    lesson = Lesson(version=course_version, position=_next_position(session, course_version),
                    kind="policy", title=title, policy_version_id=policy.id)
    session.add(lesson)
    session.flush()
    return lesson


# --- reading ----------------------------------------------------------------------------


def document_bytes(version: PolicyVersion, store: MediaStorage) -> bytes:
    """The stored bytes whose SHA-256 the version records."""
    if version.body_kind == "text":
        return version.body.encode("utf-8")
    with store.open(version.storage_key or "") as fh:
        return fh.read()


def start_reading(session: Session, *, user_id: int, enrollment_id: int, lesson: Lesson,
                  ip: str | None, user_agent: str | None) -> PolicyReading:
    """Record that the server is serving the document now; the token goes in the form."""
    reading = PolicyReading(token=secrets.token_urlsafe(32), user_id=user_id,
                            enrollment_id=enrollment_id, lesson_id=lesson.id, policy_version_id=lesson.policy_version_id,
                            served_at=clock(), ip=ip, user_agent=(user_agent or "")[:512])
    session.add(reading)
    session.flush()
    return reading


def signature_of(session: Session, enrollment_id: int, policy_version_id: int
                 ) -> Signature | None:
    """The enrolment's signature of a policy version (each round signs again)."""
    return session.scalar(select(Signature).where(
        Signature.enrollment_id == enrollment_id,
        Signature.policy_version_id == policy_version_id))


# --- signing ----------------------------------------------------------------------------


class SignRefused(Exception):
    """The signature was refused; ``code`` says why (the view words it)."""

    def __init__(self, code: str, remaining: int = 0) -> None:
        super().__init__(code)
        self.code = code  # no_employee already_signed stale too_early throttled
        self.remaining = remaining  # wrong_password wrong_name


def _code() -> str:
    return base64.b32encode(secrets.token_bytes(10)).decode("ascii")[:10]


def sign(session: Session, *, user: User, lesson: Lesson, enrollment_id: int,
         reading_token: str, typed_name: str, password: str, ip: str | None,
         user_agent: str | None, throttle: ThrottlePolicy) -> Signature:
    """Sign the lesson's policy version as ``user`` (always the logged-in user).

    A refused password is recorded as a login failure (the caller commits that alone),
    so this form cannot be used to guess passwords past the login throttle.
    """
    employee = session.get(Employee, user.employee_id) if user.employee_id else None
    if employee is None:
        raise SignRefused("no_employee")
    version = session.get(PolicyVersion, lesson.policy_version_id)
    if version is None or version.status != "published":
        raise SignRefused("stale")
    if signature_of(session, enrollment_id, version.id) is not None:
        raise SignRefused("already_signed")
    reading = session.scalar(select(PolicyReading).where(
        PolicyReading.token == (reading_token or ""), PolicyReading.user_id == user.id,
        PolicyReading.enrollment_id == enrollment_id, PolicyReading.lesson_id == lesson.id,
        PolicyReading.policy_version_id == version.id))
    if reading is None:
        raise SignRefused("stale")
    now = clock()
    elapsed = (now - reading.served_at).total_seconds()
    minimum = version.document.min_reading_seconds
    if elapsed < minimum:
        raise SignRefused("too_early", remaining=max(1, int(minimum - elapsed + 0.999)))
    client_ip = ip or "unknown"
    if retry_after(session, throttle, username=user.username, ip=client_ip) is not None:
        raise SignRefused("throttled")
    if not verify_password(user.password_hash, password or ""):
        record_failure(session, username=user.username, ip=client_ip)
        raise SignRefused("wrong_password")
    auth_at = clock()
    if normalise_name(typed_name) != normalise_name(employee.name):
        raise SignRefused("wrong_name")

    document = version.document
    statement = render_statement(document.statement_template, name=document.name,
                                 version=version.number)
    fields: dict[str, Any] = {
        "verification_code": _code(), "user_id": user.id, "employee_id": employee.id,
        "employee_no": employee.employee_no, "signer_name": employee.name,
        "id_number_masked": employee.id_number_masked, "policy_document_id": document.id,
        "policy_version_id": version.id, "version_number": version.number,
        "document_sha256": version.sha256, "lesson_id": lesson.id,
        "enrollment_id": enrollment_id, "statement": statement,
        "statement_sha256": sha256_hex(statement.encode("utf-8")),
        "reading_seconds": round(elapsed, 1), "auth_method": AUTH_METHOD, "auth_at": auth_at,
        "signed_at": now, "ip": ip, "user_agent": (user_agent or "")[:512],
    }
    entry = ledger.append(session, kind="policy.signed", subject=f"policy_version:{version.id}",
                          actor_id=user.id, payload={**_payload_view(fields),
                                                     "policy_name": document.name,
                                                     "enrollment_id": enrollment_id})
    signature = Signature(**fields, ledger_seq=entry.seq, ledger_hash=entry.hash)
    session.add(signature)
    session.flush()
    complete_lesson(session, user_id=user.id, enrollment_id=enrollment_id, lesson_id=lesson.id,
                    at=now,
                    ledger_seq=entry.seq)
    _send_receipt(session, user=user, signature=signature, policy_name=document.name)
    return signature


def _send_receipt(session: Session, *, user: User, signature: Signature,
                  policy_name: str) -> None:
    """The signer's receipt message (inbox and e-mail) with the verification code. Its
    text is stored as evidence of what the signer was told, so it is written in Chinese,
    the language of the statement itself."""
    code = signature.verification_code
    notify.send(
        session, recipient_ids=[user.id], kind="receipt", actor_id=user.id,
        subject=f"签署回执：《{policy_name}》第 {signature.version_number} 版",
        body=(f"您已于 {signature.signed_at.astimezone(SHANGHAI):%Y-%m-%d %H:%M:%S}（北京时间）"
              f"电子签署《{policy_name}》第 {signature.version_number} 版。\n"
              f"签署声明：{signature.statement}\n"
              f"文件 SHA-256：{signature.document_sha256}\n"
              f"核验码：{code}\n"
              "人力资源部和审计人员可凭核验码核对此签名记录是否被改动。"),
        link=f"/policies/receipts/{code}", dedupe_key=f"signature:{code}")


SIGNED_FIELDS = ("verification_code", "user_id", "employee_id", "employee_no", "signer_name",
                 "id_number_masked", "policy_document_id", "policy_version_id",
                 "version_number", "document_sha256", "lesson_id", "statement",
                 "statement_sha256", "reading_seconds", "auth_method", "auth_at",
                 "signed_at", "ip", "user_agent")


def _payload_view(fields: dict[str, Any]) -> dict[str, Any]:
    """The JSON form of the signature's fields (times as ISO 8601 UTC)."""
    return {k: (fields[k].isoformat() if isinstance(fields[k], datetime) else fields[k])
            for k in SIGNED_FIELDS}


# --- verification -----------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    signature: Signature
    entry: LedgerEntry | None
    problems: list[str]

    @property
    def intact(self) -> bool:
        return not self.problems


def find_signature(session: Session, code: str) -> Signature | None:
    return session.scalar(select(Signature).where(Signature.verification_code == code.upper()))


def verify_signature(session: Session, signature: Signature, store: MediaStorage) -> Verification:
    """Compare the stored row with its ledger entry and the stored document bytes.
    Each problem is a plain sentence naming what does not match."""
    problems: list[str] = []
    entry = session.get(LedgerEntry, signature.ledger_seq)
    if entry is None:
        problems.append(_("Ledger entry %(seq)d is missing.", seq=signature.ledger_seq))
    else:
        recomputed = entry_hash(entry.fields())
        if recomputed != entry.hash:
            problems.append(_("Ledger entry %(seq)d: its content does not match its hash.",
                                   seq=entry.seq))
        if entry.hash != signature.ledger_hash:
            problems.append(_("ledger_hash: the signature row names another hash than ledger "
                               "entry %(seq)d.", seq=entry.seq))
        if entry.kind != "policy.signed":
            problems.append(_("Ledger entry %(seq)d is not a signature entry.", seq=entry.seq))
        try:
            payload = json.loads(entry.payload)
        except ValueError:
            payload = {}
            problems.append(_("Ledger entry %(seq)d: the payload is not valid JSON.",
                               seq=entry.seq))
        row = _payload_view({k: getattr(signature, k) for k in SIGNED_FIELDS})
        for key in SIGNED_FIELDS:
            if payload.get(key) != row[key]:
                problems.append(_("%(field)s: the signature row says %(row)s, the ledger "
                                  "says %(ledger)s.", field=key, row=repr(row[key]),
                                  ledger=repr(payload.get(key))))
    statement_hash = sha256_hex(signature.statement.encode("utf-8"))
    if statement_hash != signature.statement_sha256:
        problems.append(_("statement_sha256: the stored statement does not hash to the "
                          "recorded value."))
    version = session.get(PolicyVersion, signature.policy_version_id)
    if version is None:
        problems.append(_("The policy version is missing."))
    else:
        if version.sha256 != signature.document_sha256:
            problems.append(_("document_sha256: the policy version records another SHA-256."))
        try:
            actual = sha256_hex(document_bytes(version, store))
        except (OSError, ValueError):
            problems.append(_("The stored document file cannot be read."))
        else:
            if actual != signature.document_sha256:
                problems.append(_("The stored document's SHA-256 is %(actual)s, not the "
                                  "signed %(signed)s.", actual=actual,
                                  signed=signature.document_sha256))
    return Verification(signature, entry, problems)


__all__ = ["SignRefused", "Verification", "add_pdf_version", "add_policy_lesson",
           "add_text_version", "clock", "create_document", "find_signature", "publish_version",
           "sign", "start_reading", "verify_signature"]
