"""Taking exams through the real pages: the lesson order gates the exam, the server's
clock enforces the time limit, the attempt limit holds down to the database, the answer
key never reaches the browser before the review mode allows it, every submission is
sealed in the ledger, and nobody reaches anyone else's attempt."""

from __future__ import annotations

import hashlib
import json
import re
from contextlib import contextmanager
from datetime import timedelta

import pytest
from exam_support import correct_indices, enrol, exam_lesson, make_bank, make_exam_course, served
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from support import Clock

from assessments import exam_taking
from assessments.exams import (
    GRACE_SECONDS,
    AttemptAnswer,
    Exam,
    ExamAttempt,
    Question,
    QuestionBank,
    QuestionOption,
)
from assessments.scoring import sha256_json
from courses import tracking
from courses.models import CourseVersion, Enrollment, Lesson, LessonProgress
from lms import ledger
from lms.dbtypes import utcnow
from lms.extensions import db
from lms.ledger import LedgerEntry

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
CSRF_VALUE_RE = re.compile(r'(name="csrf_token"[^>]*value=")[^"]+(")')
LEGEND_RE = re.compile(r"<legend><strong>(\d+)\.</strong> ([^<]+)</legend>")
ATTEMPT_URL_RE = re.compile(r"/exams/attempts/(\d+)$")



@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(exam_taking, "clock", c)
    return c


@pytest.fixture
def learner(people):
    return people.user("lilei", "trainee", employee=people.employee("李雷", employee_no="E1001"))


@pytest.fixture
def bank():
    return make_bank()


def course_with_exam(bank: QuestionBank, learner, **settings) -> tuple[CourseVersion, Lesson]:
    version = make_exam_course(bank=bank, **settings)
    enrol(learner, version)
    return version, exam_lesson(version)


def finish_video(user, version: CourseVersion) -> None:
    """Complete the version's video lesson (its evidence entry appended as the watch
    tracking would)."""
    video = next(lesson for lesson in version.lessons if lesson.kind == "video")
    entry = ledger.append(db.session, kind="lesson.completed", subject=f"lesson:{video.id}",
                          actor_id=user.id, payload={"lesson_id": video.id, "test": True})
    enrollment_id = db.session.scalar(select(Enrollment.id).where(
        Enrollment.user_id == user.id, Enrollment.version_id == version.id,
        Enrollment.superseded_at.is_(None)))
    tracking.complete_lesson(db.session, user_id=user.id, enrollment_id=enrollment_id,
                             lesson_id=video.id, at=utcnow(),
                             ledger_seq=entry.seq)
    db.session.commit()


# --- page helpers -------------------------------------------------------------------------


def intro_url(lesson: Lesson) -> str:
    return f"/exams/lessons/{lesson.id}"


def start(client, lesson: Lesson):
    return client.post(f"/exams/lessons/{lesson.id}/start", token_from=intro_url(lesson))


def start_attempt(client, lesson: Lesson) -> ExamAttempt:
    response = start(client, lesson)
    assert response.status_code == 302, response.get_data(as_text=True)
    match = ATTEMPT_URL_RE.search(response.headers["Location"])
    assert match, response.headers["Location"]
    return db.session.get(ExamAttempt, int(match.group(1)))


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no CSRF token"
    return match.group(1)


def page(client, attempt: ExamAttempt):
    return client.get(f"/exams/attempts/{attempt.id}")


def autosave(client, attempt: ExamAttempt, position, choices, csrf: str):
    return client.c.post(f"/exams/attempts/{attempt.id}/answer",
                         data={"csrf_token": csrf, "position": str(position),
                               "choice": [str(c) for c in choices]})


def submit(client, attempt: ExamAttempt, answers: dict[int, list[int]], csrf: str):
    data: dict = {"csrf_token": csrf}
    for position, choices in answers.items():
        data[f"q{position}"] = [str(c) for c in choices]
    return client.c.post(f"/exams/attempts/{attempt.id}/submit", data=data)


def key_of(attempt: ExamAttempt) -> dict[int, list[int]]:
    return {q["position"]: correct_indices(q) for q in served(attempt)}


def wrong_of(attempt: ExamAttempt) -> dict[int, list[int]]:
    """A wrong answer to every question."""
    out = {}
    for q in served(attempt):
        wrong = [i for i, o in enumerate(q["options"]) if not o["correct"]]
        out[q["position"]] = wrong[:1]
    return out


