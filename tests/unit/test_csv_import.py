"""Tests for lms.people.csv_import (pure half of the HR employee CSV import)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from lms.people import csv_import, idnumber
from lms.people.csv_import import (
    STATUS_LABELS,
    ImportFileError,
    ImportResult,
    RowError,
    decode_upload,
    parse_date,
    parse_employee_csv,
)

TODAY = date(2025, 6, 1)
DEPARTMENTS = {"D01": 1, "D02": 2}
POSITIONS = {"P01": 10, "出纳": 10, "P02": 20, "店长": 20}


def check_char(first17: str) -> str:
    total = sum(int(d) * (2 ** (17 - i) % 11) for i, d in enumerate(first17))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


def make_id(birth: str = "19900307", seq: str = "123", region: str = "440305") -> str:
    first17 = region + birth + seq
    return first17 + check_char(first17)


ID_A = make_id(seq="111")
ID_B = make_id(seq="222")
ID_C = make_id(seq="333")

HEADER_CN = "工号,姓名,部门编码,岗位编码,直属上级工号,入职日期,状态,身份证号,邮箱"
HEADER_EN = (
    "employee_no,name,department_code,position_code,manager_no,hire_date,status,id_number,email"
)


def parse(text: str, **overrides: Any) -> ImportResult:
    kwargs: dict[str, Any] = {
        "known_departments": DEPARTMENTS,
        "known_positions": POSITIONS,
        "existing_employee_nos": set(),
        "existing_id_numbers": {},
        "today": TODAY,
    }
    kwargs.update(overrides)
    return parse_employee_csv(text, **kwargs)


def csv_text(*rows: str, header: str = HEADER_CN) -> str:
    return "\r\n".join([header, *rows]) + "\r\n"


def errors_at(result: ImportResult, row: int) -> list[RowError]:
    return [e for e in result.errors if e.row == row]


GOOD_ROWS = (
    f"E001,张三,D01,P01,,2024-03-01,在职,{ID_A},zhangsan@example.com",
    f"E002,李四,D02,店长,E001,2024/3/1,active,{ID_B},",
)


# ---------------------------------------------------------------------------
# decode_upload
# ---------------------------------------------------------------------------

SAMPLE = csv_text(*GOOD_ROWS)


def test_decode_utf8_with_bom() -> None:
    assert decode_upload(b"\xef\xbb\xbf" + SAMPLE.encode("utf-8")) == SAMPLE


def test_decode_utf8_without_bom() -> None:
    assert decode_upload(SAMPLE.encode("utf-8")) == SAMPLE


def test_decode_gbk_from_excel() -> None:
    text = decode_upload(SAMPLE.encode("gbk"))
    assert text == SAMPLE
    assert parse(text).ok


def test_decode_gb18030_only_character() -> None:
    sample = csv_text(f"E003,\U00020000㐀明,D01,,,2024-03-01,在职,{ID_C},")
    data = sample.encode("gb18030")
    with pytest.raises(UnicodeEncodeError):
        sample.encode("gbk")
    text = decode_upload(data)
    assert text == sample
    assert parse(text).rows[0].name == "\U00020000㐀明"


def test_decode_utf16_with_bom() -> None:
    assert decode_upload(SAMPLE.encode("utf-16")) == SAMPLE


@pytest.mark.parametrize(
    "data", [b"", b"   \r\n\t", b"\xef\xbb\xbf", b"\xef\xbb\xbf\r\n  ", b"\xff\xfe"]
)
def test_decode_empty_file(data: bytes) -> None:
    with pytest.raises(ImportFileError, match="文件为空"):
        decode_upload(data)


def test_decode_binary_garbage_names_encodings_tried() -> None:
    garbage = bytes(range(256)) * 4
    with pytest.raises(ImportFileError) as info:
        decode_upload(garbage)
    assert "UTF-8" in str(info.value) and "GB18030" in str(info.value)


def test_decode_text_with_nul_bytes_is_rejected() -> None:
    with pytest.raises(ImportFileError, match="无法识别文件编码"):
        decode_upload(b"abc\x00def\x00")


def test_decode_xlsx_gets_specific_hint() -> None:
    with pytest.raises(ImportFileError, match="Excel 工作簿"):
        decode_upload(b"PK\x03\x04\x14\x00\x06\x00" + bytes(100))


# ---------------------------------------------------------------------------
# Happy path
# ---------------------------------------------------------------------------


def test_good_file_chinese_headers() -> None:
    result = parse(SAMPLE, existing_employee_nos={"E002"}, existing_id_numbers={ID_B: "E002"})
    assert result.ok, result.errors
    assert result.errors == []
    first, second = result.rows
    assert first.row == 2 and second.row == 3
    assert first.employee_no == "E001"
    assert first.name == "张三"
    assert first.department_id == 1
    assert first.position_id == 10
    assert first.manager_no is None
    assert first.hire_date == date(2024, 3, 1)
    assert first.status == "active"
    assert first.id_number == ID_A
    assert first.email == "zhangsan@example.com"
    assert first.is_new is True
    assert second.position_id == 20  # resolved from the position *name* 店长
    assert second.manager_no == "E001"  # manager defined in the same file
    assert second.email is None
    assert second.is_new is False
    assert (result.new_count, result.update_count) == (1, 1)


def test_english_headers_case_insensitive_and_trimmed() -> None:
    header = " Employee_No ,NAME,Department_Code,hire_date , Status"
    result = parse(csv_text("E001,张三,D01,2024-03-01,left", header=header))
    assert result.ok, result.errors
    row = result.rows[0]
    assert (row.position_id, row.manager_no, row.id_number, row.email) == (None, None, None, None)
    assert row.status == "left"


def test_position_column_accepts_code_or_name() -> None:
    header = "工号,姓名,部门编码,岗位,入职日期,状态"
    result = parse(
        csv_text(
            "E001,张三,D01,P02,2024-03-01,在职", "E002,李四,D01,出纳,2024-03-01,在职", header=header
        )
    )
    assert [r.position_id for r in result.rows] == [20, 10]


def test_status_labels_exported_in_order() -> None:
    assert list(STATUS_LABELS.items()) == [
        ("active", "在职"),
        ("leaving", "待离职"),
        ("absconded", "自离"),
        ("unpaid_leave", "停薪留职"),
        ("left", "离职"),
    ]


@pytest.mark.parametrize(
    ("value", "code"),
    [
        *((v, k) for k, v in STATUS_LABELS.items()),
        *((k, k) for k in STATUS_LABELS),
        ("Unpaid_Leave", "unpaid_leave"),
    ],
)
def test_status_chinese_label_and_english_code(value: str, code: str) -> None:
    header = "工号,姓名,部门编码,入职日期,状态"
    result = parse(csv_text(f"E001,张三,D01,2024-03-01,{value}", header=header))
    assert result.rows[0].status == code


def test_invalid_status() -> None:
    header = "工号,姓名,部门编码,入职日期,状态"
    result = parse(csv_text("E001,张三,D01,2024-03-01,已离职", header=header))
    [error] = result.errors
    assert error == RowError(2, "状态", error.message)
    assert "已离职" in error.message and "在职" in error.message


@pytest.mark.parametrize(
    "value",
    [
        "2024-03-01",
        "2024-3-1",
        "2024/3/1",
        "2024/03/01",
        "2024.3.1",
        "2024年3月1日",
        "2024年03月01日",
        "20240301",
    ],
)
def test_dates_in_every_accepted_format(value: str) -> None:
    assert parse_date(value) == date(2024, 3, 1)
    header = "工号,姓名,部门编码,入职日期,状态"
    result = parse(csv_text(f"E001,张三,D01,{value},在职", header=header))
    assert result.rows[0].hire_date == date(2024, 3, 1)


@pytest.mark.parametrize(
    "value",
    [
        "2024-02-30",
        "2023/2/29",
        "20241301",
        "2024-3/1",
        "1/3/2024",
        "03-01-2024",
        "2024年3月1",
        "2024-03",
        "20240301 0:00",
        "abc",
        "0001-01-01",
    ],
)
def test_bad_dates_rejected(value: str) -> None:
    assert parse_date(value) is None
    header = "工号,姓名,部门编码,入职日期,状态"
    result = parse(csv_text(f"E001,张三,D01,{value},在职", header=header))
    [error] = result.errors
    assert error.field == "入职日期" and value in error.message


def test_hire_date_far_in_future() -> None:
    header = "工号,姓名,部门编码,入职日期,状态"
    ok = parse(csv_text("E001,张三,D01,2026-06-02,在职", header=header))  # 366 days ahead
    assert ok.ok, ok.errors
    bad = parse(csv_text("E001,张三,D01,2026-06-03,在职", header=header))
    [error] = bad.errors
    assert error.field == "入职日期" and "367" in error.message


def test_tab_delimited() -> None:
    text = csv_text(*(r.replace(",", "\t") for r in GOOD_ROWS), header=HEADER_CN.replace(",", "\t"))
    result = parse(text)
    assert result.ok, result.errors
    assert [r.employee_no for r in result.rows] == ["E001", "E002"]


def test_semicolon_delimited() -> None:
    text = csv_text(*(r.replace(",", ";") for r in GOOD_ROWS), header=HEADER_EN.replace(",", ";"))
    assert parse(text).ok


def test_blank_lines_skipped_and_row_numbers_match_excel() -> None:
    text = "\r\n".join(
        [HEADER_CN, GOOD_ROWS[0], "", ",,,,,,,,", "   ", "E009,王五,D99,,,2024-03-01,在职,,"]
    )
    result = parse(text)
    assert [(e.row, e.field) for e in result.errors] == [(6, "部门编码")]
    assert "D99" in result.errors[0].message


def test_quoted_cell_with_newline_counts_as_one_excel_row() -> None:
    header = "工号,姓名,部门编码,入职日期,状态"
    text = csv_text(
        'E001,"张\n三",D01,2024-03-01,在职', "E002,李四,D77,2024-03-01,在职", header=header
    )
    assert [e.row for e in parse(text).errors] == [3]


def test_too_many_rows() -> None:
    header = "工号,姓名,部门编码,入职日期,状态"
    rows = [f"E{i:03d},员工{i},D01,2024-03-01,在职" for i in range(6)]
    assert len(parse(csv_text(*rows, header=header), max_rows=6).rows) == 6
    with pytest.raises(ImportFileError, match="5"):
        parse(csv_text(*rows, header=header), max_rows=5)


def test_default_max_rows_is_20000() -> None:
    assert csv_import.DEFAULT_MAX_ROWS == 20000


# ---------------------------------------------------------------------------
# Header problems
# ---------------------------------------------------------------------------


def test_missing_required_columns_named() -> None:
    with pytest.raises(ImportFileError) as info:
        parse("工号,部门编码,状态\r\nE001,D01,在职\r\n")
    message = str(info.value)
    assert "姓名" in message and "入职日期" in message
    assert "工号(" not in message


def test_unknown_columns_named() -> None:
    with pytest.raises(ImportFileError) as info:
        parse(
            csv_text(
                "E001,张三,D01,2024-03-01,在职,x,y",
                header="工号,姓名,部门编码,入职日期,状态,手机号,Salary",
            )
        )
    assert "手机号" in str(info.value) and "Salary" in str(info.value)


def test_duplicate_header() -> None:
    with pytest.raises(ImportFileError, match="重复的列"):
        parse(
            csv_text(
                "E001,张三,D01,2024-03-01,在职,E002",
                header="工号,姓名,部门编码,入职日期,状态,employee_no",
            )
        )
    with pytest.raises(ImportFileError, match="重复的列"):
        parse(
            csv_text(
                "E001,张三,D01,P01,出纳,2024-03-01,在职",
                header="工号,姓名,部门编码,岗位编码,岗位,入职日期,状态",
            )
        )


def test_header_only_and_empty_text() -> None:
    with pytest.raises(ImportFileError, match="没有员工数据"):
        parse(HEADER_CN + "\r\n")
    with pytest.raises(ImportFileError, match="文件为空"):
        parse("\r\n  \r\n")


def test_blank_trailing_header_columns_ignored_unless_they_hold_data() -> None:
    header = "工号,姓名,部门编码,入职日期,状态,,"
    assert parse(csv_text("E001,张三,D01,2024-03-01,在职,,", header=header)).ok
    with pytest.raises(ImportFileError, match="第 6 列"):
        parse(csv_text("E001,张三,D01,2024-03-01,在职,备注,", header=header))


# ---------------------------------------------------------------------------
# Row errors
# ---------------------------------------------------------------------------


def test_all_errors_reported_at_once_with_excel_row_numbers() -> None:
    text = csv_text(
        GOOD_ROWS[0],  # row 2: fine
        f"E 2,{'长' * 65},D99,P99,M404,2024-13-01,在岗,12345,not-an-email",  # row 3: everything wrong
        f"E004,赵六,D02,,,2024.3.1,离职,{ID_C},",  # row 4: fine
        ",,D01,,,,,,",  # row 5: required fields empty
    )
    result = parse(text)
    assert not result.ok
    assert result.rows == []
    assert {e.row for e in result.errors} == {3, 5}
    assert [e.field for e in errors_at(result, 3)] == [
        "工号",
        "姓名",
        "部门编码",
        "岗位编码",
        "直属上级工号",  # checked after all rows are read, still reported in column order
        "入职日期",
        "状态",
        "身份证号",
        "邮箱",
    ]
    assert {e.field for e in errors_at(result, 5)} == {"工号", "姓名", "入职日期", "状态"}
    messages = " ".join(e.message for e in errors_at(result, 3))
    for fragment in ("E 2", "65", "D99", "P99", "M404", "2024-13-01", "在岗", "not-an-email"):
        assert fragment in messages
    assert result.new_count == 0 and result.update_count == 0


def test_errors_use_headers_as_written_in_file() -> None:
    header = "Employee_No,Name,Department_Code,Hire_Date,Status"
    result = parse(csv_text("E001,张三,D404,2024-03-01,active", header=header))
    assert result.errors[0].field == "Department_Code"


def test_duplicate_employee_no_names_both_rows() -> None:
    text = csv_text(
        GOOD_ROWS[0],
        f"E002,李四,D01,,,2024-03-01,在职,{ID_B},",
        f"E001,王五,D01,,,2024-03-01,在职,{ID_C},",
    )
    result = parse(text)
    [error] = result.errors
    assert (error.row, error.field) == (4, "工号")
    assert "E001" in error.message and "第 2 行" in error.message


def test_employee_no_format() -> None:
    header = "工号,姓名,部门编码,入职日期,状态"
    ok = parse(
        csv_text(
            "a-B_9,张三,D01,2024-03-01,在职", f"{'X' * 32},李四,D01,2024-03-01,在职", header=header
        )
    )
    assert ok.ok, ok.errors
    bad = parse(
        csv_text(
            f"{'X' * 33},张三,D01,2024-03-01,在职", "工号1,李四,D01,2024-03-01,在职", header=header
        )
    )
    assert [(e.row, e.field) for e in bad.errors] == [(2, "工号"), (3, "工号")]


def test_name_length_limit() -> None:
    header = "工号,姓名,部门编码,入职日期,状态"
    assert parse(csv_text(f"E001,{'名' * 64},D01,2024-03-01,在职", header=header)).ok
    assert not parse(csv_text(f"E001,{'名' * 65},D01,2024-03-01,在职", header=header)).ok


def test_duplicate_id_number_in_file() -> None:
    text = csv_text(
        f"E001,张三,D01,,,2024-03-01,在职,{ID_A},",
        f"E002,李四,D01,,,2024-03-01,在职,{ID_B},",
        f"E003,王五,D01,,,2024-03-01,在职,{ID_A.lower()[:6]} {ID_A[6:]},",  # same number, other spelling
    )
    result = parse(text)
    [error] = result.errors
    assert (error.row, error.field) == (4, "身份证号")
    assert "第 2 行" in error.message and "E001" in error.message
    assert ID_A not in error.message  # messages only show the masked number
    assert idnumber.mask(ID_A) in error.message


def test_id_number_held_by_another_employee_in_database() -> None:
    """The impostor case: someone hired under a sister's ID number."""
    text = csv_text(f"E100,张小妹,D01,,,2024-03-01,在职,{ID_A},")
    result = parse(text, existing_employee_nos={"E007"}, existing_id_numbers={ID_A: "E007"})
    [error] = result.errors
    assert (error.row, error.field) == (2, "身份证号")
    assert "E007" in error.message


