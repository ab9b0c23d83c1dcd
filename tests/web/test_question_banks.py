"""Question-bank pages: banks, questions (add, edit, archive, restore), the all-or-nothing
file import with its template, and who may do what."""

from __future__ import annotations

import io
import json
import re

import openpyxl
import pytest
from exam_support import exam_lesson, make_bank, make_exam_course
from sqlalchemy import func, select

from assessments.bank_import import parse_questions
from assessments.exams import Exam, Question, QuestionBank, QuestionOption
from lms.extensions import db

HEADER = "题型,题目,选项A,选项B,选项C,选项D,答案,解析,风险主题"
GOOD_ROWS = (
    "单选,试用期最长不得超过几个月？,一个月,三个月,六个月,十二个月,C,劳动合同法第十九条,劳动合同",
    "多选,绩效改进需要留存哪些材料？,考核结果,培训记录,口头承诺,调岗通知,ABD,,绩效",
    "判断,解除通知可以只用微信发送。,,,,,错误,应保留送达凭证,通知送达",
)


def csv_bytes(*rows: str, encoding: str = "utf-8-sig") -> bytes:
    return ("\r\n".join([HEADER, *rows]) + "\r\n").encode(encoding)


def question_count(bank_id: int | None = None) -> int:
    stmt = select(func.count()).select_from(Question)
    if bank_id is not None:
        stmt = stmt.where(Question.bank_id == bank_id)
    return db.session.scalar(stmt)


def has_field_error(html: str, field_id: str) -> bool:
    pattern = r'<div class="field has-error">\s*<label for="' + field_id + '"'
    return re.search(pattern, html) is not None


def options_of(question: Question) -> list[tuple[int, str, bool]]:
    return [(o.position, o.text, o.is_correct) for o in question.options]


@pytest.fixture
def trainer(client, people):
    user = people.user("trainer1", "trainer")
    client.login("trainer1")
    return user


@pytest.fixture
def bank(app):
    bank = QuestionBank(name="劳动合同题库", description="入职与合同")
    db.session.add(bank)
    db.session.commit()
    return bank


def question_form(**values) -> dict:
    data = {"kind": "single", "topic": "labour_contracts", "text": "试用期最长几个月？",
            "explanation": "劳动合同法第十九条", "option_a": "一个月", "option_b": "三个月",
            "option_c": "六个月", "option_d": "", "option_e": "", "option_f": ""}
    data.update(values)
    return {k: v for k, v in data.items() if v is not None}


def add_question(client, bank_id: int, **values):
    url = f"/banks/{bank_id}/questions/new"
    return client.post(url, question_form(**values), token_from=url)


# --- banks --------------------------------------------------------------------------------


def test_create_bank_and_see_it_listed_with_counts(client, trainer):
    resp = client.post("/banks/new", {"name": "  绩效  管理题库 ", "description": "季度考核"},
                       token_from="/banks/new")
    assert resp.status_code == 302
    bank = db.session.scalars(select(QuestionBank)).one()
    assert bank.name == "绩效 管理题库"
    assert bank.created_by_id == trainer.id
    assert resp.headers["Location"].endswith(f"/banks/{bank.id}")

    make_bank("另一个题库", single=3, multiple=1, true_false=1)
    other = db.session.scalars(select(QuestionBank).where(QuestionBank.name == "另一个题库")).one()
    other.questions[0].archived_at = other.created_at
    db.session.commit()
    html = client.get("/banks").get_data(as_text=True)
    assert f'id="bank-{bank.id}" data-active="0" data-archived="0"' in html
    assert f'id="bank-{other.id}" data-active="4" data-archived="1"' in html
    assert "季度考核" in html


def test_bank_name_is_required_and_unique(client, trainer, bank):
    resp = client.post("/banks/new", {"name": "劳动合同题库"}, token_from="/banks/new")
    assert resp.status_code == 422
    assert has_field_error(resp.get_data(as_text=True), "name")
    resp = client.post("/banks/new", {"name": "  "}, token_from="/banks/new")
    assert resp.status_code == 422
    assert has_field_error(resp.get_data(as_text=True), "name")
    assert db.session.scalar(select(func.count()).select_from(QuestionBank)) == 1