def take(client, lesson: Lesson, *, passing: bool) -> ExamAttempt:
    """One whole attempt through the pages: start, open, submit all answers."""
    attempt = start_attempt(client, lesson)
    html = page(client, attempt).get_data(as_text=True)
    answers = key_of(attempt) if passing else wrong_of(attempt)
    response = submit(client, attempt, answers, csrf_of(html))
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/exams/attempts/{attempt.id}/result")
    db.session.refresh(attempt)
    assert attempt.passed is passing
    return attempt


def result_html(client, attempt: ExamAttempt) -> str:
    response = client.get(f"/exams/attempts/{attempt.id}/result")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


# --- the lesson order ---------------------------------------------------------------------


def test_exam_is_locked_until_the_video_is_done(client, learner, bank, clock):
    version, lesson = course_with_exam(bank, learner, video=True)
    client.login("lilei")
    response = client.get(intro_url(lesson))
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/learning/courses/{version.id}")
    course_page = client.get(response.headers["Location"]).get_data(as_text=True)
    flash = re.search(r'<p class="flash flash-error"[^>]*>([^<]*)</p>', course_page)
    assert flash and "绩效制度讲解" in flash.group(1)
    # The POST needs a token from some page; the exam's own page redirects.
    refused = client.post(f"/exams/lessons/{lesson.id}/start", token_from="/learning")
    assert refused.status_code == 403
    body = refused.get_data(as_text=True)
    assert 'id="exam-refused"' in body and "绩效制度讲解" in body
    assert "第1题" not in body
    assert count(ExamAttempt) == 0
    # Once the video is complete the exam opens.
    finish_video(learner, version)
    assert client.get(intro_url(lesson)).status_code == 200
    assert start(client, lesson).status_code == 302
    assert count(ExamAttempt) == 1


def test_course_page_labels_and_links_the_exam(client, learner, bank, clock):
    version, lesson = course_with_exam(bank, learner)
    client.login("lilei")
    html = client.get(f"/learning/courses/{version.id}").get_data(as_text=True)
    assert 'data-kind="exam"' in html
    assert f'href="/exams/lessons/{lesson.id}"' in html
    response = client.get(f"/learning/lessons/{lesson.id}")
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/exams/lessons/{lesson.id}")


def test_intro_shows_rules_attempts_and_best_score(client, learner, bank, clock):
    _version, lesson = course_with_exam(bank, learner, max_attempts=3, pass_score=80,
                                        time_limit_minutes=25)
    client.login("lilei")
    html = client.get(intro_url(lesson)).get_data(as_text=True)
    assert 'id="rule-questions">5<' in html
    assert 'id="rule-pass-score">80<' in html
    assert 'data-used="0" data-left="3" data-max="3"' in html
    assert 'id="exam-start"' in html
    first = take(client, lesson, passing=False)
    html = client.get(intro_url(lesson)).get_data(as_text=True)
    assert 'data-used="1" data-left="2"' in html
    assert f'href="/exams/attempts/{first.id}/result"' in html
    assert 'id="best-score">0<' in html
    take(client, lesson, passing=True)
    html = client.get(intro_url(lesson)).get_data(as_text=True)
    assert 'data-state="passed"' in html and 'id="exam-start"' not in html
    assert 'id="best-score">100<' in html


# --- the time limit -----------------------------------------------------------------------


def test_answers_after_the_deadline_and_grace_are_refused_and_not_counted(
        client, learner, bank, clock):
    _version, lesson = course_with_exam(bank, learner, time_limit_minutes=20)
    client.login("lilei")
    attempt = start_attempt(client, lesson)
    csrf = csrf_of(page(client, attempt).get_data(as_text=True))
    key = key_of(attempt)
    clock.advance(60)
    saved = autosave(client, attempt, 1, key[1], csrf)
    assert saved.status_code == 200
    assert saved.get_json() == {"saved": True, "remaining": 19 * 60}
    clock.advance(19 * 60 + GRACE_SECONDS + 1)  # past the deadline and the grace
    late = autosave(client, attempt, 2, key[2], csrf)
    assert late.status_code == 409 and late.get_json() == {"error": "closed"}
    assert db.session.scalar(select(func.count()).select_from(AttemptAnswer)) == 1
    # A late submit is scored on what was saved: the posted answers are ignored.
    response = submit(client, attempt, key, csrf)
    assert response.status_code == 302
    db.session.refresh(attempt)
    assert attempt.end_reason == "timeout"
    assert attempt.correct_count == 1
    assert json.loads(attempt.answers) == {"1": key[1]}
    assert attempt.passed is False


