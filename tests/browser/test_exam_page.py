"""The exam page's script in a real Chromium: an answer is saved as soon as it is
chosen, the countdown follows the server's deadline, and the form submits itself when
the time is up (scored with the saved answer)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from exam_support import enrol, exam_lesson, make_bank, make_exam_course
from sqlalchemy import func, select
from support import PASSWORD

from assessments import exam_taking
from assessments.exams import AttemptAnswer, ExamAttempt
from lms.dbtypes import utcnow
from lms.extensions import db

pytestmark = pytest.mark.browser


class ShiftedClock:
    """The real time moved by ``offset`` (the server runs in this process)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self):
        return utcnow() + self.offset


def test_answers_autosave_and_the_exam_submits_itself_at_the_deadline(
        page, people, monkeypatch):
    clock = ShiftedClock()
    monkeypatch.setattr(exam_taking, "clock", clock)
    learner = people.user("lilei", "trainee", employee=people.employee("李雷"))
    version = make_exam_course(bank=make_bank(), time_limit_minutes=1)
    enrol(learner, version)
    lesson = exam_lesson(version)

    page.goto("/login")
    page.get_by_label("用户名").fill("lilei")
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url("**/")
    page.goto(f"/learning/courses/{version.id}")
    page.locator(f'a[href="/exams/lessons/{lesson.id}"]').click()
    clock.offset = timedelta(seconds=-54)  # start "54 s ago": 6 s are left now
    page.locator("#exam-start").click()
    page.wait_for_url("**/exams/attempts/*")
    clock.offset = timedelta(0)
    page.reload()
    left = page.locator("#exam-countdown").inner_text()
    assert left in ("0:05", "0:06", "0:04"), left

    page.locator('input[name="q1"]').first.check()
    page.locator('#exam-status[data-state="saved"]').wait_for()
    assert db.session.scalar(select(func.count()).select_from(AttemptAnswer)) == 1

    page.wait_for_url("**/result", timeout=15_000)
    attempt = db.session.scalar(select(ExamAttempt))
    db.session.refresh(attempt)
    assert attempt.end_reason == "submitted"
    assert list(json.loads(attempt.answers)) == ["1"]
    assert page.locator("#exam-result").get_attribute("data-end-reason") == "submitted"