def test_edit_bank(client, trainer, bank, people):
    url = f"/banks/{bank.id}/edit"
    assert "劳动合同题库" in client.get(url).get_data(as_text=True)
    resp = client.post(url, {"name": "合同题库", "description": "新说明"}, token_from=url)
    assert resp.status_code == 302
    db.session.refresh(bank)
    assert (bank.name, bank.description) == ("合同题库", "新说明")

    db.session.add(QuestionBank(name="考勤题库"))
    db.session.commit()
    resp = client.post(url, {"name": "考勤题库"}, token_from=url)
    assert resp.status_code == 422
    assert has_field_error(resp.get_data(as_text=True), "name")
    db.session.refresh(bank)
    assert bank.name == "合同题库"


# --- questions ----------------------------------------------------------------------------


def test_add_single_choice_question_compacts_blank_options(client, trainer, bank):
    resp = add_question(client, bank.id, option_c="", option_d="六个月", correct_d="y")
    assert resp.status_code == 302
    question = db.session.scalars(select(Question)).one()
    assert (question.kind, question.topic, question.text) == (
        "single", "labour_contracts", "试用期最长几个月？")
    assert question.explanation == "劳动合同法第十九条"
    assert options_of(question) == [(1, "一个月", False), (2, "三个月", False),
                                    (3, "六个月", True)]

    html = client.get(f"/banks/{bank.id}").get_data(as_text=True)
    assert f'id="question-{question.id}"' in html
    assert re.search(r'data-correct="1"[^>]*>六个月', html)
    assert re.search(r'data-correct="0">一个月', html)


def test_add_multiple_choice_and_true_false(client, trainer, bank):
    assert add_question(client, bank.id, kind="multiple", text="多选题", topic="performance",
                        correct_a="y", correct_c="y").status_code == 302
    # True/false: option texts are ignored, B (错误) ticked.
    assert add_question(client, bank.id, kind="true_false", text="判断题", topic="other",
                        option_a="随便", correct_b="y").status_code == 302
    multiple, true_false = db.session.scalars(select(Question).order_by(Question.id)).all()
    assert options_of(multiple) == [(1, "一个月", True), (2, "三个月", False),
                                    (3, "六个月", True)]
    assert options_of(true_false) == [(1, "正确", False), (2, "错误", True)]


@pytest.mark.parametrize(("values", "field"), [
    ({"correct_a": "y", "correct_b": "y"}, "options"),  # single with two correct
    ({"kind": "multiple", "correct_a": "y"}, "options"),  # multiple needs two correct
    ({"correct_d": "y"}, "options"),  # correct option without text
    ({"option_b": "", "option_c": "", "correct_a": "y"}, "options"),  # one option only
    ({"option_b": " 一个月 ", "correct_a": "y"}, "options"),  # duplicate options
    ({"kind": "true_false", "correct_a": "y", "correct_b": "y"}, "options"),
    ({"text": "   ", "correct_a": "y"}, "text"),
    ({"text": "长" * 2001, "correct_a": "y"}, "text"),
    ({"explanation": "长" * 2001, "correct_a": "y"}, "explanation"),
    ({"topic": "salary", "correct_a": "y"}, "topic"),
])
def test_question_validation_errors_are_shown_per_field(client, trainer, bank, values, field):
    resp = add_question(client, bank.id, **values)
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    if field == "options":
        assert 'class="field has-error" id="options"' in html
    else:
        assert has_field_error(html, field)
    assert question_count() == 0


def test_several_errors_are_shown_at_once(client, trainer, bank):
    resp = add_question(client, bank.id, text="", explanation="长" * 2001)
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert has_field_error(html, "text")
    assert has_field_error(html, "explanation")
    assert 'class="field has-error" id="options"' in html


def test_duplicate_text_in_the_bank_is_refused(client, trainer, bank):
    assert add_question(client, bank.id, text="试用期 最长几个月？", correct_a="y").status_code == 302
    resp = add_question(client, bank.id, text=" 试用期\u3000\n最长几个月？ ", correct_b="y")
    assert resp.status_code == 422
    assert has_field_error(resp.get_data(as_text=True), "text")
    # Another bank may hold the same question.
    other = QuestionBank(name="另一个题库")
    db.session.add(other)
    db.session.commit()
    assert add_question(client, other.id, text="试用期 最长几个月？",
                        correct_a="y").status_code == 302
    assert question_count() == 2