def test_id_number_held_by_same_employee_is_fine() -> None:
    text = csv_text(f"E007,张三,D01,,,2024-03-01,在职,{ID_A},")
    result = parse(text, existing_employee_nos={"E007"}, existing_id_numbers={ID_A: "E007"})
    assert result.ok and result.update_count == 1


def test_legacy_15_digit_in_database_matches_18_digit_in_file() -> None:
    text = csv_text("E100,张三,D01,,,2024-03-01,在职,11010519491231002X,")
    result = parse(text, existing_id_numbers={"110105491231002": "E001"})
    [error] = result.errors
    assert "E001" in error.message


def test_invalid_id_number_reasons() -> None:
    text = csv_text(
        "E001,张三,D01,,,2024-03-01,在职,11010519491231002Y,",
        f"E002,李四,D01,,,2024-03-01,在职,{ID_B[:-1]}{'0' if ID_B[-1] != '0' else '1'},",
        "E003,王五,D01,,,2024-03-01,在职,4.40305E+17,",
    )
    result = parse(text)
    assert [(e.row, e.field) for e in result.errors] == [
        (2, "身份证号"),
        (3, "身份证号"),
        (4, "身份证号"),
    ]
    assert "校验位错误" in result.errors[1].message
    assert "科学计数法" in result.errors[2].message


