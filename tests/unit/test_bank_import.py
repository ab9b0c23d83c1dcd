"""The pure half of the question-bank import: files in, drafts or row-numbered errors out."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import openpyxl
import pytest
from babel.messages.pofile import read_po

from assessments.bank_import import (
    TEMPLATE_HEADERS,
    TOPIC_NAMES_ZH,
    parse_questions,
    template_csv,
)
from courses.topics import TOPIC_LABELS

HEADER = "题型,题目,选项A,选项B,选项C,选项D,答案,解析,风险主题"
GOOD_ROWS = (
    "单选,试用期最长不得超过几个月？,一个月,三个月,六个月,十二个月,C,劳动合同法第十九条,劳动合同",
    "多选,哪些材料应当留档？,考核结果,培训记录,口头承诺,调岗通知,\"A,B,D\",,绩效",
    "判断,解除通知可以只用微信发送。,,,,,错误,应保留送达凭证,通知送达",
)


def csv_bytes(*rows: str, header: str = HEADER, encoding: str = "utf-8") -> bytes:
    return ("\r\n".join([header, *rows]) + "\r\n").encode(encoding)


def parse(data: bytes, filename: str = "q.csv", *, max_rows: int = 100,
          existing: tuple[str, ...] = ()):
    return parse_questions(data, filename, max_rows=max_rows, existing_texts=existing)


def codes(result) -> list[tuple[int | None, str, str]]:
    return [(e.row, e.column, e.code) for e in result.errors]


def xlsx_bytes(rows: list[list[object]]) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


# --- good files ---------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk"])
def test_good_csv_in_every_encoding_excel_writes(encoding):
    result = parse(csv_bytes(*GOOD_ROWS, encoding=encoding))
    assert result.ok, codes(result)
    assert result.row_count == 3
    single, multiple, true_false = (d.data for d in result.drafts)
    assert [d.row for d in result.drafts] == [2, 3, 4]
    assert (single.kind, single.topic, single.correct) == ("single", "labour_contracts", {2})
    assert single.text == "试用期最长不得超过几个月？"
    assert single.options[:4] == ("一个月", "三个月", "六个月", "十二个月")
    assert single.explanation == "劳动合同法第十九条"
    assert (multiple.kind, multiple.topic, multiple.correct) == ("multiple", "performance",
                                                                 {0, 1, 3})
    assert (true_false.kind, true_false.topic, true_false.correct) == (
        "true_false", "notice_delivery", {1})


def test_english_headers_in_any_case_and_spacing_and_answer_spellings():
    header = "Type, QUESTION ,Option A,option_b,OPTION-C,Answer,Topic"
    rows = ("single,Q1,a,b,c,b,performance",
            "MULTIPLE,Q2,a,b,c,A、C,Labour contracts",
            "multiple,Q3,a,b,c,ａ，ｂ,绩效管理",
            "多选题,Q4,a,b,c,a c,other",
            "true_false,Q5,,,,T,attendance")
    result = parse(csv_bytes(*rows, header=header))
    assert result.ok, codes(result)
    assert [d.data.correct for d in result.drafts] == [{1}, {0, 2}, {0, 1}, {0, 2}, {0}]
    assert [d.data.topic for d in result.drafts] == [
        "performance", "labour_contracts", "performance", "other", "attendance"]
    assert result.drafts[4].data.explanation == ""


@pytest.mark.parametrize(("answer", "slot"), [
    ("正确", 0), ("对", 0), ("√", 0), ("T", 0), ("true", 0), ("TRUE", 0),
    ("错误", 1), ("错", 1), ("×", 1), ("F", 1), ("false", 1), ("False", 1),
])
def test_true_false_answers(answer, slot):
    result = parse(csv_bytes(f"判断,陈述,,,,,{answer},,其他"))
    assert result.ok, codes(result)
    assert result.drafts[0].data.correct == {slot}


def test_true_false_ignores_option_cells():
    result = parse(csv_bytes("判断,陈述,甲,乙,,,对,,其他"))
    assert result.ok
    assert result.drafts[0].data.options == ()


def test_xlsx_first_sheet_with_numbers_booleans_and_blank_rows():
    data = xlsx_bytes([
        ["题型", "题目", "选项A", "选项B", "选项C", "答案", "风险主题", "解析"],
        ["单选", "加班费的计算基数最低是多少？", 100, 2.5, "最低工资", "C", "考勤", None],
        [None, None, None],
        ["判断", "工伤认定申请时限为一年。", None, None, None, True, "工伤", "工伤保险条例第十七条"],
        ["多选", "Q3", "a", "b", "c", "AB", "bogus", None],
    ])
    result = parse(data, "questions.xlsx")
    assert codes(result) == [(5, "风险主题", "unknown_topic")]  # the blank row 3 still counts

    data = xlsx_bytes([
        ["题型", "题目", "选项A", "选项B", "选项C", "答案", "风险主题", "解析"],
        ["单选", "加班费的计算基数最低是多少？", 100, 2.5, "最低工资", "C", "考勤", None],
        [None, None, None],
        ["判断", "工伤认定申请时限为一年。", None, None, None, True, "工伤", "工伤保险条例第十七条"],
    ])
    result = parse(data, "questions.xlsx")
    assert result.ok, codes(result)
    single, true_false = (d.data for d in result.drafts)
    assert [d.row for d in result.drafts] == [2, 4]
    assert single.options[:3] == ("100", "2.5", "最低工资")
    assert true_false.correct == {0}
    assert true_false.explanation == "工伤保险条例第十七条"


def test_xlsx_is_recognised_by_content_whatever_its_name():
    data = xlsx_bytes([["题型", "题目", "选项A", "选项B", "答案", "风险主题"],
                       ["单选", "Q", "a", "b", "A", "其他"]])
    assert parse(data, "upload.csv").ok


def test_template_parses_back_with_one_question_of_each_kind():
    data = template_csv()
    assert data.startswith("\ufeff".encode())
    assert data.decode("utf-8-sig").splitlines()[0] == ",".join(TEMPLATE_HEADERS)
    result = parse(data, "question-bank-template.csv")
    assert result.ok, codes(result)
    assert [d.data.kind for d in result.drafts] == ["single", "multiple", "true_false"]


def test_chinese_topic_names_follow_the_zh_translation_of_the_topic_labels():
    po = Path(__file__).resolve().parents[2] / "lms/translations/zh_Hans_CN/LC_MESSAGES"
    with (po / "messages.po").open("rb") as fh:
        catalog = read_po(fh)
    for code, label in TOPIC_LABELS.items():
        message = catalog.get(str(label))  # outside an app: the English msgid
        assert message is not None and message.string, code
        assert TOPIC_NAMES_ZH[code][0] == message.string, code


# --- file-level errors --------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"  \r\n", "\ufeff\r\n".encode()])
def test_empty_file(data):
    assert [e.code for e in parse(data).errors] == ["empty_file"]


def test_header_only():
    assert codes(parse(csv_bytes())) == [(1, "", "no_rows")]


def test_empty_xlsx():
    assert [e.code for e in parse(xlsx_bytes([]), "q.xlsx").errors] == ["empty_file"]


def test_missing_and_unknown_headers_name_the_column_on_row_1():
    result = parse(csv_bytes("单选,Q,a,b,A", header="题型,题目,选项A,选项G,答案"))
    assert codes(result) == [(1, "选项G", "unknown_header"), (1, "风险主题", "missing_header")]
    assert result.drafts == []


def test_duplicate_header():
    result = parse(csv_bytes("单选,Q,a,A,其他,a", header="题型,题目,选项A,答案,风险主题,Option A"))
    assert codes(result) == [(1, "Option A", "duplicate_header")]


def test_wrong_encoding():
    assert [e.code for e in parse(b"\xff\xff\xff\xfe\xfe").errors] == ["encoding"]


@pytest.mark.parametrize(("data", "name", "code"), [
    (csv_bytes(*GOOD_ROWS), "q.xlsx", "not_xlsx"),  # an .xlsx that is not a zip
    (b"PK\x03\x04 truncated", "q.xlsx", "not_xlsx"),  # a corrupt zip
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 64, "q.xls", "old_xls"),
])
def test_files_that_are_not_workbooks(data, name, code):
    assert [e.code for e in parse(data, name).errors] == [code]


def test_zip_that_is_not_a_workbook():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "hi")
    assert [e.code for e in parse(out.getvalue(), "q.xlsx").errors] == ["not_xlsx"]


def test_too_many_rows():
    rows = [f"判断,陈述{n},,,,,对,,其他" for n in range(4)]
    assert parse(csv_bytes(*rows[:3]), max_rows=3).ok
    result = parse(csv_bytes(*rows), max_rows=3)
    assert codes(result) == [(5, "", "too_many_rows")]


def test_too_many_rows_in_xlsx_stops_reading():
    rows = [["题型", "题目", "答案", "风险主题"]] + [["判断", f"陈述{n}", "对", "其他"]
                                                 for n in range(30)]
    assert codes(parse(xlsx_bytes(rows), "q.xlsx", max_rows=10)) == [(12, "", "too_many_rows")]


def test_broken_csv_quoting_names_the_row():
    result = parse(csv_bytes(GOOD_ROWS[0], '单选,"未闭合的引号,a,b,,,A,,其他'))
    assert [(e.row, e.code) for e in result.errors] == [(3, "csv_format")]


# --- row errors ---------------------------------------------------------------------------


def test_every_row_problem_with_its_row_and_column():
    rows = (
        "单选,Q1,a,b,c,,AB,,其他",  # 2: single with two answers
        "多选,Q2,a,b,c,,A,,其他",  # 3: multiple with one answer
        "单选,Q3,a,b,,,C,,其他",  # 4: answer names an empty option
        "单元,Q4,a,b,,,A,,其他",  # 5: unknown kind
        ",Q5,a,b,,,A,,其他",  # 6: no kind
        "单选,,a,b,,,A,,其他",  # 7: no question
        "单选,Q8,a,b,,,G,,其他",  # 8: not a letter
        "判断,Q9,,,,,也许,,其他",  # 9: not a true/false answer
        "单选,Q10,a,b,,,,,其他",  # 10: no answer
        "单选,Q11,a,b,,,A,,薪酬",  # 11: unknown topic
        "单选,Q12,a,b,,,A,,",  # 12: no topic
        "单选,Q13,a,,,,A,,其他",  # 13: one option only
        "单选,Q14,a,b,,,A,,其他",  # 14: fine, but the file is refused as a whole
        "单选,Q15,同一个,同一个,,,A,,其他",  # 15: duplicate option
        "单选, Q1 ,x,y,,,A,,其他",  # 16: same question as row 2 (whitespace aside)
        "单选,已在题库中,x,y,,,A,,其他",  # 17: in the bank already
        "判断,判断题没有主题,,,,,对,,",  # 18: no topic (true/false)
    )
    result = parse(csv_bytes(*rows), existing=("已在题库中 ",))
    assert result.drafts == []
    assert result.row_count == len(rows)
    assert codes(result) == [
        (2, "答案", "single_answers"),
        (3, "答案", "multiple_answers"),
        (4, "答案", "answer_empty_option"),
        (5, "题型", "unknown_kind"),
        (6, "题型", "kind_required"),
        (7, "题目", "text_required"),
        (8, "答案", "bad_answer"),
        (9, "答案", "bad_answer"),
        (10, "答案", "answer_required"),
        (11, "风险主题", "unknown_topic"),
        (12, "风险主题", "topic_required"),
        (13, "选项B", "too_few_options"),
        (15, "选项B", "duplicate_option"),
        (16, "题目", "duplicate_in_file"),
        (17, "题目", "duplicate_in_bank"),
        (18, "风险主题", "topic_required"),
    ]
    duplicate = next(e for e in result.errors if e.code == "duplicate_in_file")
    assert duplicate.other_row == 2
    assert "2" in str(duplicate.message) and "16" in str(duplicate.message)
    assert "C" in str(next(e for e in result.errors if e.code == "answer_empty_option").message)


def test_one_bad_row_refuses_the_whole_file():
    result = parse(csv_bytes(*GOOD_ROWS, "单选,坏行,a,b,,,AB,,其他"))
    assert codes(result) == [(5, "答案", "single_answers")]
    assert result.drafts == []


def test_text_and_explanation_length():
    long = "长" * 2001
    result = parse(csv_bytes(f"单选,{long},a,b,,,A,,其他", f"单选,Q,a,b,,,A,{long},其他"))
    assert codes(result) == [(2, "题目", "too_long"), (3, "解析", "too_long")]


def test_option_length():
    result = parse(csv_bytes(f"单选,Q,a,{'长' * 501},,,A,,其他"))
    assert codes(result) == [(2, "选项B", "too_long")]


def test_data_in_a_column_without_header():
    result = parse(csv_bytes("判断,陈述,,,,,对,,其他,多余"))
    assert codes(result) == [(2, "J", "unnamed_column")]


def test_answer_letter_beyond_the_columns_present():
    result = parse(csv_bytes("单选,Q,a,b,E", header="题型,题目,选项A,选项B,答案,风险主题"))
    assert (2, "风险主题", "topic_required") in codes(result)
    assert (2, "答案", "answer_empty_option") in codes(result)