def test_a_submit_within_the_grace_is_accepted(client, learner, bank, clock):
    _version, lesson = course_with_exam(bank, learner, time_limit_minutes=20)
    client.login("lilei")
    attempt = start_attempt(client, lesson)
    csrf = csrf_of(page(client, attempt).get_data(as_text=True))
    clock.advance(20 * 60 + GRACE_SECONDS - 1)
    assert autosave(client, attempt, 1, key_of(attempt)[1], csrf).get_json()["remaining"] == 0
    response = submit(client, attempt, key_of(attempt), csrf)
    assert response.status_code == 302
    db.session.refresh(attempt)
    assert attempt.end_reason == "submitted"
    assert attempt.correct_count == 5 and attempt.passed is True


def test_the_attempt_page_closes_an_expired_attempt(client, learner, bank, clock):
    _version, lesson = course_with_exam(bank, learner, time_limit_minutes=20)
    client.login("lilei")
    attempt = start_attempt(client, lesson)
    clock.advance(20 * 60 + GRACE_SECONDS + 1)
    response = page(client, attempt)
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/exams/attempts/{attempt.id}/result")
    db.session.refresh(attempt)
    assert attempt.end_reason == "timeout" and attempt.score == 0


def test_the_intro_page_shows_an_expired_attempt_as_scored(client, learner, bank, clock):
    _version, lesson = course_with_exam(bank, learner, time_limit_minutes=20)
    client.login("lilei")
    attempt = start_attempt(client, lesson)
    clock.advance(20 * 60 + GRACE_SECONDS + 1)
    html = client.get(intro_url(lesson)).get_data(as_text=True)
    assert f'data-attempt-number="{attempt.number}" data-score="0"' in html
    db.session.refresh(attempt)
    assert attempt.end_reason == "timeout"


def test_tick_closes_an_expired_open_attempt(app, client, learner, bank, clock):
    _version, lesson = course_with_exam(bank, learner, time_limit_minutes=20)
    clock.now = utcnow() - timedelta(hours=1)  # started an hour ago (tick uses real time)
    client.login("lilei")
    attempt = start_attempt(client, lesson)
    csrf = csrf_of(page(client, attempt).get_data(as_text=True))
    assert autosave(client, attempt, 1, key_of(attempt)[1], csrf).status_code == 200
    result = app.test_cli_runner().invoke(args=["lms", "tick"])
    assert result.exit_code == 0, result.output
    assert "exams: 1 " in result.output
    db.session.expire_all()
    attempt = db.session.get(ExamAttempt, attempt.id)
    assert attempt.submitted_at is not None and attempt.end_reason == "timeout"
    assert attempt.correct_count == 1
    again = app.test_cli_runner().invoke(args=["lms", "tick"])
    assert "exams: 0 " in again.output


# --- the attempt limit --------------------------------------------------------------------


def test_no_attempt_is_started_after_the_limit(client, learner, bank, clock):
    _version, lesson = course_with_exam(bank, learner, max_attempts=2)
    client.login("lilei")
    take(client, lesson, passing=False)
    take(client, lesson, passing=False)
    html = client.get(intro_url(lesson)).get_data(as_text=True)
    assert 'data-state="no_attempts"' in html and 'id="exam-start"' not in html
    refused = start(client, lesson)
    assert refused.status_code == 302
    assert refused.headers["Location"].endswith(intro_url(lesson))
    assert count(ExamAttempt) == 2


def _attempt_row(exam: Exam, enrolment: Enrollment, **values) -> dict:
    now = utcnow()
    row = {"exam_id": exam.id, "max_attempts": exam.max_attempts,
           "user_id": enrolment.user_id, "enrollment_id": enrolment.id,
           "lesson_id": exam.lesson_id, "number": 1, "seed": "s", "started_at": now,
           "deadline_at": now + timedelta(minutes=20), "served": "[]",
           "served_sha256": "0" * 64, "question_count": 0}
    row.update(values)
    return row