def test_edit_question_in_place(client, trainer, bank):
    add_question(client, bank.id, option_d="十二个月", correct_c="y")
    question = db.session.scalars(select(Question)).one()
    option_ids = [o.id for o in question.options]
    before = question.updated_at
    url = f"/questions/{question.id}/edit"
    html = client.get(url).get_data(as_text=True)
    assert "试用期最长几个月？" in html and "十二个月" in html
    assert re.search(r'id="correct_c"[^>]*checked|checked[^>]*id="correct_c"', html)

    resp = client.post(url, question_form(kind="multiple", text="试用期可以约定几个月？",
                                          topic="performance", option_c="", option_d="",
                                          correct_a="y", correct_b="y"), token_from=url)
    assert resp.status_code == 302
    db.session.refresh(question)
    assert (question.kind, question.topic, question.text) == (
        "multiple", "performance", "试用期可以约定几个月？")
    assert options_of(question) == [(1, "一个月", True), (2, "三个月", True)]
    assert [o.id for o in question.options] == option_ids[:2]  # updated, not replaced
    assert db.session.scalar(select(func.count()).select_from(QuestionOption)) == 2
    assert question.updated_at >= before


def test_edit_question_errors_keep_the_question(client, trainer, bank):
    add_question(client, bank.id, correct_a="y")
    add_question(client, bank.id, text="第二题", correct_a="y")
    second = db.session.scalars(select(Question).order_by(Question.id.desc())).first()
    url = f"/questions/{second.id}/edit"
    resp = client.post(url, question_form(text="试用期最长几个月？", correct_a="y"),
                       token_from=url)
    assert resp.status_code == 422
    assert has_field_error(resp.get_data(as_text=True), "text")
    resp = client.post(url, question_form(text="第二题", correct_a="y", correct_b="y"),
                       token_from=url)
    assert resp.status_code == 422
    db.session.refresh(second)
    assert options_of(second) == [(1, "一个月", True), (2, "三个月", False), (3, "六个月", False)]
    # Saving a question unchanged is not a duplicate of itself.
    resp = client.post(url, question_form(text="第二题", correct_a="y"), token_from=url)
    assert resp.status_code == 302


def test_archive_and_restore(client, trainer, bank):
    add_question(client, bank.id, correct_a="y")
    question = db.session.scalars(select(Question)).one()
    page = f"/banks/{bank.id}"
    resp = client.post(f"/banks/{bank.id}/questions/{question.id}/archive", token_from=page)
    assert resp.status_code == 302
    db.session.refresh(question)
    assert question.archived_at is not None
    html = client.get(page).get_data(as_text=True)
    assert 'data-active="0" data-archived="1"' in html
    archived_section = html.split('id="archived-questions"', 1)[1]
    assert f'id="question-{question.id}"' in archived_section

    # Archived questions still block a duplicate: restoring is the way back.
    assert add_question(client, bank.id, correct_b="y").status_code == 422

    resp = client.post(f"/banks/{bank.id}/questions/{question.id}/restore", token_from=page)
    assert resp.status_code == 302
    db.session.refresh(question)
    assert question.archived_at is None
    assert question_count() == 1  # never deleted


def test_archived_questions_are_not_drawn_into_exams_published_later(client, trainer):
    bank = make_bank(single=6, multiple=0, true_false=0)
    first = bank.questions[0]
    page = f"/banks/{bank.id}"
    client.post(f"/banks/{bank.id}/questions/{first.id}/archive", token_from=page)
    version = make_exam_course(bank=bank, per_topic={"performance": 5})
    exam = db.session.scalar(select(Exam).where(Exam.lesson_id == exam_lesson(version).id))
    pool_ids = {q["id"] for q in json.loads(exam.pool)}
    assert first.id not in pool_ids
    assert len(pool_ids) == 5


def test_topic_filter(client, trainer, bank):
    add_question(client, bank.id, correct_a="y")
    add_question(client, bank.id, text="绩效题", topic="performance", correct_a="y")
    contract, performance = db.session.scalars(select(Question).order_by(Question.id)).all()
    html = client.get(f"/banks/{bank.id}?topic=performance").get_data(as_text=True)
    assert f'id="question-{performance.id}"' in html
    assert f'id="question-{contract.id}"' not in html
    html = client.get(f"/banks/{bank.id}?topic=nonsense").get_data(as_text=True)
    assert f'id="question-{contract.id}"' in html and f'id="question-{performance.id}"' in html


