"""Making an evidence pack (the unit of work shared by the download view and the CLI) and
recognising one later.

The order matters: the ledger is verified first (its result goes into the pack), the
records are gathered, the PDF is rendered and signed, and only then is the export
appended to the ledger — with the SHA-256 of the exact signed file — so the ledger's
lock is held for one INSERT, not for a render. Nothing commits here: the caller does,
and if rendering or signing fails nothing is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app, render_template
from sqlalchemy import select
from sqlalchemy.orm import Session

from courses.media import storage
from lms import ledger
from lms.evidence.fonts import CjkFont, find_font
from lms.evidence.pack import EvidencePack, gather
from lms.evidence.pdf import font_face_css, render_pdf
from lms.evidence.signing import (
    PACK_KEYWORD,
    PackCheck,
    SigningMaterial,
    SigningSettings,
    load_material,
    sign_pdf,
    validate_pack,
)
from lms.ledger import LedgerEntry
from lms.ledger_core import entry_hash
from lms.people.labels import STATUS_LABELS
from lms.people.models import Employee, User

__all__ = ["EXPORT_KIND", "ExportedPack", "PackVerdict", "export_pack", "font", "material",
           "recognise_pack"]

EXPORT_KIND = "evidence.pack_exported"
SHANGHAI = ZoneInfo("Asia/Shanghai")

# Labels printed in the pack: Chinese first (the language of the records and of a
# Chinese court), English after it, fixed whatever the exporter's UI language.
LABELS: dict[str, dict[str, str]] = {
    "status": {code: label for code, label in STATUS_LABELS.items()},
    "employee_status_en": {"active": "active", "leaving": "leaving", "absconded": "absconded",
                           "unpaid_leave": "unpaid leave", "left": "left"},
    "enrolment_source": {"manual": "HR 报名 enrolled by HR", "self": "自主报名 self-enrolled",
                         "assigned": "按分配 assigned"},
    "assignment_source": {"rule": "规则 rule", "manual": "HR 手动 by hand",
                          "retraining": "新版本重新培训 re-training",
                          "recurrence": "定期复训 recertification",
                          "risk": "风险信号 risk signal"},
    "assignment_status": {"open": "待完成 outstanding", "completed": "已完成 completed",
                          "suspended": "已暂停 suspended", "waived": "已豁免 waived"},
    "lesson_kind": {"video": "视频 video", "document": "文档 document",
                    "policy": "制度签署 policy", "exam": "考试 exam"},
    "question_kind": {"single": "单选 single", "multiple": "多选 multiple",
                      "true_false": "判断 true/false"},
    "stage": {"before": "到期前提醒 reminder before due", "due": "到期日提醒 due today",
              "manager": "逾期通知上级 escalated to manager", "hr": "逾期通知人力 escalated to HR",
              "receipt": "签署回执 signing receipt", "notice": "通知 notice",
              "assigned": "分配通知 assignment notice"},
    "end_reason": {"submitted": "提交 submitted", "timeout": "超时 timed out"},
    "session_end": {"completed": "完成 completed", "superseded": "被新会话取代 superseded",
                    "ended": "结束 ended"},
    "delivery": {"pending": "待发送 pending", "sent": "已送达 sent", "failed": "失败 failed"},
    "channel": {"inbox": "站内信 inbox", "email": "电子邮件 e-mail"},
    "read_via": {"inbox": "站内信 inbox", "email_link": "邮件链接 e-mail link"},
    "rejection": {"replayed": "重复或乱序 replayed", "out_of_range": "超出范围 out of range",
                  "jump": "跳跃 jump", "superseded": "会话已被取代 superseded",
                  "not_started": "会话未开始 not started"},
}


def local_time(value: datetime | None, with_seconds: bool = True) -> str:
    """A stored UTC time as Beijing time, to the second (evidence needs seconds)."""
    if value is None:
        return ""
    return value.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S" if with_seconds
                                               else "%Y-%m-%d %H:%M")


def font() -> CjkFont:
    """The configured (``EVIDENCE_FONT_PATH``) or installed CJK font, checked."""
    return find_font(current_app.config.get("EVIDENCE_FONT_PATH")
                     or os.environ.get("EVIDENCE_FONT_PATH") or None)


def material() -> SigningMaterial:
    return load_material(SigningSettings.from_config(current_app.config,
                                                     current_app.instance_path))


@dataclass
class ExportedPack:
    pdf: bytes
    pack_id: str
    filename: str
    ledger_seq: int
    file_sha256: str
    pack: EvidencePack


def new_pack_id(now: datetime) -> str:
    return f"{now.astimezone(SHANGHAI):%Y%m%d}-{secrets.token_hex(5).upper()}"


def export_pack(session: Session, employee: Employee, *, course_code: str | None,
                actor: User | None, generated_by: str, now: datetime | None = None
                ) -> ExportedPack:
    """Verify the ledger, gather, render, sign, then append the export's ledger entry
    (the caller commits). Raises ``PackScopeError``, ``FontError``, ``PdfRenderError`` or
    ``SigningError`` with a message that says what is wrong."""
    from lms.dbtypes import utcnow

    now = now or utcnow()
    cjk, signing = font(), material()
    chain = ledger.verify(session)  # first: its walk detaches the entries it reads
    pack = gather(session, employee, chain=chain, store=storage(), course_code=course_code)
    pack_id = new_pack_id(now)
    organisation = signing.cert.subject.rfc4514_string()
    html = render_template(
        "evidence/pack_pdf.html", pack=pack, pack_id=pack_id, labels=LABELS,
        t=local_time, generated_at=now, generated_by=generated_by, font_css=font_face_css(cjk),
        font_family=cjk.family,
        signer=signing, organisation=_organisation(signing), export_kind=EXPORT_KIND,
        base_url=current_app.config.get("PUBLIC_BASE_URL", ""))
    scope = pack.course.code if pack.course else "ALL"
    pdf = render_pdf(html, cjk, meta={
        "title": f"培训证据包 Training evidence pack {employee.employee_no} {scope}",
        "author": _organisation(signing),
        "subject": f"{employee.name} ({employee.employee_no})",
        "keywords": f"{PACK_KEYWORD}{pack_id}, employee:{employee.employee_no}, course:{scope}",
    })
    signed = sign_pdf(pdf, signing, reason=f"培训证据包 Evidence pack {pack_id}",
                      location=_organisation(signing))
    digest = hashlib.sha256(signed).hexdigest()
    entry = ledger.append(session, kind=EXPORT_KIND, subject=f"evidence_pack:{pack_id}",
                          actor_id=actor.id if actor else None, payload={
                              "pack_id": pack_id,
                              "employee_id": employee.id,
                              "employee_no": employee.employee_no,
                              "course_code": pack.course.code if pack.course else None,
                              "enrolments": [{"enrollment_id": e.row.id,
                                              "course_code": e.course.code,
                                              "version_number": e.version.number,
                                              "content_hash": e.version.content_hash,
                                              "cycle": e.row.cycle} for e in pack.enrolments],
                              "records": len(pack.records),
                              "record_problems": len(pack.problems),
                              "chain": {"ok": chain.ok, "count": chain.count,
                                        "head_hash": chain.head_hash,
                                        "broken_seq": chain.broken_seq,
                                        "reason": chain.reason},
                              "generated_at": now.isoformat(),
                              "generated_by": generated_by,
                              "file_sha256": digest,
                              "file_bytes": len(signed),
                              "signer": organisation,
                              "signer_sha256": signing.fingerprint,
                          })
    filename = (f"evidence-{employee.employee_no}-{scope}-{pack_id}.pdf"
                .replace("/", "_").replace(" ", "_"))
    return ExportedPack(signed, pack_id, filename, entry.seq, digest, pack)


def _organisation(signing: SigningMaterial) -> str:
    from cryptography.x509.oid import NameOID

    names = signing.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(names[0].value) if names else signing.cert.subject.rfc4514_string()


@dataclass
class PackVerdict:
    """A PDF checked: its signature, and the export entry its pack id names."""

    check: PackCheck
    entry: LedgerEntry | None = None
    payload: dict[str, Any] | None = None
    exporter: str | None = None

    @property
    def recorded(self) -> bool:
        """The ledger records the export of exactly these bytes, in an entry that still
        matches its own hash."""
        return (self.entry is not None and entry_hash(self.entry.fields()) == self.entry.hash
                and bool(self.payload)
                and self.payload.get("file_sha256") == self.check.file_sha256)

    @property
    def ok(self) -> bool:
        return self.check.ok and self.recorded


def recognise_pack(session: Session, pdf: bytes) -> PackVerdict:
    """Whether ``pdf`` is an untampered pack of ours: our signature over every byte, and
    a ledger entry recording the export of this very file."""
    verdict = PackVerdict(validate_pack(pdf, material()))
    pack_id = verdict.check.pack_id
    if not pack_id:
        return verdict
    entry = session.scalar(select(LedgerEntry).where(
        LedgerEntry.subject == f"evidence_pack:{pack_id}", LedgerEntry.kind == EXPORT_KIND))
    if entry is None:
        return verdict
    verdict.entry = entry
    try:
        verdict.payload = json.loads(entry.payload)
    except ValueError:
        verdict.payload = None
    if entry.actor_id is not None:
        user = session.get(User, entry.actor_id)
        verdict.exporter = f"{user.display_name} ({user.username})" if user else None
    if verdict.exporter is None and verdict.payload:
        verdict.exporter = verdict.payload.get("generated_by")
    return verdict