def test_the_database_refuses_attempts_beyond_the_limit(learner, bank):
    version, lesson = course_with_exam(bank, learner, max_attempts=3)
    exam = db.session.scalar(select(Exam).where(Exam.lesson_id == lesson.id))
    enrolment = db.session.scalar(select(Enrollment).where(Enrollment.version_id == version.id))
    table = ExamAttempt.__table__
    for forged in ({"number": 4}, {"number": 4, "max_attempts": 10},
                   {"number": 1, "max_attempts": 10}, {"number": 0}):
        with pytest.raises(IntegrityError):
            db.session.execute(insert(table).values(**_attempt_row(exam, enrolment, **forged)))
        db.session.rollback()
    db.session.execute(insert(table).values(**_attempt_row(exam, enrolment, number=3)))
    db.session.commit()
    assert count(ExamAttempt) == 1


# --- the answer key never reaches the browser ---------------------------------------------


def _distinctive_ids() -> None:
    """Make question and option ids long and unlike any other number on the pages, so
    finding one in a response means an id leaked."""
    if db.engine.dialect.name == "postgresql":
        for table in ("questions", "question_options"):
            start_at = 7_000_000 if table == "questions" else 8_000_000
            db.session.execute(text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {start_at})"))
    else:  # SQLite numbers new rows after the highest id
        other = QuestionBank(name="占位题库", description="")
        question = Question(id=7_000_000, bank=other, kind="single", topic="other", text="-",
                            explanation="")
        question.options = [QuestionOption(id=8_000_000, position=1, text="-")]
        db.session.add_all([other, question])
    db.session.commit()


def test_no_response_of_a_whole_attempt_contains_the_key(client, learner, clock):
    _distinctive_ids()
    bank = make_bank()
    _version, lesson = course_with_exam(bank, learner, review="score", selection="random",
                                        per_topic={"performance": 10})
    client.login("lilei")
    bodies = [client.get(intro_url(lesson)).get_data(as_text=True)]
    response = start(client, lesson)
    bodies.append(response.get_data(as_text=True))
    attempt = db.session.get(ExamAttempt, int(ATTEMPT_URL_RE.search(
        response.headers["Location"]).group(1)))
    html = page(client, attempt).get_data(as_text=True)
    bodies.append(html)
    assert len(LEGEND_RE.findall(html)) == 10
    csrf = csrf_of(html)
    key = key_of(attempt)
    for position, choices in key.items():
        saved = autosave(client, attempt, position, choices, csrf)
        assert saved.status_code == 200
        bodies.append(saved.get_data(as_text=True))
    response = submit(client, attempt, key, csrf)
    bodies.append(response.get_data(as_text=True))
    bodies.append(result_html(client, attempt))
    db.session.refresh(attempt)
    assert attempt.passed is True  # the strictest case: passed, and still no key

    questions = db.session.scalars(select(Question).where(Question.bank_id == bank.id)).all()
    ids = [str(q.id) for q in questions] + [str(o.id) for q in questions for o in q.options]
    assert all(len(i) == 7 for i in ids)
    explanations = [q.explanation for q in questions]
    for body in bodies:
        for needle in ('"correct"', "is_correct", "data-correct", 'data-key=', "question_id",
                       "option_id", "explanation", "解析", *explanations, *ids):
            assert needle not in body, needle


def _flip_key(attempt: ExamAttempt) -> None:
    flipped = served(attempt)
    for question in flipped:
        for option in question["options"]:
            option["correct"] = not option["correct"]
    with db.engine.begin() as conn:  # allowed while the attempt is open
        conn.execute(text("UPDATE exam_attempts SET served = :served WHERE id = :id"),
                     {"served": json.dumps(flipped, ensure_ascii=False), "id": attempt.id})
    db.session.expire_all()


def test_the_attempt_page_does_not_depend_on_the_key(client, learner, bank, clock):
    _version, lesson = course_with_exam(bank, learner)
    client.login("lilei")
    attempt = start_attempt(client, lesson)
    csrf = csrf_of(page(client, attempt).get_data(as_text=True))
    assert autosave(client, attempt, 2, [1], csrf).status_code == 200
    before = page(client, attempt).get_data(as_text=True)
    assert 'value="1" checked' in before  # the saved answer is shown
    _flip_key(attempt)
    after = page(client, attempt).get_data(as_text=True)
    strip = lambda html: CSRF_VALUE_RE.sub(r"\1\2", html)  # noqa: E731
    assert strip(before) == strip(after)
    assert "data-deadline=" in before and "data-now=" in before