def test_question_of_another_bank_is_404(client, trainer, bank):
    add_question(client, bank.id, correct_a="y")
    question = db.session.scalars(select(Question)).one()
    other = QuestionBank(name="另一个题库")
    db.session.add(other)
    db.session.commit()
    for action in ("archive", "restore"):
        resp = client.post(f"/banks/{other.id}/questions/{question.id}/{action}",
                           token_from=f"/banks/{bank.id}")
        assert resp.status_code == 404
    db.session.refresh(question)
    assert question.archived_at is None
    assert client.get("/questions/9999/edit").status_code == 404
    assert client.get("/banks/9999").status_code == 404


# --- import -------------------------------------------------------------------------------


def upload(client, bank_id: int, data: bytes, filename: str = "questions.csv"):
    url = f"/banks/{bank_id}/import"
    return client.post(url, {"file": (io.BytesIO(data), filename)}, token_from=url,
                       content_type="multipart/form-data")


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gbk"])
def test_import_csv(client, trainer, bank, encoding):
    resp = upload(client, bank.id, csv_bytes(*GOOD_ROWS, encoding=encoding))
    assert resp.status_code == 302, resp.get_data(as_text=True)
    questions = db.session.scalars(select(Question).order_by(Question.id)).all()
    assert [(q.kind, q.topic) for q in questions] == [
        ("single", "labour_contracts"), ("multiple", "performance"),
        ("true_false", "notice_delivery")]
    assert options_of(questions[0])[2] == (3, "六个月", True)
    assert [o.is_correct for o in questions[1].options] == [True, True, False, True]
    assert options_of(questions[2]) == [(1, "正确", False), (2, "错误", True)]
    html = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert 'data-active="3"' in html


def test_import_xlsx(client, trainer, bank):
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(HEADER.split(","))
    sheet.append(["单选", "加班工资基数？", 100, 200, None, None, "B", None, "考勤"])
    sheet.append(["判断", "工伤申请时限为一年。", None, None, None, None, True, None, "工伤"])
    out = io.BytesIO()
    workbook.save(out)
    resp = upload(client, bank.id, out.getvalue(), "questions.xlsx")
    assert resp.status_code == 302, resp.get_data(as_text=True)
    single, true_false = db.session.scalars(select(Question).order_by(Question.id)).all()
    assert options_of(single) == [(1, "100", False), (2, "200", True)]
    assert options_of(true_false) == [(1, "正确", True), (2, "错误", False)]


def test_import_with_errors_writes_nothing_and_lists_rows(client, trainer, bank):
    add_question(client, bank.id, text="已有的题目", correct_a="y")
    before = question_count()
    resp = upload(client, bank.id, csv_bytes(
        *GOOD_ROWS,
        "单选,坏题,a,b,,,AB,,其他",  # row 5
        "多选,已有的题目,a,b,c,,AB,,其他",  # row 6: already in the bank
        "判断,解除通知可以只用微信发送。,,,,,对,,其他",  # row 7: same as row 4
    ))
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    table = html.split('id="import-errors"', 1)[1]
    assert re.findall(r'data-row="(\d+)" data-code="(\w+)"', table) == [
        ("5", "single_answers"), ("6", "duplicate_in_bank"), ("7", "duplicate_in_file")]
    assert 'id="import-refused" data-count="3"' in html
    assert "答案" in table and "题目" in table
    assert question_count() == before


def test_import_file_level_error(client, trainer, bank):
    resp = upload(client, bank.id, b"not a workbook", "questions.xlsx")
    assert resp.status_code == 422
    assert 'data-code="not_xlsx"' in resp.get_data(as_text=True)
    resp = upload(client, bank.id, csv_bytes(*GOOD_ROWS), "questions.csv")
    assert resp.status_code == 302
    app_rows = question_count()
    assert app_rows == 3


def test_import_row_limit_comes_from_config(client, trainer, bank, app):
    app.config["IMPORT_MAX_ROWS"] = 2
    resp = upload(client, bank.id, csv_bytes(*GOOD_ROWS))
    assert resp.status_code == 422
    assert 'data-row="4" data-code="too_many_rows"' in resp.get_data(as_text=True)
    assert question_count() == 0


