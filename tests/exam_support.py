"""Factories for exam tests (import as ``from exam_support import ...``): a question
bank built with the ORM, and a published course version with an exam lesson built
through the real authoring services (so publishing really freezes the pool)."""

from __future__ import annotations

import json
from pathlib import Path

from assessments import exam_authoring
from assessments.exams import ExamAttempt, Question, QuestionBank, QuestionOption
from courses.authoring import publish_version
from courses.media import ingest_video
from courses.models import Course, CourseVersion, Enrollment, Lesson
from lms.extensions import db

DEMO_WEBM = Path(__file__).resolve().parents[1] / "courses" / "demo_media" / "demo.webm"


def make_bank(name: str = "绩效管理题库", *, single: int = 6, multiple: int = 2,
              true_false: int = 2, topic: str = "performance") -> QuestionBank:
    """A bank whose correct options are recognisable only from the database: every
    option text is "选项 n" and the explanation "解析：第 k 题" (tests search for these)."""
    bank = QuestionBank(name=name, description="")
    db.session.add(bank)
    n = 0
    for kind, count in (("single", single), ("multiple", multiple), ("true_false", true_false)):
        for _ in range(count):
            n += 1
            q = Question(bank=bank, kind=kind, topic=topic, text=f"第{n}题：{kind} 题干",
                         explanation=f"解析：第{n}题的依据")
            if kind == "true_false":
                q.options = [QuestionOption(position=1, text="正确", is_correct=n % 2 == 0),
                             QuestionOption(position=2, text="错误", is_correct=n % 2 == 1)]
            else:
                correct = {1} if kind == "single" else {1, 3}
                q.options = [QuestionOption(position=p, text=f"第{n}题 选项{p}",
                                            is_correct=p in correct) for p in range(1, 5)]
            db.session.add(q)
    db.session.commit()
    return bank


def make_exam_course(*, bank: QuestionBank, code: str = "RISK-PERF-01", video: bool = False,
                     selection: str = "random", per_topic: dict[str, int] | None = None,
                     fixed: list[int] | None = None, pass_score: int = 80, max_attempts: int = 3,
                     time_limit_minutes: int = 20, review: str = "score",
                     shuffle_options: bool = True) -> CourseVersion:
    """A published course version: [video lesson,] exam lesson. Published with the real
    ``publish_version`` (which freezes the exam's pool and pins it in the content hash)."""
    course = Course(code=code, title_zh="绩效管理制度培训", risk_topic="performance")
    version = CourseVersion(course=course, number=1, status="draft")
    db.session.add_all([course, version])
    db.session.flush()
    if video:
        with DEMO_WEBM.open("rb") as fh:
            media = ingest_video(db.session, fh, "demo.webm", uploaded_by_id=None,
                                 max_bytes=10 * 1024 * 1024)
        db.session.add(Lesson(version=version, position=1, kind="video", title="绩效制度讲解",
                              media=media))
        db.session.flush()
    settings = exam_authoring.ExamSettings(
        bank_id=bank.id, selection=selection,
        fixed_question_ids=tuple(fixed or ()),
        per_topic=tuple(sorted((per_topic or {"performance": 5}).items())),
        pass_score=pass_score, max_attempts=max_attempts,
        time_limit_minutes=time_limit_minutes, review=review, shuffle_options=shuffle_options)
    exam_authoring.add_exam_lesson(db.session, version, title="绩效制度测验", settings=settings)
    publish_version(db.session, version, actor_id=None)
    db.session.commit()
    return version


def enrol(user, version: CourseVersion) -> None:
    db.session.add(Enrollment(user_id=user.id, version_id=version.id, source="manual"))
    db.session.commit()


def exam_lesson(version: CourseVersion) -> Lesson:
    return next(lesson for lesson in version.lessons if lesson.kind == "exam")


def served(attempt: ExamAttempt) -> list[dict]:
    """The server-side snapshot (with the key) of an attempt."""
    return json.loads(attempt.served)


def correct_indices(question: dict) -> list[int]:
    return [i for i, option in enumerate(question["options"]) if option["correct"]]
