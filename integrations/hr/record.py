"""One employee's training record for the HR capability file (能力档案), read-only.

The same records the evidence pack (``lms.evidence.pack``) shows, reduced to what an HR
system files: per round of a course version the obligations (assignments), the exam
results, the policy signatures and the ledger entry of the completion, each with the
sequence number and hash a court or auditor can check with ``verify``. A fixed handful
of queries whatever the number of courses. No ID number appears anywhere in it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from assessments.exams import Exam, ExamAttempt
from assessments.policies import PolicyDocument, Signature
from courses.models import Course, CourseVersion, Enrollment, Lesson
from integrations.hr.schemas import (
    AssignmentOut,
    CodeName,
    CourseRef,
    EmployeeOut,
    ExamOut,
    LedgerRef,
    RoundOut,
    SignatureOut,
    TrainingRecord,
    VersionRef,
)
from lms.compliance.engine import local_date
from lms.compliance.models import Assignment
from lms.ledger import LedgerEntry
from lms.people.csv_import import STATUS_LABELS
from lms.people.models import Department, Employee, Position, User

__all__ = ["training_record"]


def _employee(session: Session, employee_no: str):
    return session.execute(
        select(Employee, Department, Position, User)
        .join(Department, Department.id == Employee.department_id)
        .outerjoin(Position, Position.id == Employee.position_id)
        .outerjoin(User, User.employee_id == Employee.id)
        .where(Employee.employee_no == employee_no)).first()


def _completions(session: Session, user_id: int, version_ids: set[int]
                 ) -> dict[int, LedgerRef]:
    """The ``course.completed`` entry of each enrolment (by its id in the payload)."""
    if not version_ids:
        return {}
    out: dict[int, LedgerRef] = {}
    for seq, hash_, payload in session.execute(
            select(LedgerEntry.seq, LedgerEntry.hash, LedgerEntry.payload)
            .where(LedgerEntry.kind == "course.completed", LedgerEntry.actor_id == user_id,
                   LedgerEntry.subject.in_(sorted(f"course_version:{v}" for v in version_ids)))
            .order_by(LedgerEntry.seq)):
        try:
            enrolment_id = json.loads(payload or "{}").get("enrollment_id")
        except (ValueError, AttributeError):
            continue
        if isinstance(enrolment_id, int):
            out.setdefault(enrolment_id, LedgerRef(seq=seq, hash=hash_))
    return out


def _exams(session: Session, version_ids: set[int], enrolment_ids: list[int]
           ) -> tuple[dict[int, list[tuple[int, str, int]]], dict[tuple[int, int], tuple]]:
    """Exam lessons per version, and submitted attempts per (enrolment, lesson): count,
    best score, passed at least once."""
    lessons: dict[int, list[tuple[int, str, int]]] = defaultdict(list)
    for lesson_id, version_id, title, pass_score in session.execute(
            select(Lesson.id, Lesson.version_id, Lesson.title, Exam.pass_score)
            .join(Exam, Exam.lesson_id == Lesson.id)
            .where(Lesson.version_id.in_(sorted(version_ids))).order_by(Lesson.position)):
        lessons[version_id].append((lesson_id, title, pass_score))
    results: dict[tuple[int, int], tuple] = {}
    if enrolment_ids:
        a = ExamAttempt
        for enrolment_id, lesson_id, count, best, passed in session.execute(
                select(a.enrollment_id, a.lesson_id, func.count(), func.max(a.score),
                       func.max(case((a.passed.is_(True), 1), else_=0)))
                .where(a.enrollment_id.in_(enrolment_ids), a.submitted_at.is_not(None))
                .group_by(a.enrollment_id, a.lesson_id)):
            results[(enrolment_id, lesson_id)] = (count, best, bool(passed))
    return lessons, results


def training_record(session: Session, employee_no: str, *, now: datetime
                    ) -> TrainingRecord | None:
    """The record of ``employee_no``, or None when no employee has that number."""
    found = _employee(session, employee_no)
    if found is None:
        return None
    employee, department, position, user = found
    today = local_date(now)

    assignments = session.execute(
        select(Assignment, Course, CourseVersion)
        .join(Course, Course.id == Assignment.course_id)
        .join(CourseVersion, CourseVersion.id == Assignment.version_id)
        .where(Assignment.employee_id == employee.id)
        .order_by(Assignment.cycle, Assignment.id)).all()
    enrolments = [] if user is None else session.execute(
        select(Enrollment, CourseVersion, Course)
        .join(CourseVersion, CourseVersion.id == Enrollment.version_id)
        .join(Course, Course.id == CourseVersion.course_id)
        .where(Enrollment.user_id == user.id)
        .order_by(Course.code, CourseVersion.number, Enrollment.cycle)).all()
    enrolment_ids = [e.id for e, _v, _c in enrolments]
    version_ids = {v.id for _e, v, _c in enrolments} | {v.id for _a, _c, v in assignments}
    completions = _completions(session, user.id, version_ids) if user is not None else {}
    exam_lessons, exam_results = _exams(session, version_ids, enrolment_ids)
    signatures: dict[int, list[SignatureOut]] = defaultdict(list)
    if enrolment_ids:
        for s, policy in session.execute(
                select(Signature, PolicyDocument.name)
                .join(PolicyDocument, PolicyDocument.id == Signature.policy_document_id)
                .where(Signature.enrollment_id.in_(enrolment_ids))
                .order_by(Signature.signed_at, Signature.id)):
            signatures[s.enrollment_id].append(SignatureOut(
                policy_title=policy, policy_version=s.version_number,
                document_sha256=s.document_sha256, signed_at=s.signed_at,
                verification_code=s.verification_code,
                record=LedgerRef(seq=s.ledger_seq, hash=s.ledger_hash)))

    def round_of(course: Course, version: CourseVersion, enrolment: Enrollment | None
                 ) -> RoundOut:
        exams = []
        for lesson_id, title, pass_score in exam_lessons.get(version.id, []):
            count, best, passed = exam_results.get(
                (enrolment.id, lesson_id), (0, None, False)) if enrolment else (0, None, False)
            exams.append(ExamOut(lesson=title, pass_score=pass_score, attempts=count,
                                 best_score=best, passed=passed))
        return RoundOut(
            course=CourseRef(code=course.code, title=course.title_zh, title_en=course.title_en),
            version=VersionRef(number=version.number, content_hash=version.content_hash),
            cycle=enrolment.cycle if enrolment else None,
            enrolled_at=enrolment.created_at if enrolment else None,
            completed_at=enrolment.completed_at if enrolment else None,
            completion_record=completions.get(enrolment.id) if enrolment else None,
            assignments=[], exams=exams,
            signatures=signatures.get(enrolment.id, []) if enrolment else [])

    rounds = {e.id: round_of(c, v, e) for e, v, c in enrolments}
    current = {e.version_id: e.id for e, _v, _c in enrolments if e.superseded_at is None}
    orphans: dict[int, RoundOut] = {}  # by version: assigned, learning not begun
    for a, course, version in assignments:
        view = AssignmentOut(
            source=a.source, status=a.status, cycle=a.cycle, assigned_at=a.assigned_at,
            due_date=a.due_date, completed_at=a.completed_at,
            completed_date=local_date(a.completed_at) if a.completed_at else None,
            overdue=a.status == "open" and a.due_date < today)
        target = a.enrollment_id if a.enrollment_id in rounds else current.get(a.version_id)
        if target is not None:
            rounds[target].assignments.append(view)
        else:
            orphans.setdefault(version.id, round_of(course, version, None)).assignments.append(
                view)

    ordered = sorted([*rounds.values(), *orphans.values()],
                     key=lambda r: (r.course.code, r.version.number, r.cycle or 0))
    return TrainingRecord(
        employee=EmployeeOut(
            employee_no=employee.employee_no, name=employee.name,
            department=CodeName(code=department.code, name=department.name),
            position=CodeName(code=position.code, name=position.name) if position else None,
            status=employee.status, status_label=STATUS_LABELS.get(employee.status, ""),
            hire_date=employee.hire_date),
        as_of=today, generated_at=now, rounds=ordered)