def test_the_attempt_page_offers_served_indices_with_the_right_input_kind(
        client, learner, bank, clock):
    _version, lesson = course_with_exam(bank, learner, selection="fixed",
                                        fixed=[q.id for q in bank.questions])
    client.login("lilei")
    attempt = start_attempt(client, lesson)
    html = page(client, attempt).get_data(as_text=True)
    for q in served(attempt):
        kind = "checkbox" if q["kind"] == "multiple" else "radio"
        for index, option in enumerate(q["options"]):
            assert (f'<input type="{kind}" name="q{q["position"]}" value="{index}"> '
                    f'{option["text"]}') in html
    assert 'src="/static/exam.js"' in html and "<script>" not in html


# --- review modes -------------------------------------------------------------------------


def shows_key(html: str) -> bool:
    has_key = 'data-key="correct"' in html
    assert has_key == ("解析：" in html)  # the explanations go with the key
    assert 'data-chosen="true"' in html  # the learner's own answers: always
    return has_key


def test_review_answers_shows_the_key_after_submitting(client, learner, bank, clock):
    _version, lesson = course_with_exam(bank, learner, review="answers", max_attempts=3)
    client.login("lilei")
    first = take(client, lesson, passing=False)
    assert shows_key(result_html(client, first))
    # ... but not while another attempt is open (its questions may be the same).
    start_attempt(client, lesson)
    assert not shows_key(result_html(client, first))


def test_review_answers_when_done(client, learner, bank, clock):
    _version, lesson = course_with_exam(bank, learner, review="answers_when_done",
                                        max_attempts=3)
    client.login("lilei")
    first = take(client, lesson, passing=False)
    assert not shows_key(result_html(client, first))  # attempts left: no key
    second = take(client, lesson, passing=True)
    assert shows_key(result_html(client, second))
    assert shows_key(result_html(client, first))


def test_review_answers_when_done_hides_the_key_during_the_last_attempt(
        client, learner, bank, clock):
    _version, lesson = course_with_exam(bank, learner, review="answers_when_done",
                                        max_attempts=2)
    client.login("lilei")
    first = take(client, lesson, passing=False)
    last = start_attempt(client, lesson)  # the last one: none left, but it is running
    assert not shows_key(result_html(client, first))
    html = page(client, last).get_data(as_text=True)
    assert submit(client, last, wrong_of(last), csrf_of(html)).status_code == 302
    assert shows_key(result_html(client, first))  # all used: the key may be shown


def test_review_score_never_shows_the_key(client, learner, bank, clock):
    _version, lesson = course_with_exam(bank, learner, review="score", max_attempts=2)
    client.login("lilei")
    first = take(client, lesson, passing=False)
    assert not shows_key(result_html(client, first))
    second = take(client, lesson, passing=True)
    html = result_html(client, second)
    assert not shows_key(html)
    assert 'data-passed="true"' in html and 'id="result-score">100<' in html
    assert not shows_key(result_html(client, first))


# --- shuffling ----------------------------------------------------------------------------


def _order(html: str) -> list[tuple[str, list[str]]]:
    """(question text, option texts) in the order the page shows them."""
    out = []
    for block in html.split('<fieldset class="card exam-question"')[1:]:
        legend = LEGEND_RE.search(block).group(2)
        options = re.findall(r'<input type="[a-z]+" name="q\d+" value="\d+"> ([^<]+)</label>',
                             block)
        out.append((legend, options))
    return out


def test_each_attempt_is_shuffled_from_its_own_seed(client, learner, bank, clock, monkeypatch):
    seeds = iter(["seed-one", "seed-two", "seed-one"])
    monkeypatch.setattr(exam_taking, "new_seed", lambda: next(seeds))
    _version, lesson = course_with_exam(bank, learner, selection="fixed", max_attempts=3,
                                        fixed=[q.id for q in bank.questions])
    client.login("lilei")
    orders = []
    for _ in range(3):
        attempt = start_attempt(client, lesson)
        html = page(client, attempt).get_data(as_text=True)
        orders.append(_order(html))
        assert submit(client, attempt, wrong_of(attempt), csrf_of(html)).status_code == 302
    first, second, third = orders
    assert len(first) == 10
    assert [q for q, _ in first] != [q for q, _ in second]  # question order differs
    options_first = {q: opts for q, opts in first}
    options_second = {q: opts for q, opts in second}
    assert sorted(options_first) == sorted(options_second)  # the same questions
    assert any(options_first[q] != options_second[q] for q in options_first
               if "true_false" not in q)  # option order differs too
    assert first == third  # the same seed serves the very same attempt