def test_import_without_file(client, trainer, bank):
    url = f"/banks/{bank.id}/import"
    resp = client.post(url, {}, token_from=url)
    assert resp.status_code == 422
    assert has_field_error(resp.get_data(as_text=True), "file")


def test_template_download_parses_back_and_imports(client, trainer, bank):
    resp = client.get("/banks/import-template.csv")
    assert resp.status_code == 200
    assert resp.mimetype == "text/csv"
    assert "attachment" in resp.headers["Content-Disposition"]
    data = resp.get_data()
    assert data.startswith("\ufeff".encode())
    assert data.decode("utf-8-sig").startswith("题型,题目,选项A")
    result = parse_questions(data, "template.csv", max_rows=100)
    assert result.ok and len(result.drafts) == 3
    assert upload(client, bank.id, data, "template.csv").status_code == 302
    assert question_count(bank.id) == 3


def test_oversize_upload_is_refused(client, trainer, bank, app):
    app.config["MAX_CONTENT_LENGTH"] = 4096
    resp = upload(client, bank.id, csv_bytes(*GOOD_ROWS) + b"," * 10_000)
    assert resp.status_code == 413
    html = resp.get_data(as_text=True)
    assert 'id="upload-error"' in html and "劳动合同题库" in html
    assert question_count() == 0


# --- who may do what ----------------------------------------------------------------------


def test_hr_may_edit_banks(client, people, bank):
    people.user("hr1", "hr")
    client.login("hr1")
    assert client.get("/banks").status_code == 200
    assert add_question(client, bank.id, correct_a="y").status_code == 302


@pytest.mark.parametrize("role", ["trainee", "admin", "auditor", "manager"])
def test_other_roles_are_refused(make_client, people, bank, role):
    make_bank("第二题库", single=2, multiple=0, true_false=0)
    question = db.session.scalars(select(Question)).first()
    people.user("someone", role)
    client = make_client()
    client.login("someone")
    for url in ("/banks", "/banks/new", f"/banks/{bank.id}", f"/banks/{bank.id}/edit",
                f"/banks/{bank.id}/questions/new", f"/questions/{question.id}/edit",
                f"/banks/{bank.id}/import", "/banks/import-template.csv"):
        assert client.get(url).status_code == 403, url
    resp = client.post(f"/banks/{question.bank_id}/questions/{question.id}/archive",
                       token_from="/")
    assert resp.status_code == 403
    resp = client.post(f"/banks/{bank.id}/import",
                       {"file": (io.BytesIO(csv_bytes(*GOOD_ROWS)), "q.csv")}, token_from="/",
                       content_type="multipart/form-data")
    assert resp.status_code == 403
    assert question_count(bank.id) == 0
    db.session.refresh(question)
    assert question.archived_at is None


def test_anonymous_is_sent_to_login(client, bank):
    resp = client.get("/banks")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]


def test_post_without_csrf_token_is_refused(client, trainer, bank):
    add_question(client, bank.id, correct_a="y")
    question = db.session.scalars(select(Question)).one()
    assert client.c.post("/banks/new", data={"name": "无令牌"}).status_code == 400
    assert client.c.post(f"/banks/{bank.id}/questions/new",
                         data=question_form(text="无令牌", correct_a="y")).status_code == 400
    assert client.c.post(f"/banks/{bank.id}/questions/{question.id}/archive").status_code == 400
    resp = client.c.post(f"/banks/{bank.id}/import",
                         data={"file": (io.BytesIO(csv_bytes(*GOOD_ROWS)), "q.csv")},
                         content_type="multipart/form-data")
    assert resp.status_code == 400
    db.session.refresh(question)
    assert question.archived_at is None
    assert question_count() == 1
    assert db.session.scalar(select(func.count()).select_from(QuestionBank)) == 1


def test_nav_link_for_authors_only(client, trainer, make_client, people):
    assert 'href="/banks"' in client.get("/").get_data(as_text=True)
    people.user("learner", "trainee")
    other = make_client()
    other.login("learner")
    assert 'href="/banks"' not in other.get("/").get_data(as_text=True)