def test_hire_date_before_birth_is_error_and_child_hire_is_warning() -> None:
    young = make_id(birth="20100101", seq="555")
    text = csv_text(
        f"E001,张三,D01,,,2009-12-31,在职,{young},",
    )
    [error] = parse(text).errors
    assert error.field == "入职日期" and "出生日期" in error.message

    result = parse(csv_text(f"E001,张三,D01,,,2025-05-01,在职,{young},"))
    assert result.ok
    [warning] = result.warnings
    assert warning.row == 2 and "16" in warning.message


def test_manager_in_file_or_database() -> None:
    text = csv_text(
        "E002,李四,D01,,E001,2024-03-01,在职,,",  # manager defined later in the file
        "E001,张三,D01,,M900,2024-03-01,在职,,",  # manager exists in the database
    )
    result = parse(text, existing_employee_nos={"M900"})
    assert result.ok, result.errors
    assert [r.manager_no for r in result.rows] == ["E001", "M900"]


def test_manager_unknown_or_self() -> None:
    text = csv_text(
        "E001,张三,D01,,E001,2024-03-01,在职,,",
        "E002,李四,D01,,E404,2024-03-01,在职,,",
        "E 3,王五,D01,,E 3,2024-03-01,在职,,",  # invalid number, still recognised as self
    )
    result = parse(text)
    assert [(e.row, e.field) for e in result.errors] == [
        (2, "直属上级工号"),
        (3, "直属上级工号"),
        (4, "工号"),
        (4, "直属上级工号"),
    ]
    assert "本人" in result.errors[0].message
    assert "E404" in result.errors[1].message
    assert "本人" in result.errors[3].message