# --- the ledger ---------------------------------------------------------------------------


ATTEMPT_GUARD_SQLITE = ("CREATE TRIGGER exam_attempts_frozen_update BEFORE UPDATE ON "
                        "exam_attempts WHEN OLD.submitted_at IS NOT NULL BEGIN SELECT "
                        "RAISE(ABORT, 'submitted exam attempt is evidence and cannot be "
                        "changed: UPDATE refused'); END")


@contextmanager
def unguarded_attempts():
    """A connection on which the database's guard of submitted attempts is lifted, as an
    attacker with owner rights would do; the guard is restored afterwards."""
    postgres = db.engine.dialect.name == "postgresql"
    with db.engine.begin() as conn:
        if postgres:
            conn.exec_driver_sql("ALTER TABLE exam_attempts DISABLE TRIGGER USER")
        else:
            conn.exec_driver_sql("DROP TRIGGER exam_attempts_frozen_update")
        yield conn
        if postgres:
            conn.exec_driver_sql("ALTER TABLE exam_attempts ENABLE TRIGGER USER")
        else:
            conn.exec_driver_sql(ATTEMPT_GUARD_SQLITE)


def test_submission_is_sealed_in_the_ledger_and_completes_the_course(
        app, client, learner, bank, clock):
    version, lesson = course_with_exam(bank, learner, video=True)
    finish_video(learner, version)
    client.login("lilei")
    attempt = take(client, lesson, passing=True)
    entry = db.session.get(LedgerEntry, attempt.ledger_seq)
    assert entry.kind == "exam.submitted" and entry.hash == attempt.ledger_hash
    payload = json.loads(entry.payload)
    assert payload["score"] == 100 and payload["passed"] is True
    assert payload["served_sha256"] == sha256_json(json.loads(attempt.served))
    assert payload["answers_sha256"] == hashlib.sha256(attempt.answers.encode()).hexdigest()
    assert payload["answers_sha256"] == sha256_json(json.loads(attempt.answers))
    assert payload["user"] == "lilei" and payload["employee_no"] == "E1001"

    progress = db.session.scalar(select(LessonProgress).where(
        LessonProgress.user_id == learner.id, LessonProgress.lesson_id == lesson.id))
    assert progress.completed_at is not None and progress.completion_ledger_seq == entry.seq
    enrolment = db.session.scalar(select(Enrollment).where(Enrollment.version_id == version.id))
    assert enrolment.completed_at is not None
    course_entry = db.session.scalar(select(LedgerEntry).where(
        LedgerEntry.kind == "course.completed"))
    lessons = json.loads(course_entry.payload)["lessons"]
    assert {"lesson_id": lesson.id, "kind": "exam", "ledger_seq": entry.seq,
            "ledger_hash": entry.hash} in lessons
    html = result_html(client, attempt)
    assert 'data-passed="true"' in html

    runner = app.test_cli_runner()
    intact = runner.invoke(args=["ledger", "verify"])
    assert intact.exit_code == 0, intact.output
    # The database refuses to change a submitted attempt ...
    with pytest.raises(DBAPIError), db.engine.begin() as conn:
        conn.execute(text("UPDATE exam_attempts SET score = 0"))
    # ... and verify notices when someone lifts the guard to do it anyway.
    with unguarded_attempts() as conn:
        conn.execute(text("UPDATE exam_attempts SET score = 0, passed = :f WHERE id = :id"),
                     {"f": False, "id": attempt.id})
    db.session.expire_all()
    broken = runner.invoke(args=["ledger", "verify"])
    assert broken.exit_code == 1
    assert f"BROKEN exam attempt {attempt.id}" in broken.output


