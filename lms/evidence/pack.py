"""What an evidence pack holds: one employee's training records, gathered per enrolment
(a course version and the round, ``cycle``, it was learned in), each with the ledger
entry that sealed it, and each entry checked against its own hash.

The gathering reads a handful of queries per section whatever the number of rows
(enrolments, lessons, progress, sessions, rejected beats, readings, attempts,
signatures, assignments, their notices and deliveries, and every ledger entry in one
query), all for one employee, so the whole pack is built in memory. Nothing here
writes; ``lms.evidence.export`` does the one write (the export's own ledger entry).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, aliased, joinedload

from assessments.exam_taking import verify_attempt
from assessments.exams import AttemptAnswer, Exam, ExamAttempt, ExamAttemptGrant
from assessments.policies import PolicyDocument, PolicyReading, PolicyVersion, Signature
from assessments.signing import verify_signature
from courses import watch
from courses.media import MediaStorage
from courses.models import (
    Course,
    CourseVersion,
    Enrollment,
    Lesson,
    LessonProgress,
    MediaAsset,
    PlaybackSession,
    WatchRejection,
)
from lms.compliance.models import Assignment, AssignmentRule
from lms.field_errors import FieldErrors
from lms.ledger import LedgerEntry
from lms.ledger_core import ChainCheck, entry_hash
from lms.notify.models import Message, MessageDelivery
from lms.people.models import Department, Employee, Position, User

__all__ = ["EvidencePack", "PackScopeError", "gather", "pair_in_order", "reminder_stage"]

MAX_REJECTIONS_LISTED = 50  # per lesson and round; the counts by reason cover them all
OPTION_LABELS = "ABCDEFGH"


class PackScopeError(FieldErrors):
    """The pack asked for cannot be made (an unknown course code), named on its field."""


# --- what the template shows ---------------------------------------------------------------


@dataclass
class Record:
    """A ledger entry a record points at, and whether it still holds."""

    seq: int
    kind: str = ""
    subject: str = ""
    at: datetime | None = None
    hash: str | None = None  # as stored on the entry
    what: str = ""  # which record of the pack it seals
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Notice:
    id: int
    key: str  # the dedupe key ("assignment:<id>:<stage>:<due>", "signature:<code>")
    stage: str
    kind: str
    subject: str
    recipient: str
    created_at: datetime
    content_sha256: str
    read_at: datetime | None
    read_via: str | None
    read_ip: str | None
    deliveries: list[MessageDelivery] = field(default_factory=list)
    sent_record: Record | None = None
    read_record: Record | None = None


@dataclass
class AssignmentView:
    row: Assignment
    rule_name: str | None
    notices: list[Notice] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)


@dataclass
class OptionView:
    label: str
    text: str
    chosen: bool
    correct: bool


@dataclass
class QuestionView:
    position: int
    kind: str
    text: str
    options: list[OptionView]
    answered: bool
    right: bool


@dataclass
class AttemptView:
    row: ExamAttempt
    pass_score: int | None
    questions: list[QuestionView]
    record: Record | None
    problems: list[str]


@dataclass
class GrantView:
    """Extra attempts HR granted on an exam lesson (assessments.attempt_grants)."""

    row: ExamAttemptGrant
    record: Record | None


@dataclass
class SignatureView:
    row: Signature
    policy_name: str
    record: Record | None
    problems: list[str]
    receipt: Notice | None = None
    published: Record | None = None  # the policy version's publication, with its SHA-256


@dataclass
class SessionRow:
    """A viewing session; the active one's figures live on the progress row until it
    ends (heartbeats write only that row), so they are taken from there."""

    started_at: datetime
    ended_at: datetime | None
    ended_reason: str | None
    active: bool
    ip: str | None
    user_agent: str | None
    last_beat_at: datetime | None
    beats: int
    intervals: list[tuple[float, float]]
    credited_seconds: float


def session_rows(sessions: list[PlaybackSession], progress: LessonProgress | None
                 ) -> list[SessionRow]:
    out = []
    for s in sessions:
        active = progress is not None and progress.active_session_id == s.id \
            and s.ended_at is None
        text = progress.session_intervals if active else s.credited_intervals
        try:
            intervals = watch.loads(text or "[]")
        except ValueError:
            intervals = []
        out.append(SessionRow(
            s.started_at, s.ended_at, s.ended_reason, active, s.ip, s.user_agent,
            progress.last_beat_at if active else s.last_beat_at,
            progress.session_beats if active else s.beats_accepted, intervals,
            watch.total(intervals)))
    return out


@dataclass
class LessonView:
    lesson: Lesson
    duration: float | None = None
    progress: LessonProgress | None = None
    intervals: list[tuple[float, float]] = field(default_factory=list)
    coverage: float | None = None
    record: Record | None = None
    sessions: list[SessionRow] = field(default_factory=list)
    rejection_counts: list[tuple[str, int]] = field(default_factory=list)
    rejections: list[WatchRejection] = field(default_factory=list)
    readings: list[PolicyReading] = field(default_factory=list)
    attempts: list[AttemptView] = field(default_factory=list)
    grants: list[GrantView] = field(default_factory=list)
    signatures: list[SignatureView] = field(default_factory=list)

    @property
    def rejected_total(self) -> int:
        return sum(n for _reason, n in self.rejection_counts)


@dataclass
class EnrolmentView:
    row: Enrollment
    course: Course
    version: CourseVersion
    assignments: list[AssignmentView] = field(default_factory=list)
    lessons: list[LessonView] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)  # enrolment
    completion: Record | None = None
    published: Record | None = None  # the version's publication, with its content hash


@dataclass
class EvidencePack:
    employee: Employee
    user: User | None
    course: Course | None  # None: every course
    chain: ChainCheck
    enrolments: list[EnrolmentView] = field(default_factory=list)
    unenrolled: list[AssignmentView] = field(default_factory=list)  # no round started yet
    records: list[Record] = field(default_factory=list)  # every entry, by sequence

    @property
    def problems(self) -> list[str]:
        out = [f"#{r.seq} {r.what}: {p}" for r in self.records for p in r.problems]
        for e in self.enrolments:
            for lesson in e.lessons:
                out += [f"{e.course.code} v{e.version.number}: {p}" for a in lesson.attempts
                        for p in a.problems]
                out += [f"{e.course.code} v{e.version.number}: {p}" for s in lesson.signatures
                        for p in s.problems]
        return list(dict.fromkeys(out))

    @property
    def intact(self) -> bool:
        return self.chain.ok and not self.problems


# --- pure helpers -------------------------------------------------------------------------


def reminder_stage(dedupe_key: str | None) -> str:
    """The schedule stage of an assignment message from its dedupe key
    ("assignment:<id>:<stage>:<due>" → "<stage>")."""
    parts = (dedupe_key or "").split(":")
    return parts[2] if len(parts) >= 3 and parts[0] == "assignment" else ""


def pair_in_order(rows: list[Any], entries: list[Any]) -> list[tuple[Any, Any | None]]:
    """Match records to the batch ledger entries that name them, both in creation order
    (the k-th assignment of a person by a rule on a version was recorded by the k-th
    entry of that rule naming them); rows left over get None."""
    return [(row, entries[i] if i < len(entries) else None) for i, row in enumerate(rows)]


def question_views(served: list[dict[str, Any]], answers: dict[int, list[int]]
                   ) -> list[QuestionView]:
    """The questions of an attempt as served (order and option order as shown), with the
    learner's choices and the key."""
    out = []
    for q in served:
        chosen = set(answers.get(int(q["position"]), []))
        options = [OptionView(OPTION_LABELS[i] if i < len(OPTION_LABELS) else str(i + 1),
                              str(o.get("text", "")), i in chosen, bool(o.get("correct")))
                   for i, o in enumerate(q.get("options", []))]
        key = {i for i, o in enumerate(options) if o.correct}
        out.append(QuestionView(int(q["position"]), str(q.get("kind", "")),
                                str(q.get("text", "")), options, bool(chosen), chosen == key))
    return out