def test_manager_cycle() -> None:
    text = csv_text(
        "E001,张三,D01,,E003,2024-03-01,在职,,",
        "E002,李四,D01,,E001,2024-03-01,在职,,",
        "E003,王五,D01,,E002,2024-03-01,在职,,",
        "E004,赵六,D01,,E001,2024-03-01,在职,,",  # points into the cycle but is not part of it
    )
    result = parse(text)
    assert [(e.row, e.field) for e in result.errors] == [
        (2, "直属上级工号"),
        (3, "直属上级工号"),
        (4, "直属上级工号"),
    ]
    assert all("循环" in e.message for e in result.errors)
    assert "E001" in result.errors[0].message and "E003" in result.errors[0].message


def test_two_person_cycle_and_long_chain_without_cycle() -> None:
    header = "工号,姓名,部门编码,直属上级工号,入职日期,状态"
    pair = parse(
        csv_text("A,甲,D01,B,2024-03-01,在职", "B,乙,D01,A,2024-03-01,在职", header=header)
    )
    assert len(pair.errors) == 2
    chain = [
        f"E{i},员工{i},D01,{f'E{i + 1}' if i < 300 else ''},2024-03-01,在职" for i in range(301)
    ]
    assert parse(csv_text(*chain, header=header)).ok


def test_email_basic_check() -> None:
    header = "工号,姓名,部门编码,入职日期,状态,邮箱"
    rows = [
        f"E{i},员工,D01,2024-03-01,在职,{email}"
        for i, email in enumerate(
            ["a@b.cn", "x.y+z@mail.example.com", "a@b", "@b.cn", "a b@c.cn", "a@@b.cn", "a@b..cn"]
        )
    ]
    result = parse(csv_text(*rows, header=header))
    assert [e.row for e in result.errors] == [4, 5, 6, 7, 8]