def test_double_submit_is_idempotent(client, learner, bank, clock):
    _version, lesson = course_with_exam(bank, learner)
    client.login("lilei")
    attempt = start_attempt(client, lesson)
    csrf = csrf_of(page(client, attempt).get_data(as_text=True))
    assert submit(client, attempt, key_of(attempt), csrf).status_code == 302
    again = submit(client, attempt, wrong_of(attempt), csrf)
    assert again.status_code == 302
    assert again.headers["Location"].endswith(f"/exams/attempts/{attempt.id}/result")
    entries = db.session.scalar(select(func.count()).select_from(LedgerEntry).where(
        LedgerEntry.kind == "exam.submitted"))
    assert entries == 1
    db.session.refresh(attempt)
    assert attempt.passed is True
    assert autosave(client, attempt, 1, [0], csrf).status_code == 409


# --- who may see what ---------------------------------------------------------------------


def test_another_users_attempt_answers_404_everywhere(client, make_client, people, learner,
                                                      bank, clock):
    version, lesson = course_with_exam(bank, learner)
    other = people.user("hanmeimei", "trainee", employee=people.employee("韩梅梅"))
    enrol(other, version)
    theirs = make_client()
    theirs.login("hanmeimei")
    attempt = start_attempt(theirs, lesson)
    client.login("lilei")
    csrf = csrf_of(client.get(intro_url(lesson)).get_data(as_text=True))
    assert client.get(f"/exams/attempts/{attempt.id}").status_code == 404
    assert client.get(f"/exams/attempts/{attempt.id}/result").status_code == 404
    assert autosave(client, attempt, 1, [0], csrf).status_code == 404
    assert submit(client, attempt, {1: [0]}, csrf).status_code == 404
    assert count(AttemptAnswer) == 0
    db.session.refresh(attempt)
    assert attempt.submitted_at is None


def test_a_user_not_enrolled_gets_404(client, people, learner, bank, clock):
    _version, lesson = course_with_exam(bank, learner)
    people.user("hr1", "hr", employee=people.employee("王芳"))
    client.login("hr1")
    assert client.get(intro_url(lesson)).status_code == 404
    assert client.post(f"/exams/lessons/{lesson.id}/start", token_from="/learning"
                       ).status_code == 404
    assert count(ExamAttempt) == 0


def test_forged_answers_are_refused(client, learner, bank, clock):
    _version, lesson = course_with_exam(bank, learner)
    client.login("lilei")
    attempt = start_attempt(client, lesson)
    csrf = csrf_of(page(client, attempt).get_data(as_text=True))
    single = next(q["position"] for q in served(attempt) if q["kind"] == "single")
    for position, choices in ((99, [0]), (0, [0]), (single, [7]), (single, [0, 1]),
                              (single, ["x"]), ("x", [0]), (single, [-1])):
        response = autosave(client, attempt, position, choices, csrf)
        assert response.status_code == 400, (position, choices)
        assert response.get_json() == {"error": "bad_answer"}
    assert count(AttemptAnswer) == 0
    assert submit(client, attempt, {99: [0]}, csrf).status_code == 400
    assert submit(client, attempt, {single: [0, 1]}, csrf).status_code == 400
    db.session.refresh(attempt)
    assert attempt.submitted_at is None
    # Without the CSRF token nothing is saved either.
    no_token = client.c.post(f"/exams/attempts/{attempt.id}/answer",
                             data={"position": "1", "choice": "0"})
    assert no_token.status_code == 400
    header = client.c.post(f"/exams/attempts/{attempt.id}/answer",
                           data={"position": str(single), "choice": "0"},
                           headers={"X-CSRFToken": csrf})
    assert header.status_code == 200
    assert count(AttemptAnswer) == 1


def test_the_form_without_script_posts_every_answer_and_blank_clears(client, learner, bank,
                                                                      clock):
    _version, lesson = course_with_exam(bank, learner)
    client.login("lilei")
    attempt = start_attempt(client, lesson)
    csrf = csrf_of(page(client, attempt).get_data(as_text=True))
    key = key_of(attempt)
    assert autosave(client, attempt, 1, key[1], csrf).status_code == 200
    # The page's form as a browser without JS posts it: every question listed in
    # "shown", question 1 now left blank, question 2 answered.
    data = {"csrf_token": csrf, "shown": [str(p) for p in key], "q2": [str(c) for c in key[2]]}
    response = client.c.post(f"/exams/attempts/{attempt.id}/submit", data=data)
    assert response.status_code == 302
    db.session.refresh(attempt)
    assert json.loads(attempt.answers) == {"1": [], "2": key[2]}
    assert attempt.correct_count == 1