def _json(text: str | None) -> Any:
    try:
        return json.loads(text or "null")
    except ValueError:
        return None


def _like_literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# --- gathering ----------------------------------------------------------------------------


class _Ledger:
    """Every ledger entry the pack refers to, loaded in one query, each checked once."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.entries: dict[int, LedgerEntry] = {}
        self.records: dict[int, Record] = {}

    def load(self, *, seqs: set[int], subjects: set[str], own_subjects: set[str],
             user_id: int | None, batch_subjects: set[str], employee_no: str,
             batches: set[str]) -> None:
        """One query: entries by sequence (rows that keep it), by subject (an assignment,
        a message), the person's own entries on their versions, the publication of those
        versions, batch entries naming the employee, and the sending of their notices."""
        e = LedgerEntry
        conditions = []
        if own_subjects:
            conditions.append(and_(e.subject.in_(sorted(own_subjects)),
                                   e.kind == "course.version_published"))
        if seqs:
            conditions.append(e.seq.in_(sorted(seqs)))
        if subjects:
            conditions.append(e.subject.in_(sorted(subjects)))
        if own_subjects and user_id is not None:
            conditions.append(and_(e.subject.in_(sorted(own_subjects)), e.actor_id == user_id))
        if batch_subjects:
            named = _like_literal(json.dumps(employee_no, ensure_ascii=False))
            conditions.append(and_(e.subject.in_(sorted(batch_subjects)),
                                   e.payload.like(f"%{named}%", escape="\\")))
        if batches:
            conditions.append(and_(e.kind == "notify.sent", or_(*[
                e.payload.like(f'%"batch":"{_like_literal(b)}"%', escape="\\")
                for b in sorted(batches)])))
        if not conditions:
            return
        for entry in self.session.scalars(select(e).where(or_(*conditions)).order_by(e.seq)):
            self.entries[entry.seq] = entry

    def record(self, seq: int | None, what: str, *, stored_hash: str | None = None
               ) -> Record | None:
        """The checked record of entry ``seq`` (``stored_hash``: the copy a row keeps)."""
        if seq is None:
            return None
        if seq in self.records:
            rec = self.records[seq]
            if what and what not in rec.what.split(" · "):
                rec.what = f"{rec.what} · {what}" if rec.what else what
        else:
            entry = self.entries.get(seq)
            rec = Record(seq, what=what)
            if entry is None:
                rec.problems.append("账本中没有此条目 the ledger has no such entry")
            else:
                rec.kind, rec.subject, rec.at, rec.hash = (entry.kind, entry.subject,
                                                           entry.at, entry.hash)
                if entry_hash(entry.fields()) != entry.hash:
                    rec.problems.append("条目内容与其哈希不符（已被改动） the entry's content "
                                        "does not match its hash (altered)")
            self.records[seq] = rec
        differs = ("记录中保存的哈希与账本条目不同 the record keeps another hash than its "
                   "ledger entry")
        if stored_hash is not None and rec.hash is not None and stored_hash != rec.hash \
                and differs not in rec.problems:
            rec.problems.append(differs)
        return rec


def _employee(session: Session, employee_id: int) -> tuple[Employee, User | None]:
    manager = aliased(Employee)
    row = session.execute(
        select(Employee, Department, Position, manager, User)
        .join(Department, Department.id == Employee.department_id)
        .outerjoin(Position, Position.id == Employee.position_id)
        .outerjoin(manager, manager.id == Employee.manager_id)
        .outerjoin(User, User.employee_id == Employee.id)
        .where(Employee.id == employee_id)).one()
    return row[0], row[4]


def gather(session: Session, employee: Employee, *, chain: ChainCheck, store: MediaStorage,
           course_code: str | None = None) -> EvidencePack:
    """The pack of ``employee`` (every course, or only ``course_code``). ``chain`` is the
    result of ``ledger.verify`` run just before (it must run first: its walk detaches
    the entries it reads from the session)."""
    employee, user = _employee(session, employee.id)
    course = None
    if course_code:
        course = session.scalar(select(Course).where(Course.code == course_code.strip()))
        if course is None:
            raise PackScopeError.one(_l("No course has the code %(code)s.",
                                        code=course_code.strip()), "course")
    pack = EvidencePack(employee=employee, user=user, course=course, chain=chain)
    if user is None:
        return pack
    return _Builder(session, pack, store).build()


class _Builder:
    def __init__(self, session: Session, pack: EvidencePack, store: MediaStorage) -> None:
        self.session, self.pack, self.store = session, pack, store
        self.user_id = pack.user.id if pack.user else None
        self.ledger = _Ledger(session)
        self.keep: list[Any] = []  # ORM rows verify_* look up by identity (kept alive)

    # -- queries, one per section --------------------------------------------------------

    def _enrolments(self) -> list[EnrolmentView]:
        stmt = (select(Enrollment, CourseVersion, Course)
                .join(CourseVersion, CourseVersion.id == Enrollment.version_id)
                .join(Course, Course.id == CourseVersion.course_id)
                .where(Enrollment.user_id == self.user_id)
                .order_by(Course.code, CourseVersion.number, Enrollment.cycle))
        if self.pack.course is not None:
            stmt = stmt.where(Course.id == self.pack.course.id)
        return [EnrolmentView(row=e, course=c, version=v)
                for e, v, c in self.session.execute(stmt)]

    def _assignments(self) -> list[tuple[Assignment, str | None]]:
        stmt = (select(Assignment, AssignmentRule.name)
                .outerjoin(AssignmentRule, AssignmentRule.id == Assignment.rule_id)
                .where(Assignment.employee_id == self.pack.employee.id)
                .order_by(Assignment.course_id, Assignment.cycle, Assignment.id))
        if self.pack.course is not None:
            stmt = stmt.where(Assignment.course_id == self.pack.course.id)
        return [(a, name) for a, name in self.session.execute(stmt)]

    def _messages(self, assignment_ids: list[int], receipt_keys: list[str]
                  ) -> tuple[list[Message], dict[int, list[MessageDelivery]], dict[int, str]]:
        keys = [Message.dedupe_key.like(f"assignment:{i}:%") for i in assignment_ids]
        if receipt_keys:
            keys.append(and_(Message.recipient_user_id == self.user_id,
                             Message.dedupe_key.in_(receipt_keys)))
        if not keys:
            return [], {}, {}
        messages = list(self.session.scalars(select(Message).where(or_(*keys))
                                             .order_by(Message.created_at, Message.id)))
        ids = [m.id for m in messages]
        deliveries: dict[int, list[MessageDelivery]] = defaultdict(list)
        names: dict[int, str] = {}
        if ids:
            for d in self.session.scalars(select(MessageDelivery).where(
                    MessageDelivery.message_id.in_(ids)).order_by(MessageDelivery.id)):
                deliveries[d.message_id].append(d)
            recipients = {m.recipient_user_id for m in messages}
            for uid, username, display in self.session.execute(
                    select(User.id, User.username, User.display_name)
                    .where(User.id.in_(recipients))):
                names[uid] = f"{display} ({username})"
        return messages, deliveries, names

    def _lessons(self, version_ids: list[int]) -> dict[int, list[tuple[Lesson, float | None]]]:
        out: dict[int, list[tuple[Lesson, float | None]]] = defaultdict(list)
        for lesson, duration in self.session.execute(
                select(Lesson, MediaAsset.duration_seconds)
                .outerjoin(MediaAsset, MediaAsset.id == Lesson.media_id)
                .where(Lesson.version_id.in_(version_ids))
                .order_by(Lesson.version_id, Lesson.position)):
            out[lesson.version_id].append((lesson, duration))
        return out

    def _by_enrolment_lesson(self, model: Any, ids: list[int], order: Any) -> dict:
        out: dict[tuple[int, int], list[Any]] = defaultdict(list)
        for row in self.session.scalars(select(model).where(model.enrollment_id.in_(ids))
                                        .order_by(order)):
            out[(row.enrollment_id, row.lesson_id)].append(row)
        return out

    def _rejections(self, ids: list[int]) -> tuple[dict, dict]:
        r = WatchRejection
        counts: dict[tuple[int, int], list[tuple[str, int]]] = defaultdict(list)
        for eid, lid, reason, n in self.session.execute(
                select(r.enrollment_id, r.lesson_id, r.reason, func.count())
                .where(r.enrollment_id.in_(ids))
                .group_by(r.enrollment_id, r.lesson_id, r.reason)
                .order_by(r.enrollment_id, r.lesson_id, r.reason)):
            counts[(eid, lid)].append((reason, n))
        rank = func.row_number().over(partition_by=(r.enrollment_id, r.lesson_id),
                                      order_by=(r.received_at, r.id)).label("rank")
        ranked = select(r.id, rank).where(r.enrollment_id.in_(ids)).subquery()
        listed: dict[tuple[int, int], list[WatchRejection]] = defaultdict(list)
        for row in self.session.scalars(
                select(r).join(ranked, ranked.c.id == r.id)
                .where(ranked.c.rank <= MAX_REJECTIONS_LISTED)
                .order_by(r.received_at, r.id)):
            listed[(row.enrollment_id, row.lesson_id)].append(row)
        return counts, listed

    def _open_answers(self, attempts: list[ExamAttempt]) -> dict[int, dict[int, list[int]]]:
        open_ids = [a.id for a in attempts if a.answers is None]
        out: dict[int, dict[int, list[int]]] = defaultdict(dict)
        if open_ids:
            for aid, position, choice in self.session.execute(
                    select(AttemptAnswer.attempt_id, AttemptAnswer.position, AttemptAnswer.choice)
                    .where(AttemptAnswer.attempt_id.in_(open_ids))):
                out[aid][position] = _json(choice) or []
        return out

    # -- assembly --------------------------------------------------------------------------

    def build(self) -> EvidencePack:
        pack = self.pack
        enrolments = self._enrolments()
        enrolment_ids = [e.row.id for e in enrolments]
        assignments = self._assignments()
        lessons = self._lessons(sorted({e.version.id for e in enrolments}))
        progress = self._by_enrolment_lesson(LessonProgress, enrolment_ids, LessonProgress.id)
        sessions = self._by_enrolment_lesson(PlaybackSession, enrolment_ids,
                                             PlaybackSession.started_at)
        readings = self._by_enrolment_lesson(PolicyReading, enrolment_ids,
                                             PolicyReading.served_at)
        rejection_counts, rejections = self._rejections(enrolment_ids)
        attempts = list(self.session.scalars(
            select(ExamAttempt).where(ExamAttempt.enrollment_id.in_(enrolment_ids))
            .order_by(ExamAttempt.lesson_id, ExamAttempt.number)))
        grants = list(self.session.scalars(
            select(ExamAttemptGrant).where(ExamAttemptGrant.enrollment_id.in_(enrolment_ids))
            .options(joinedload(ExamAttemptGrant.granted_by)).order_by(ExamAttemptGrant.id)))
        exams = {x.id: x for x in self.session.scalars(
            select(Exam).where(Exam.id.in_({a.exam_id for a in attempts}
                                           | {g.exam_id for g in grants})))}
        open_answers = self._open_answers(attempts)
        signatures = list(self.session.execute(
            select(Signature, PolicyVersion, PolicyDocument.name)
            .join(PolicyVersion, PolicyVersion.id == Signature.policy_version_id)
            .join(PolicyDocument, PolicyDocument.id == PolicyVersion.document_id)
            .where(Signature.enrollment_id.in_(enrolment_ids)).order_by(Signature.signed_at)))
        messages, deliveries, names = self._messages(
            [a.id for a, _n in assignments],
            [f"signature:{s.verification_code}" for s, _v, _n in signatures])
        self.keep += [*exams.values(), *(v for _s, v, _n in signatures)]

        seqs = {p.completion_ledger_seq for rows in progress.values() for p in rows
                if p.completion_ledger_seq}
        seqs |= {a.ledger_seq for a in attempts if a.ledger_seq}
        seqs |= {s.ledger_seq for s, _v, _n in signatures}
        seqs |= {v.publish_ledger_seq for _s, v, _n in signatures if v.publish_ledger_seq}
        self.ledger.load(
            seqs=seqs,
            subjects={f"assignment:{a.id}" for a, _n in assignments}
            | {f"message:{m.id}" for m in messages}
            | {f"exam_attempt_grant:{g.id}" for g in grants},
            own_subjects={f"course_version:{e.version.id}" for e in enrolments},
            user_id=self.user_id,
            batch_subjects={f"rule:{a.rule_id}" for a, _n in assignments if a.rule_id}
            | {f"course:{a.course_id}" for a, _n in assignments}
            | {f"course_version:{e.version.id}" for e in enrolments},
            employee_no=pack.employee.employee_no,
            batches={m.batch for m in messages})

        notices = self._notices(messages, deliveries, names)
        views = self._assignment_views(assignments, notices)
        by_enrolment: dict[int | None, list[AssignmentView]] = defaultdict(list)
        for view in views:
            by_enrolment[view.row.enrollment_id].append(view)
        current = {(e.row.version_id): e.row.id for e in enrolments
                   if e.row.superseded_at is None}
        for view in by_enrolment.pop(None, []):  # not linked: the version's current round
            target = current.get(view.row.version_id)
            (by_enrolment[target] if target else pack.unenrolled).append(view)

        receipts = {n.id: n for n in notices}
        receipt_by_key = {m.dedupe_key: receipts[m.id] for m in messages
                          if (m.dedupe_key or "").startswith("signature:")}
        attempts_by = defaultdict(list)
        for a in attempts:
            attempts_by[(a.enrollment_id, a.lesson_id)].append(a)
        grant_seqs = {entry.subject: seq for seq, entry in self.ledger.entries.items()
                      if entry.kind == "exam.attempts_granted"}
        grants_by = defaultdict(list)
        for g in grants:
            record = self.ledger.record(grant_seqs.get(f"exam_attempt_grant:{g.id}"),
                                        f"考试机会增加 exam attempts granted (+{g.extra})")
            grants_by[(g.enrollment_id, exams[g.exam_id].lesson_id)].append(
                GrantView(g, record))
        signatures_by = defaultdict(list)
        for s, v, name in signatures:
            signatures_by[(s.enrollment_id, s.lesson_id)].append((s, v, name))

        pack.enrolments = enrolments
        for e in enrolments:
            eid = e.row.id
            e.assignments = by_enrolment.get(eid, [])
            for lesson, duration in lessons.get(e.version.id, []):
                key = (eid, lesson.id)
                view = LessonView(lesson=lesson, duration=duration,
                                  rejection_counts=rejection_counts.get(key, []),
                                  rejections=rejections.get(key, []),
                                  readings=readings.get(key, []))
                rows = progress.get(key, [])
                if rows:
                    self._progress(e, view, rows[0])
                view.sessions = session_rows(sessions.get(key, []), view.progress)
                view.attempts = [self._attempt(a, exams, open_answers)
                                 for a in attempts_by.get(key, [])]
                view.grants = grants_by.get(key, [])
                view.signatures = [self._signature(s, v, name, receipt_by_key)
                                   for s, v, name in signatures_by.get(key, [])]
                e.lessons.append(view)
            self._enrolment_records(e)
        pack.records = [self.ledger.records[s] for s in sorted(self.ledger.records)]
        return pack

    def _progress(self, e: EnrolmentView, view: LessonView, row: LessonProgress) -> None:
        view.progress = row
        view.intervals = watch.loads(row.intervals) if row.intervals else []
        if view.duration:
            view.coverage = watch.coverage(view.intervals, view.duration)
        what = f"{e.course.code} v{e.version.number}/{e.row.cycle} " \
               f"第{view.lesson.position}课 lesson {view.lesson.position} 完成 completed"
        view.record = self.ledger.record(row.completion_ledger_seq, what)

    def _attempt(self, a: ExamAttempt, exams: dict[int, Exam],
                 open_answers: dict[int, dict[int, list[int]]]) -> AttemptView:
        answers = ({int(k): v for k, v in (_json(a.answers) or {}).items()}
                   if a.answers is not None else open_answers.get(a.id, {}))
        served = _json(a.served) or []
        exam = exams.get(a.exam_id)
        record = self.ledger.record(a.ledger_seq, f"考试 exam attempt {a.number} (#{a.id})",
                                    stored_hash=a.ledger_hash) if a.ledger_seq else None
        problems = verify_attempt(self.session, a) if a.submitted_at is not None else []
        return AttemptView(a, exam.pass_score if exam else None,
                           question_views(served, answers), record, problems)

    def _signature(self, s: Signature, version: PolicyVersion, policy_name: str,
                   receipts: dict[str | None, Notice]) -> SignatureView:
        record = self.ledger.record(s.ledger_seq, f"签名 signature {s.verification_code}",
                                    stored_hash=s.ledger_hash)
        problems = verify_signature(self.session, s, self.store).problems
        published = self.ledger.record(
            version.publish_ledger_seq, f"《{policy_name}》第{version.number}版发布 policy "
                                        "version published")
        return SignatureView(s, policy_name, record, [str(p) for p in problems],
                             receipts.get(f"signature:{s.verification_code}"), published)

    def _notices(self, messages: list[Message], deliveries: dict[int, list[MessageDelivery]],
                 names: dict[int, str]) -> list[Notice]:
        sent_by_batch: dict[str, LedgerEntry] = {}
        for entry in self.ledger.entries.values():
            if entry.kind == "notify.sent":
                batch = (_json(entry.payload) or {}).get("batch")
                if batch:
                    sent_by_batch[batch] = entry
        read_by_message = {int(x.subject.split(":", 1)[1]): x
                           for x in self.ledger.entries.values()
                           if x.kind == "notify.read" and x.subject.startswith("message:")}
        out = []
        for m in messages:
            notice = Notice(m.id, m.dedupe_key or "", reminder_stage(m.dedupe_key) or m.kind,
                            m.kind, m.subject,
                            names.get(m.recipient_user_id, str(m.recipient_user_id)),
                            m.created_at, m.content_sha256, m.read_at, m.read_via, m.read_ip,
                            deliveries.get(m.id, []))
            sent = sent_by_batch.get(m.batch)
            if sent is not None:
                notice.sent_record = self.ledger.record(sent.seq, f"通知发送 message {m.id} sent")
            read = read_by_message.get(m.id)
            if read is not None:
                notice.read_record = self.ledger.record(read.seq, f"通知已读 message {m.id} read")
            out.append(notice)
        return out

    def _assignment_views(self, assignments: list[tuple[Assignment, str | None]],
                          notices: list[Notice]) -> list[AssignmentView]:
        entries = sorted(self.ledger.entries.values(), key=lambda x: x.seq)
        views = [AssignmentView(a, rule_name) for a, rule_name in assignments]
        for view in views:  # notices name the assignment in their dedupe key
            prefix = f"assignment:{view.row.id}:"
            view.notices = [n for n in notices if n.key.startswith(prefix)]
        # the batch entries that assigned them (a rule run, HR's hand assignment), in order
        groups: dict[tuple[str, int], list[AssignmentView]] = defaultdict(list)
        for view in views:
            subject = (f"rule:{view.row.rule_id}" if view.row.rule_id
                       else f"course:{view.row.course_id}")
            groups[(subject, view.row.version_id)].append(view)
        for (subject, version_id), members in groups.items():
            named = [x for x in entries if x.subject == subject and x.kind.startswith(
                "assignment.") and self._names_employee(x, version_id)]
            for view, entry in pair_in_order(sorted(members, key=lambda v: v.row.id), named):
                if entry is not None:
                    view.records.append(self.ledger.record(
                        entry.seq, f"分配 assignment #{view.row.id}"))
        for view in views:  # extensions and waivers name the assignment itself
            for entry in entries:
                if entry.subject == f"assignment:{view.row.id}":
                    view.records.append(self.ledger.record(
                        entry.seq, f"分配变更 assignment #{view.row.id} {entry.kind}"))
        return views

    def _names_employee(self, entry: LedgerEntry, version_id: int | None) -> bool:
        payload = _json(entry.payload)
        if not isinstance(payload, dict):
            return False
        if version_id is not None and payload.get("version_id") not in (None, version_id):
            return False
        return self.pack.employee.employee_no in (payload.get("employee_nos") or [])

    def _enrolment_records(self, e: EnrolmentView) -> None:
        subject = f"course_version:{e.version.id}"
        entries = [x for x in sorted(self.ledger.entries.values(), key=lambda x: x.seq)
                   if x.subject == subject]
        for x in entries:
            if x.kind == "course.version_published":
                e.published = self.ledger.record(
                    x.seq, f"{e.course.code} v{e.version.number} 版本发布 version published")
                payload = _json(x.payload)
                if isinstance(payload, dict) and payload.get("content_hash") \
                        != e.version.content_hash:
                    e.published.problems.append("版本内容哈希与发布记录不同 the version's "
                                                "content hash differs from its publication")
            payload = _json(x.payload) if x.kind == "course.completed" else None
            if isinstance(payload, dict) and x.actor_id == self.user_id and (
                    payload.get("enrollment_id") == e.row.id
                    or (payload.get("enrollment_id") is None and e.row.completed_at is not None
                        and payload.get("completed_at") == e.row.completed_at.isoformat())):
                e.completion = self.ledger.record(
                    x.seq, f"{e.course.code} v{e.version.number}/{e.row.cycle} 课程完成 "
                           "course completed")
        if e.row.source in ("self", "manual"):
            kind = f"enrolment.{e.row.source}"
            named = [x for x in entries if x.kind == kind and (
                x.actor_id == self.user_id if kind == "enrolment.self"
                else self._names_employee(x, None))]
            same = [o for o in self._all_enrolments_of(e) if o.source == e.row.source]
            for row, entry in pair_in_order(same, named):
                if row.id == e.row.id and entry is not None:
                    e.records.append(self.ledger.record(
                        entry.seq, f"{e.course.code} v{e.version.number}/{e.row.cycle} "
                                   "报名 enrolment"))

    def _all_enrolments_of(self, e: EnrolmentView) -> list[Enrollment]:
        return sorted((x.row for x in self.pack.enrolments if x.version.id == e.version.id),
                      key=lambda r: (r.cycle, r.id))