def test_extra_cells_beyond_header_reported() -> None:
    header = "工号,姓名,部门编码,入职日期,状态"
    result = parse(csv_text("E001,张,三,D01,2024-03-01,在职", header=header))
    assert any(e.row == 2 and e.field == "" for e in result.errors)


def test_gbk_file_end_to_end_with_errors() -> None:
    data = csv_text(GOOD_ROWS[0], "E002,李四,D01,,,2024-03-01,休假,,").encode("gbk")
    result = parse(decode_upload(data))
    [error] = result.errors
    assert (error.row, error.field) == (3, "状态") and "休假" in error.message


# ---------------------------------------------------------------------------
# Helpers for the database half: ID numbers to look up, existing reporting lines
# ---------------------------------------------------------------------------


def test_id_numbers_in_returns_valid_numbers_in_18_digit_form() -> None:
    old = "440305900307123"  # 15-digit form of a 1990 number
    rows = (
        f"E001,张三,D01,,,2024-03-01,在职,{ID_A},",
        f"E002,李四,D01,,,2024-03-01,在职,{old},",
        "E003,王五,D01,,,2024-03-01,在职,4.40305E+17,",  # Excel-mangled: skipped
        "E004,赵六,D01,,,2024-03-01,在职,12345,",  # invalid: skipped
        "E005,钱七,D01,,,2024-03-01,在职,,",
    )
    found = csv_import.id_numbers_in(csv_text(*rows), today=TODAY)
    assert found == {ID_A, idnumber.to_18_digits(old)}


