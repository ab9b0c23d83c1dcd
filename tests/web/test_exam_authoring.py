"""Exam lessons in course authoring: adding and editing them on a draft through the pages,
per-field refusals, publishing (the pool is frozen and pinned by the content hash), new
versions, deletion, the database trigger on frozen exams, and who may do what."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from exam_support import make_bank
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from assessments import signing
from assessments.exam_authoring import pinned_content, settings_of
from assessments.exams import Exam, Question, QuestionBank, QuestionOption
from courses.authoring import content_hash, lessons_of, recompute_content_hash
from courses.models import Course, CourseVersion, Lesson
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.ledger_core import canonical_json

TITLE = "绩效制度测验"


# --- helpers ----------------------------------------------------------------------------


def add_questions(bank: QuestionBank, topic: str, count: int) -> list[Question]:
    questions = []
    for n in range(count):
        q = Question(bank=bank, kind="single", topic=topic, text=f"{topic} 第{n + 1}题",
                     explanation="")
        q.options = [QuestionOption(position=p, text=f"选项{p}", is_correct=p == 1)
                     for p in range(1, 4)]
        db.session.add(q)
        questions.append(q)
    db.session.commit()
    return questions


def active_ids(bank: QuestionBank, topic: str | None = None) -> list[int]:
    stmt = select(Question.id).where(Question.bank_id == bank.id,
                                     Question.archived_at.is_(None)).order_by(Question.id)
    if topic:
        stmt = stmt.where(Question.topic == topic)
    return list(db.session.scalars(stmt))


def make_draft(code: str = "RISK-PERF-01") -> CourseVersion:
    course = Course(code=code, title_zh="绩效管理制度培训", risk_topic="performance")
    version = CourseVersion(course=course, number=1, status="draft", change_note="")
    db.session.add_all([course, version])
    db.session.commit()
    return version


def new_url(version: CourseVersion) -> str:
    return f"/authoring/versions/{version.id}/lessons/exam"


def edit_url(lesson: Lesson) -> str:
    return f"/authoring/lessons/{lesson.id}/exam"


def form_data(bank: QuestionBank | None, **overrides) -> dict:
    data = {"title": TITLE, "bank_id": str(bank.id) if bank else "", "selection": "random",
            "count_performance": "3", "pass_score": "80", "max_attempts": "3",
            "time_limit_minutes": "20", "review": "score", "shuffle_options": "y"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def add_exam(client, version: CourseVersion, bank: QuestionBank | None, **overrides):
    url = new_url(version)
    return client.post(url, form_data(bank, **overrides), token_from=url)


def exam_lessons(version: CourseVersion) -> list[Lesson]:
    return list(db.session.scalars(select(Lesson).where(
        Lesson.version_id == version.id, Lesson.kind == "exam").order_by(Lesson.position)))


def exam_row(lesson: Lesson) -> Exam:
    return db.session.scalar(select(Exam).where(Exam.lesson_id == lesson.id))


def publish(client, version: CourseVersion):
    page = f"/authoring/versions/{version.id}"
    return client.post(f"{page}/publish", token_from=page)


def field_has_error(html: str, field_id: str) -> bool:
    pattern = r'<div class="field has-error"[^>]*>\s*<label for="' + field_id + '"'
    return re.search(pattern, html) is not None


def fieldset_has_error(html: str, fieldset_id: str) -> bool:
    return re.search(r'<fieldset class="field has-error" id="' + fieldset_id + '"',
                     html) is not None


def flash_errors(html: str) -> list[str]:
    return re.findall(r'class="flash flash-error"[^>]*>(.*?)<', html, re.S)


def lesson_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Lesson))


def exam_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Exam))


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def trainer(client, people):
    people.user("trainer1", "trainer")
    client.login("trainer1")
    return client


@pytest.fixture
def bank(app) -> QuestionBank:
    """10 performance questions and 2 attendance questions."""
    bank = make_bank("绩效管理题库")
    add_questions(bank, "attendance", 2)
    return bank


@pytest.fixture
def other_bank(app) -> QuestionBank:
    return make_bank("考勤题库", single=2, multiple=0, true_false=0, topic="attendance")


@pytest.fixture
def draft(app) -> CourseVersion:
    return make_draft()


# --- adding through the pages -------------------------------------------------------------


def test_the_bank_picker_shows_that_banks_questions_and_what_is_available(
        trainer, draft, bank, other_bank):
    html = trainer.get(new_url(draft)).get_data(as_text=True)
    assert "绩效管理题库" in html and "考勤题库" in html
    assert 'data-question-id' not in html  # no bank chosen yet
    resp = trainer.get(new_url(draft) + f"?bank={bank.id}")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    listed = [int(i) for i in re.findall(r'<li class="lesson-item" data-question-id="(\d+)"',
                                         html)]
    assert listed == active_ids(bank)
    assert not set(listed) & set(active_ids(other_bank))
    assert f'name="bank_id" value="{bank.id}"' in html
    available = dict(re.findall(r'data-topic="(\w+)">.*?<span class="small muted available" '
                                r'data-available="(\d+)"', html, re.S))
    assert available["performance"] == "10" and available["attendance"] == "2"
    assert available["labour_contracts"] == "0"
    assert 'checked' in re.search(r'<input[^>]*id="shuffle_options"[^>]*>', html).group(0)


def test_trainer_adds_a_random_exam_lesson(trainer, draft, bank):
    resp = add_exam(trainer, draft, bank, count_performance="4", count_attendance="2",
                    pass_score="90", max_attempts="2", time_limit_minutes="15",
                    review="answers_when_done", shuffle_options=None)
    assert resp.status_code == 302, resp.get_data(as_text=True)
    [lesson] = exam_lessons(draft)
    assert (lesson.title, lesson.position) == (TITLE, 1)
    exam = exam_row(lesson)
    assert (exam.bank_id, exam.selection) == (bank.id, "random")
    assert json.loads(exam.per_topic) == {"attendance": 2, "performance": 4}
    assert json.loads(exam.fixed_question_ids) == []
    assert (exam.pass_score, exam.max_attempts, exam.time_limit_minutes, exam.review,
            exam.shuffle_options) == (90, 2, 15, "answers_when_done", False)
    assert exam.pool is None and exam.frozen_at is None

    page = trainer.get(f"/authoring/versions/{draft.id}").get_data(as_text=True)
    item = re.search(rf'<li id="lesson-{lesson.id}" data-kind="exam".*?</li>', page, re.S)
    assert item, page
    item = item.group(0)
    assert "绩效管理题库" in item
    for attr, value in (("data-selection", "random"), ("data-questions", "6"),
                        ("data-pass-score", "90"), ("data-max-attempts", "2"),
                        ("data-time-limit", "15"), ("data-review", "answers_when_done")):
        assert f'{attr}="{value}"' in item
    assert "data-pool-sha256" not in item
    assert f'href="/authoring/lessons/{lesson.id}/exam"' in item
    assert f'id="add-exam" href="/authoring/versions/{draft.id}/lessons/exam"' in page


def test_trainer_adds_a_fixed_exam_lesson(trainer, draft, bank):
    chosen = active_ids(bank)[:3]
    resp = add_exam(trainer, draft, bank, selection="fixed", count_performance=None,
                    fixed_question_ids=[str(i) for i in chosen])
    assert resp.status_code == 302, resp.get_data(as_text=True)
    exam = exam_row(exam_lessons(draft)[0])
    assert exam.selection == "fixed"
    assert json.loads(exam.fixed_question_ids) == chosen
    assert json.loads(exam.per_topic) == {}
    page = trainer.get(f"/authoring/versions/{draft.id}").get_data(as_text=True)
    assert 'data-selection="fixed"' in page and 'data-questions="3"' in page


@pytest.mark.parametrize("case", ["no_bank", "random_above_available", "fixed_without_questions",
                                  "pass_score_zero"])
def test_each_refusal_is_shown_next_to_its_field_and_nothing_is_saved(
        trainer, draft, bank, case):
    overrides, check = {
        "no_bank": ({}, lambda html: field_has_error(html, "bank")),
        "random_above_available": ({"count_attendance": "3"},
                                   lambda html: fieldset_has_error(html, "random-part")),
        "fixed_without_questions": ({"selection": "fixed"},
                                    lambda html: fieldset_has_error(html, "fixed-part")),
        "pass_score_zero": ({"pass_score": "0"},
                            lambda html: field_has_error(html, "pass_score")),
    }[case]
    resp = add_exam(trainer, draft, None if case == "no_bank" else bank, **overrides)
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert check(html), html
    others = {"bank", "pass_score", "max_attempts", "time_limit_minutes", "title"}
    assert [f for f in others if field_has_error(html, f)] == (["bank"] if case == "no_bank"
                                                                else ["pass_score"]
                                                                if case == "pass_score_zero"
                                                                else [])
    if case == "random_above_available":
        # The offending topic is marked, the one within limits is not.
        assert re.search(r'<div class="field has-error" data-topic="attendance">', html)
        assert not re.search(r'<div class="field has-error" data-topic="performance">', html)
    assert TITLE in html  # what was typed is kept
    assert lesson_count() == 0 and exam_count() == 0


def test_several_refusals_at_once(trainer, draft, bank):
    resp = add_exam(trainer, draft, bank, title="", max_attempts="11", time_limit_minutes="0")
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    for field in ("title", "max_attempts", "time_limit_minutes"):
        assert field_has_error(html, field), field
    assert lesson_count() == 0


def test_editing_an_exam_lesson_of_a_draft(trainer, draft, bank, other_bank):
    assert add_exam(trainer, draft, bank).status_code == 302
    [lesson] = exam_lessons(draft)
    # The generic edit link leads to the exam's own page.
    resp = trainer.get(f"/authoring/lessons/{lesson.id}/edit")
    assert resp.status_code == 302 and resp.headers["Location"].endswith(edit_url(lesson))
    html = trainer.get(edit_url(lesson)).get_data(as_text=True)
    assert re.search(r'<input[^>]*id="pass_score"[^>]*value="80"', html)
    assert re.search(r'<input[^>]*id="count_performance"[^>]*value="3"', html)
    assert f'name="bank_id" value="{bank.id}"' in html
    # Another bank picked on the page: its questions are listed for the same lesson.
    html = trainer.get(edit_url(lesson) + f"?bank={other_bank.id}").get_data(as_text=True)
    assert f'name="bank_id" value="{other_bank.id}"' in html
    assert re.findall(r'data-question-id="(\d+)"', html) == [str(i) for i in
                                                            active_ids(other_bank)]

    chosen = active_ids(other_bank)
    resp = trainer.post(edit_url(lesson), form_data(
        other_bank, title="考勤测验", selection="fixed", count_performance=None,
        fixed_question_ids=[str(i) for i in chosen], pass_score="60"),
        token_from=edit_url(lesson))
    assert resp.status_code == 302, resp.get_data(as_text=True)
    db.session.refresh(lesson)
    exam = exam_row(lesson)
    assert lesson.title == "考勤测验"
    assert (exam.bank_id, exam.selection, json.loads(exam.fixed_question_ids),
            json.loads(exam.per_topic), exam.pass_score) == (other_bank.id, "fixed", chosen,
                                                             {}, 60)
    resp = trainer.post(edit_url(lesson), form_data(other_bank, selection="fixed",
                                                    pass_score="101"),
                        token_from=edit_url(lesson))
    assert resp.status_code == 422
    assert exam_row(lesson).pass_score == 60


def test_the_exam_page_is_only_for_exam_lessons(trainer, draft, bank):
    resp = trainer.post(f"/authoring/versions/{draft.id}/lessons/document",
                        {"title": "制度说明", "body": "第一段。"},
                        token_from=f"/authoring/versions/{draft.id}/lessons/document")
    assert resp.status_code == 302
    document = db.session.scalar(select(Lesson).where(Lesson.kind == "document"))
    assert trainer.get(edit_url(document)).status_code == 404
    assert trainer.post(edit_url(document), form_data(bank),
                        token_from=new_url(draft)).status_code == 404
    assert trainer.get("/authoring/lessons/999999/exam").status_code == 404
    assert trainer.get("/authoring/versions/999999/lessons/exam").status_code == 404


# --- publishing ---------------------------------------------------------------------------


def test_publishing_freezes_the_pool_and_pins_it(trainer, draft, bank):
    fixed = active_ids(bank, "performance")[2:5]
    assert add_exam(trainer, draft, bank, title="随机测验", count_performance="3",
                    count_attendance="1").status_code == 302
    assert add_exam(trainer, draft, bank, title="固定测验", selection="fixed",
                    fixed_question_ids=[str(i) for i in fixed]).status_code == 302
    resp = publish(trainer, draft)
    assert resp.status_code == 302, resp.get_data(as_text=True)
    db.session.refresh(draft)
    assert draft.status == "published"
    random_lesson, fixed_lesson = exam_lessons(draft)
    for lesson, expected_ids in ((random_lesson, active_ids(bank)), (fixed_lesson, fixed)):
        exam = exam_row(lesson)
        assert exam.frozen_at is not None
        pool = json.loads(exam.pool)
        assert [q["id"] for q in pool] == expected_ids
        assert exam.pool_sha256 == hashlib.sha256(
            canonical_json(pool).encode("utf-8")).hexdigest()
        first = db.session.get(Question, pool[0]["id"])
        assert pool[0]["text"] == first.text
        assert [(o["text"], o["correct"]) for o in pool[0]["options"]] == [
            (o.text, o.is_correct) for o in first.options]
    assert recompute_content_hash(db.session, draft) == draft.content_hash

    # The version page shows the frozen pool's size and hash.
    page = trainer.get(f"/authoring/versions/{draft.id}").get_data(as_text=True)
    exam = exam_row(random_lesson)
    assert f'data-pool-size="{len(active_ids(bank))}"' in page
    assert f'data-pool-sha256="{exam.pool_sha256}"' in page


def test_the_content_hash_changes_with_the_pass_score(trainer, draft, bank):
    assert add_exam(trainer, draft, bank).status_code == 302
    assert publish(trainer, draft).status_code == 302
    course = draft.course
    resp = trainer.post(f"/authoring/courses/{course.id}/versions/new",
                        {"change_note": "提高及格线"},
                        token_from=f"/authoring/courses/{course.id}/versions/new")
    assert resp.status_code == 302
    v2 = db.session.scalar(select(CourseVersion).where(CourseVersion.number == 2))
    [lesson2] = exam_lessons(v2)
    resp = trainer.post(edit_url(lesson2), form_data(bank, pass_score="90"),
                        token_from=edit_url(lesson2))
    assert resp.status_code == 302
    assert publish(trainer, v2).status_code == 302
    db.session.expire_all()
    v1 = db.session.get(CourseVersion, draft.id)
    pin1 = pinned_content(exam_row(exam_lessons(v1)[0]))
    pin2 = pinned_content(exam_row(lesson2))
    # Same bank, same frozen pool: the exams differ in their pass score only ...
    assert {k for k in pin1 if pin1[k] != pin2[k]} == {"pass_score"}
    # ... and that alone changes the fingerprint: v2's lessons pinned with v1's exam
    # settings hash differently from v2 as published.
    lessons = lessons_of(db.session, v2)
    assert content_hash(course.code, 2, lessons, {lesson2.id: pin2}) == v2.content_hash
    assert content_hash(course.code, 2, lessons, {lesson2.id: pin1}) != v2.content_hash


def test_editing_the_bank_after_publishing_changes_nothing_published(trainer, draft, bank):
    assert add_exam(trainer, draft, bank).status_code == 302
    assert publish(trainer, draft).status_code == 302
    exam = exam_row(exam_lessons(draft)[0])
    pool, digest = exam.pool, exam.pool_sha256
    question = db.session.get(Question, json.loads(pool)[0]["id"])
    question.text = "改写后的题干"
    question.options[0].is_correct, question.options[1].is_correct = False, True
    db.session.get(Question, json.loads(pool)[1]["id"]).archived_at = utcnow()
    add_questions(bank, "performance", 2)
    db.session.commit()
    db.session.expire_all()
    exam = db.session.get(Exam, exam.id)
    assert (exam.pool, exam.pool_sha256) == (pool, digest)
    assert "改写后的题干" not in exam.pool
    version = db.session.get(CourseVersion, draft.id)
    assert recompute_content_hash(db.session, version) == version.content_hash


def test_publishing_is_refused_when_the_bank_no_longer_has_the_questions(trainer, draft, bank):
    assert add_exam(trainer, draft, bank, count_performance="8").status_code == 302
    fixed = active_ids(bank, "attendance")
    assert add_exam(trainer, draft, bank, title="固定测验", selection="fixed",
                    fixed_question_ids=[str(i) for i in fixed]).status_code == 302
    for qid in active_ids(bank, "performance")[:4] + fixed[:1]:
        db.session.get(Question, qid).archived_at = utcnow()
    db.session.commit()

    resp = publish(trainer, draft)
    assert resp.status_code == 409
    messages = " ".join(flash_errors(resp.get_data(as_text=True)))
    assert TITLE in messages and "8" in messages and "6" in messages
    assert "固定测验" in messages and f"#{fixed[0]}" in messages
    db.session.expire_all()
    assert db.session.get(CourseVersion, draft.id).status == "draft"
    assert all(e.frozen_at is None and e.pool is None for e in db.session.scalars(select(Exam)))
    # The edit page marks the archived question for unticking.
    html = trainer.get(edit_url(exam_lessons(draft)[1])).get_data(as_text=True)
    assert f'data-question-id="{fixed[0]}" data-missing="true"' in html


# --- new versions, deletion ---------------------------------------------------------------


def make_policy(name: str = "绩效管理制度"):
    document = signing.create_document(db.session, name=name, statement_template=None,
                                       min_reading_seconds=30, actor_id=None)
    version = signing.add_text_version(db.session, document, body="第一条 绩效考核按季度进行。",
                                       actor_id=None)
    signing.publish_version(db.session, version, actor_id=None)
    db.session.commit()
    return version


def test_a_new_version_copies_exam_settings_and_the_policy_version(trainer, draft, bank):
    policy = make_policy()
    url = f"/authoring/versions/{draft.id}/lessons/policy"
    assert trainer.post(url, {"title": "签署《绩效管理制度》", "policy_version_id": str(policy.id)},
                        token_from=url).status_code == 302
    assert add_exam(trainer, draft, bank, count_performance="5", count_attendance="1",
                    pass_score="70", review="answers").status_code == 302
    page = trainer.get(f"/authoring/versions/{draft.id}").get_data(as_text=True)
    item = re.search(r'<li id="lesson-\d+" data-kind="policy".*?</li>', page, re.S).group(0)
    assert "绩效管理制度" in item and policy.sha256[:12] in item
    assert f'data-policy-version-id="{policy.id}"' in item
    assert "第一条" not in item  # not the (empty) document body
    assert publish(trainer, draft).status_code == 302

    course = draft.course
    resp = trainer.post(f"/authoring/courses/{course.id}/versions/new",
                        {"change_note": "更新题目"},
                        token_from=f"/authoring/courses/{course.id}/versions/new")
    assert resp.status_code == 302
    v2 = db.session.scalar(select(CourseVersion).where(CourseVersion.number == 2))
    old = {lesson.position: lesson for lesson in lessons_of(db.session, draft)}
    new = {lesson.position: lesson for lesson in lessons_of(db.session, v2)}
    assert [(p, new[p].kind, new[p].title) for p in sorted(new)] == [
        (p, old[p].kind, old[p].title) for p in sorted(old)]
    assert new[1].policy_version_id == policy.id
    old_exam, new_exam = exam_row(old[2]), exam_row(new[2])
    assert new_exam.id != old_exam.id
    assert settings_of(new_exam) == settings_of(old_exam)
    assert (new_exam.pass_score, new_exam.review) == (70, "answers")
    assert new_exam.pool is None and new_exam.frozen_at is None  # frozen again at publishing
    # The copy can be edited: the draft's exam is not frozen.
    resp = trainer.post(edit_url(new[2]), form_data(bank, pass_score="75"),
                        token_from=edit_url(new[2]))
    assert resp.status_code == 302
    assert exam_row(new[2]).pass_score == 75 and exam_row(old[2]).pass_score == 70


def test_deleting_an_exam_lesson_from_a_draft(trainer, draft, bank):
    assert add_exam(trainer, draft, bank, title="第一个测验").status_code == 302
    assert add_exam(trainer, draft, bank, title="第二个测验").status_code == 302
    first, second = exam_lessons(draft)
    page = f"/authoring/versions/{draft.id}"
    resp = trainer.post(f"/authoring/lessons/{first.id}/delete", token_from=page)
    assert resp.status_code == 302
    assert [lesson.title for lesson in exam_lessons(draft)] == ["第二个测验"]
    assert exam_lessons(draft)[0].position == 1
    assert [e.lesson_id for e in db.session.scalars(select(Exam))] == [second.id]


# --- immutability and permissions ------------------------------------------------------------


def test_the_database_refuses_to_change_a_frozen_exam(trainer, draft, bank):
    assert add_exam(trainer, draft, bank).status_code == 302
    assert publish(trainer, draft).status_code == 302
    exam = exam_row(exam_lessons(draft)[0])
    for statement in ("UPDATE exams SET pass_score = 10 WHERE id = :id",
                      "UPDATE exams SET pool = '[]' WHERE id = :id",
                      "DELETE FROM exams WHERE id = :id"):
        with pytest.raises(DBAPIError):
            db.session.execute(text(statement), {"id": exam.id})
            db.session.flush()
        db.session.rollback()
    exam = db.session.get(Exam, exam.id)
    assert exam.pass_score == 80 and len(json.loads(exam.pool)) == 10


def test_a_draft_exam_row_is_not_frozen(trainer, draft, bank):
    """The trigger refuses frozen rows only (so the test above can fail)."""
    assert add_exam(trainer, draft, bank).status_code == 302
    exam = exam_row(exam_lessons(draft)[0])
    db.session.execute(text("UPDATE exams SET pass_score = 10 WHERE id = :id"), {"id": exam.id})
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(Exam, exam.id).pass_score == 10


def test_trainees_hr_and_admins_cannot_author_exams(client, people, draft, bank):
    people.user("trainer1", "trainer")
    client.login("trainer1")
    assert add_exam(client, draft, bank).status_code == 302
    [lesson] = exam_lessons(draft)
    client.logout()
    for username, role in (("trainee1", "trainee"), ("hr1", "hr"), ("admin1", "admin")):
        people.user(username, role)
        client.login(username)
        assert client.get(new_url(draft)).status_code == 403
        assert client.get(edit_url(lesson)).status_code == 403
        assert client.post(new_url(draft), form_data(bank), token_from="/").status_code == 403
        assert client.post(edit_url(lesson), form_data(bank, pass_score="50"),
                           token_from="/").status_code == 403
        client.logout()
    assert lesson_count() == 1 and exam_row(lesson).pass_score == 80


def test_a_published_exam_lesson_shows_its_frozen_settings_and_takes_no_changes(
        trainer, draft, bank):
    assert add_exam(trainer, draft, bank, pass_score="85").status_code == 302
    [lesson] = exam_lessons(draft)
    assert publish(trainer, draft).status_code == 302
    exam = exam_row(lesson)
    resp = trainer.get(edit_url(lesson))
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert 'id="exam-form"' not in html and 'id="frozen-exam"' in html
    assert f'data-pool-sha256="{exam.pool_sha256}"' in html
    assert 'data-pool-size="10"' in html and 'data-pass-score="85"' in html
    assert len(re.findall(r'<li data-question-id="\d+">', html)) == 10

    resp = trainer.post(edit_url(lesson), form_data(bank, title="改名", pass_score="50"),
                        token_from=f"/authoring/versions/{draft.id}")
    assert resp.status_code == 409
    assert flash_errors(resp.get_data(as_text=True))
    resp = trainer.post(new_url(draft), form_data(bank, title="再加一个"),
                        token_from=f"/authoring/versions/{draft.id}")
    assert resp.status_code == 409
    db.session.expire_all()
    exam = db.session.get(Exam, exam.id)
    assert (exam.pass_score, db.session.get(Lesson, lesson.id).title) == (85, TITLE)
    assert lesson_count() == 1
    # New exam lessons cannot be started on it either.
    resp = trainer.get(new_url(draft))
    assert resp.status_code == 302 and resp.headers["Location"].endswith(
        f"/authoring/versions/{draft.id}")


def test_the_version_page_loads_exams_and_policies_without_a_query_per_lesson(
        app, trainer, draft, bank):
    from sqlalchemy import event

    policy = make_policy()
    url = f"/authoring/versions/{draft.id}/lessons/policy"
    page = f"/authoring/versions/{draft.id}"

    def statements_for_page() -> int:
        count = 0

        def count_statement(*_args):
            nonlocal count
            count += 1

        event.listen(db.engine, "before_cursor_execute", count_statement)
        try:
            assert trainer.get(page).status_code == 200
        finally:
            event.remove(db.engine, "before_cursor_execute", count_statement)
        return count

    for n in range(2):
        trainer.post(url, {"title": f"签署 {n}", "policy_version_id": str(policy.id)},
                     token_from=url)
        add_exam(trainer, draft, bank, title=f"测验 {n}")
    few = statements_for_page()
    for n in range(2, 6):
        trainer.post(url, {"title": f"签署 {n}", "policy_version_id": str(policy.id)},
                     token_from=url)
        add_exam(trainer, draft, bank, title=f"测验 {n}")
    assert len(exam_lessons(draft)) == 6
    assert statements_for_page() == few
    # Each kind has its own badge (policy lessons used to be labelled as documents).
    doc_url = f"/authoring/versions/{draft.id}/lessons/document"
    assert trainer.post(doc_url, {"title": "说明", "body": "正文"},
                        token_from=doc_url).status_code == 302
    html = trainer.get(page).get_data(as_text=True)
    badges = dict(re.findall(r'data-kind="(\w+)"[^>]*>\s*<strong class="lesson-title">[^<]*'
                             r'</strong>\s*<span class="badge lesson-kind">([^<]+)</span>', html))
    assert set(badges) == {"policy", "exam", "document"}
    assert len(set(badges.values())) == 3