def test_id_numbers_in_without_id_column() -> None:
    text = csv_text("E001,张三,D01,2024-03-01,在职", header="工号,姓名,部门编码,入职日期,状态")
    assert csv_import.id_numbers_in(text, today=TODAY) == set()


def test_manager_loop_through_existing_employees() -> None:
    header = "工号,姓名,部门编码,直属上级工号,入职日期,状态"
    # In the database X2 reports to X1; the file makes X1 report to X2.
    result = parse(
        csv_text("X1,甲,D01,X2,2024-03-01,在职", header=header),
        existing_employee_nos={"X1", "X2"},
        existing_managers={"X2": "X1"},
    )
    [error] = result.errors
    assert error.row == 2 and "循环" in error.message and "X1 → X2 → X1" in error.message


def test_existing_reporting_lines_without_loop_are_fine() -> None:
    header = "工号,姓名,部门编码,直属上级工号,入职日期,状态"
    result = parse(
        csv_text("X3,丙,D01,X2,2024-03-01,在职", "X2,乙,D01,,2024-03-01,在职", header=header),
        existing_employee_nos={"X1", "X2"},
        # A loop among existing employees only is not reported against this file's rows
        # unless a row of the file is part of it.
        existing_managers={"X2": "X1", "Y1": "Y2", "Y2": "Y1"},
    )
    assert result.ok, result.errors
    assert result.record_count == 2
